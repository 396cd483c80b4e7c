package spool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-whisk/activationstore/internal/testvolume"
)

var damageOptions = Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10, CursorInterval: time.Hour}

type frameAtOff struct {
	file     string // base name
	off, len int64
	seq      uint64
	payload  string
}

// writeSpool appends the payloads one by one into a new spool in dir,
// closes it and returns the files' contents and the frames' places.
func writeSpool(t *testing.T, dir string, payloads []string) (map[string][]byte, []frameAtOff) {
	t.Helper()
	s, err := Open(dir, damageOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		if err := s.Append(context.Background(), []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var frames []frameAtOff
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	slices.Sort(names)
	for _, path := range names {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(path)] = b
		for off := int64(0); off+headerSize <= int64(len(b)); {
			h, ok := parseHeader(b[off:])
			if !ok {
				break
			}
			frames = append(frames, frameAtOff{filepath.Base(path), off, h.frameLen(), h.seq, string(b[off+headerSize : off+h.frameLen()])})
			off += h.frameLen()
		}
	}
	if len(frames) != len(payloads) {
		t.Fatalf("found %d frames, want %d", len(frames), len(payloads))
	}
	return files, frames
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func damagePayloads(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("payload %03d %s", i, strings.Repeat(string(rune('a'+i%26)), 40+r.IntN(600)))
	}
	return out
}

// expectRecords opens dir and checks it yields exactly want, in order.
func expectRecords(t *testing.T, what, dir string, want []frameAtOff) (*Spool, Stats) {
	t.Helper()
	s, err := Open(dir, damageOptions)
	if err != nil {
		t.Fatalf("%s: Open: %v", what, err)
	}
	st := s.Stats()
	got := readAvailable(s)
	if len(got) != len(want) {
		_ = s.Close()
		t.Fatalf("%s: %d records, want %d (stats %+v)", what, len(got), len(want), st)
	}
	for i, r := range got {
		if r.Seq != want[i].seq || string(r.Payload) != want[i].payload {
			_ = s.Close()
			t.Fatalf("%s: record %d is seq %d %.12q, want seq %d %.12q", what, i, r.Seq, r.Payload, want[i].seq, want[i].payload)
		}
	}
	return s, st
}

// TestTornTailAtEveryOffset cuts the last frame after each of its bytes,
// both as a shorter file and as zeros where its bytes were: Open keeps
// every earlier record, counts the torn tail, cuts it for good, and the
// next record follows the last valid one.
func TestTornTailAtEveryOffset(t *testing.T) {
	payloads := damagePayloads(12, 1)
	payloads[len(payloads)-1] = "the last one, torn"
	files, frames := writeSpool(t, t.TempDir(), payloads)
	last := frames[len(frames)-1]
	for cut := int64(0); cut < last.len; cut++ {
		for _, mode := range []string{"truncated", "zeroed"} {
			what := fmt.Sprintf("last frame %s after %d of its %d bytes", mode, cut, last.len)
			dir := t.TempDir()
			writeFiles(t, dir, files)
			path := filepath.Join(dir, last.file)
			b := slices.Clone(files[last.file])
			if mode == "truncated" {
				b = b[:last.off+cut]
			} else {
				clear(b[last.off+cut : last.off+last.len])
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			s, st := expectRecords(t, what, dir, frames[:len(frames)-1])
			wantTorn := uint64(0)
			if cut > 0 {
				wantTorn = 1
			}
			if st.TornTails != wantTorn || st.CorruptFrames != 0 || st.Quarantined != 0 {
				t.Fatalf("%s: stats %+v, want %d torn tail", what, st, wantTorn)
			}
			if err := s.Append(context.Background(), []byte("after the cut")); err != nil {
				t.Fatalf("%s: Append: %v", what, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(frames[:len(frames)-1]), frameAtOff{seq: frames[len(frames)-2].seq + 1, payload: "after the cut"})
			s, st = expectRecords(t, what+", reopened", dir, want)
			if st.TornTails != 0 {
				t.Fatalf("%s: the cut did not last: %d torn tails at the second Open", what, st.TornTails)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRandomBitFlips flips bits anywhere in the segment files, frames and
// preallocated tails alike: Open succeeds, every undamaged frame is read
// (before and after the damage), no damaged one is, and the damage is
// counted: a damaged run followed by a valid frame as corrupt frames and a
// quarantined copy, a damaged end of a segment as a torn tail.
func TestRandomBitFlips(t *testing.T) {
	files, frames := writeSpool(t, t.TempDir(), damagePayloads(40, 2))
	segs := make([]string, 0, len(files))
	for name := range files {
		segs = append(segs, name)
	}
	slices.Sort(segs)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	seeds := testvolume.Pick(40, 300, 3000)
	var totalTorn, totalCorrupt uint64
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		dir := t.TempDir()
		damaged := map[string][]byte{}
		flips := map[string][]int64{}
		for range 1 + r.IntN(3) {
			name := segs[r.IntN(len(segs))]
			if damaged[name] == nil {
				damaged[name] = slices.Clone(files[name])
			}
			b := damaged[name]
			pos := r.Int64N(int64(len(b)))
			b[pos] ^= 1 << r.IntN(8)
			flips[name] = append(flips[name], pos)
		}
		all := map[string][]byte{}
		for name, b := range files {
			all[name] = b
		}
		for name, b := range damaged {
			all[name] = b
		}
		writeFiles(t, dir, all)

		var want []frameAtOff
		var wantTorn, wantCorrupt, wantQuarantined uint64
		for _, name := range segs {
			var fs []frameAtOff
			var hit []bool
			tail := false
			end := int64(0)
			for _, f := range frames {
				if f.file != name {
					continue
				}
				h := false
				for _, p := range flips[name] {
					h = h || (p >= f.off && p < f.off+f.len)
				}
				fs, hit = append(fs, f), append(hit, h)
				end = f.off + f.len
			}
			for _, p := range flips[name] {
				tail = tail || p >= end
			}
			lastGood := -1
			for i := range fs {
				if !hit[i] {
					lastGood = i
				}
			}
			corrupt := uint64(0)
			for i := range fs {
				switch {
				case i <= lastGood && !hit[i]:
					want = append(want, fs[i])
				case i < lastGood:
					corrupt++
				default:
					tail = true
				}
			}
			if tail {
				wantTorn++
			}
			if corrupt > 0 {
				wantQuarantined++
			}
			wantCorrupt += corrupt
		}
		what := fmt.Sprintf("seed %d, flips %v", seed, flips)
		s, st := expectRecords(t, what, dir, want)
		if st.TornTails != wantTorn || st.CorruptFrames != wantCorrupt || st.Quarantined != wantQuarantined {
			t.Fatalf("%s: torn %d, corrupt %d, quarantined %d; want %d, %d, %d", what, st.TornTails, st.CorruptFrames, st.Quarantined, wantTorn, wantCorrupt, wantQuarantined)
		}
		q, _ := os.ReadDir(filepath.Join(dir, quarantineDir))
		if uint64(len(q)) != wantQuarantined {
			t.Fatalf("%s: %d files in quarantine, want %d", what, len(q), wantQuarantined)
		}
		if err := s.Append(context.Background(), []byte("after the damage")); err != nil {
			t.Fatalf("%s: Append: %v", what, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		totalTorn += st.TornTails
		totalCorrupt += st.CorruptFrames
	}
	if totalTorn == 0 || totalCorrupt == 0 {
		t.Fatalf("over %d seeds: %d torn tails, %d corrupt frames: both kinds of damage should occur", seeds, totalTorn, totalCorrupt)
	}
	t.Logf("%d seeds: %d torn tails, %d corrupt frames", seeds, totalTorn, totalCorrupt)
}
