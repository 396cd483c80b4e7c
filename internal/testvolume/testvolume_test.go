package testvolume

import (
	"testing"
)

func TestTheSwitchChoosesTheLevel(t *testing.T) {
	cases := []struct {
		env  string
		want Level
	}{
		{"full", Full},
		{"short", Short},
	}
	for _, c := range cases {
		t.Setenv(Env, c.env)
		if got := Current(); got != c.want {
			t.Errorf("%s=%q: Current() = %v, want %v", Env, c.env, got, c.want)
		}
		if got := Pick(1, 2, 3); got != map[Level]int{Short: 1, Default: 2, Full: 3}[c.want] {
			t.Errorf("%s=%q: Pick(1, 2, 3) = %d", Env, c.env, got)
		}
	}
	t.Setenv(Env, "")
	want := Default
	if testing.Short() {
		want = Short
	}
	if got := Current(); got != want {
		t.Errorf("%s unset (short=%v): Current() = %v, want %v", Env, testing.Short(), got, want)
	}
}

func TestAnUnknownValuePanics(t *testing.T) {
	t.Setenv(Env, "ful")
	defer func() {
		if recover() == nil {
			t.Errorf("%s=ful: Current() did not panic", Env)
		}
	}()
	Current()
}
