package losstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/childproc"
	"github.com/go-whisk/activationstore/internal/couchtest"
	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
	"github.com/go-whisk/activationstore/internal/testvolume"
	"github.com/go-whisk/activationstore/kafkastore"
	"github.com/go-whisk/activationstore/primary/memory"
	"github.com/go-whisk/activationstore/store"
)

// spoolChildEnv, when set, makes the test binary a Store process of
// TestSpoolSurvivesKillNine rather than a test run (see TestMain): its
// value is the process's spoolChildConfig, in JSON.
const spoolChildEnv = "LOSSTEST_SPOOL_CHILD"

// spoolChildConfig configures a Store process.
type spoolChildConfig struct {
	Brokers []string
	Topic   string
	Dir     string // the spool's
	Run     uint32
	Life    int // the process's activations are Life<<lifeShift + 0, 1, 2…
	Callers int
	// Drain: store nothing; publish what the spool holds, print the
	// Store's Stats on stderr ("stats <JSON>") and exit 0.
	Drain bool
}

const lifeShift = 30

// runSpoolChild is a Store process: kafkastore.New with the spool in
// cfg.Dir, then cfg.Callers goroutines Storing activations at full speed
// until the process is killed. On stdout it prints, one per line:
//
//	open <replayed> <torn tails> <corrupt frames>   once New returned
//	ack <i>       once the Store of activation i returned nil
//	err <i> <error>
//	pub <n>       every 10 ms: Stats().Published
//
// It exits when its stdin closes, so that it dies with the parent.
func runSpoolChild(cfg string) int {
	var c spoolChildConfig
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		fmt.Fprintf(os.Stderr, "losstest spool child: %s: %v\n", spoolChildEnv, err)
		return 2
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	s, err := kafkastore.New(memory.New(),
		kafkastore.WithBrokers(c.Brokers...),
		kafkastore.WithTopic(c.Topic),
		kafkastore.WithSpool(c.Dir),
		kafkastore.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "losstest spool child: kafkastore.New: %v\n", err)
		return 2
	}
	st := s.Stats().Spool
	fmt.Printf("open %d %d %d\n", st.Replayed, st.TornTails, st.CorruptFrames)
	if c.Drain {
		for deadline := time.Now().Add(3 * time.Minute); s.Stats().Spool.Records > 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "losstest spool child: spool not drained after 3 min: %+v\n", s.Stats().Spool)
				return 4
			}
		}
		err := s.Close()
		b, _ := json.Marshal(s.Stats())
		fmt.Fprintf(os.Stderr, "stats %s\n", b)
		if err != nil {
			fmt.Fprintf(os.Stderr, "losstest spool child: Close: %v\n", err)
			return 5
		}
		return 0
	}
	go func() {
		for {
			time.Sleep(10 * time.Millisecond)
			_, _ = os.Stdout.Write(fmt.Appendf(nil, "pub %d\n", s.Stats().Published))
		}
	}()
	var next atomic.Int64
	for range c.Callers {
		go func() {
			for {
				i := c.Life<<lifeShift + int(next.Add(1)-1)
				_, err := s.Store(context.Background(), Activation(c.Run, i), store.UserContext{TransactionID: "spoolkill"})
				if err != nil {
					_, _ = os.Stdout.Write(fmt.Appendf(nil, "err %d %q\n", i, err.Error()))
					time.Sleep(10 * time.Millisecond)
					continue
				}
				// One write(2) per line, below PIPE_BUF: lines never interleave.
				_, _ = os.Stdout.Write(append(strconv.AppendInt([]byte("ack "), int64(i), 10), '\n'))
			}
		}()
	}
	select {}
}

// spoolLife is one Store process of the kill loop, as its parent sees it.
type spoolLife struct {
	n      int
	down   bool // Kafka was down throughout
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr logtest.Buffer
	opened chan struct{}
	done   chan struct{} // stdout read to its end and the process reaped

	// Read once done is closed.
	replayed, torn, corrupt uint64
	openAt, killedAt        time.Time
	acked                   []int
	errs                    []string
	pubs                    []pubSample
	exitErr                 error
}

// pubSample is a child's Stats().Published as the parent read it.
type pubSample struct {
	at time.Time
	n  uint64
}

func startSpoolLife(t *testing.T, cfg spoolChildConfig, down bool) *spoolLife {
	t.Helper()
	env, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &spoolLife{n: cfg.Life, down: down, opened: make(chan struct{}), done: make(chan struct{})}
	l.cmd = exec.Command(os.Args[0])
	l.cmd.Env = append(os.Environ(), spoolChildEnv+"="+string(env))
	l.cmd.Stderr = &l.stderr
	l.cmd.SysProcAttr = childproc.SysProcAttr()
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("start Store process %d: %v", cfg.Life, err)
	}
	t.Cleanup(func() {
		_ = l.cmd.Process.Kill()
		_ = l.stdin.Close()
		<-l.done
	})
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			verb, arg, _ := strings.Cut(sc.Text(), " ")
			switch verb {
			case "ack":
				if i, err := strconv.Atoi(arg); err == nil {
					l.acked = append(l.acked, i)
				}
			case "pub":
				if n, err := strconv.ParseUint(arg, 10, 64); err == nil {
					l.pubs = append(l.pubs, pubSample{time.Now(), n})
				}
			case "open":
				_, _ = fmt.Sscan(arg, &l.replayed, &l.torn, &l.corrupt)
				l.openAt = time.Now()
				close(l.opened)
			case "err":
				l.errs = append(l.errs, arg)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		l.exitErr = l.cmd.Wait()
	}()
	return l
}

// waitOpen waits until the process's Store is open.
func (l *spoolLife) waitOpen(t *testing.T) {
	t.Helper()
	select {
	case <-l.opened:
	case <-l.done:
		t.Fatalf("Store process %d exited before its Store was open: %v; stderr:\n%s", l.n, l.exitErr, l.stderr.Tail(20))
	case <-time.After(time.Minute):
		t.Fatalf("Store process %d: no Store open after a minute; stderr:\n%s", l.n, l.stderr.Tail(20))
	}
}

// kill SIGKILLs the process and reads what it printed to the end.
func (l *spoolLife) kill() {
	l.killedAt = time.Now()
	_ = l.cmd.Process.Kill()
	<-l.done
	_ = l.stdin.Close()
}

// publishedWithin is how many records the process had published in the
// window before its kill, as far as its last samples tell.
func (l *spoolLife) publishedWithin(window time.Duration) uint64 {
	if len(l.pubs) == 0 {
		return 0
	}
	last := l.pubs[len(l.pubs)-1].n
	from := l.killedAt.Add(-window)
	k, _ := slices.BinarySearchFunc(l.pubs, from, func(s pubSample, at time.Time) int { return s.at.Compare(at) })
	if k == 0 {
		return last // the whole life fits the window
	}
	return last - l.pubs[k-1].n
}

// Store processes on one spool directory are SIGKILLed at random, 30 to
// 400 ms after their Store opened, and restarted, again and again: part of
// the kills with Kafka up, part with it down (kfake refusing every
// request, or under KAFKATEST=apache the one Apache node SIGKILLed). Each
// process Stores from 16 goroutines at full speed and prints the id of
// each activation whose Store returned nil. A last process, with Kafka
// up, drains the spool; a persister writes the topic to CouchDB.
//
// Asserted: no Store error; every acknowledged activation in Kafka and in
// CouchDB; everything in Kafka in CouchDB, once; a process restarted while
// Kafka stayed down replays at least what its predecessor replayed and
// acknowledged; some restarts replay; the drain publishes what it
// replayed; duplicates in Kafka (records sent again because the durable
// cursor had not passed them at the kill) no more than what the killed
// processes had published in the last two cursor intervals (2 × 100 ms:
// the cursor written last may be one interval old, and the one being
// written may not have reached the disk), plus a batch (1000 records) per
// kill whose produce request the kill cut off after Kafka took it.
func TestSpoolSurvivesKillNine(t *testing.T) {
	// Each life of 16 callers at full speed acknowledges some 3,000
	// records: 500 such kills made 3.1 million records in Kafka and a
	// CouchDB drain of more than 15 minutes on 2 CPUs. The full volume's
	// 500 kills have 2 callers a life (some 400 records each); CI runs the
	// default volume's 50.
	kills := testvolume.Pick(20, 50, 500)
	callers := testvolume.Pick(16, 16, 2)
	const (
		// The spool's cursor interval: records Kafka acknowledged within it
		// before a kill are sent again.
		cursorInterval = 100 * time.Millisecond
		// A produce request the kill cut off may be in Kafka: up to a batch.
		inFlight = 1000
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	k := startSwitchedKafka(t)
	topic := kafkatest.Topic(t, "completed-spoolkill")
	k.CreateTopic(t, topic, 4, nil)
	cfg := spoolChildConfig{Brokers: k.Addrs(), Topic: topic, Dir: t.TempDir(), Run: NewRun(), Callers: callers}
	t.Logf("seed %d, %d kills, Kafka %s, spool %s", seed, kills, k.Kind(), cfg.Dir)

	// Kafka is up for a run of kills, down for the next, and so on.
	runLen := max(2, kills/6)
	began := time.Now()
	var lives []*spoolLife
	for n := range kills {
		if down := n/runLen%2 == 1; down {
			k.Down(t)
		} else {
			k.Up(ctx, t)
		}
		cfg.Life = n
		l := startSpoolLife(t, cfg, k.IsDown())
		l.waitOpen(t)
		time.Sleep(time.Duration(30+rng.IntN(371)) * time.Millisecond)
		l.kill()
		lives = append(lives, l)
	}
	killing := time.Since(began)
	k.UpForGood(ctx, t)
	cfg.Life, cfg.Drain = kills, true
	last := startSpoolLife(t, cfg, false)
	last.waitOpen(t)
	drainStart := time.Now()
	select {
	case <-last.done:
	case <-time.After(4 * time.Minute):
		t.Fatalf("the draining Store process did not exit within 4 minutes; stderr:\n%s", last.stderr.Tail(20))
	}
	drainTook := time.Since(drainStart)
	if last.exitErr != nil {
		t.Fatalf("the draining Store process: %v; stderr:\n%s", last.exitErr, last.stderr.Tail(20))
	}
	var final kafkastore.StoreStats
	for line := range strings.SplitSeq(last.stderr.String(), "\n") {
		if js, ok := strings.CutPrefix(line, "stats "); ok {
			if err := json.Unmarshal([]byte(js), &final); err != nil {
				t.Fatalf("the draining process's stats: %v", err)
			}
		}
	}
	if final.Spool.Replayed == 0 || final.Published != final.Spool.Replayed || final.Spool.Records != 0 {
		t.Errorf("the draining process: replayed %d, published %d, left %d; want all it replayed (> 0) published", final.Spool.Replayed, final.Published, final.Spool.Records)
	}

	// What the processes acknowledged and replayed.
	acked := map[int]bool{}
	var storeErrs []string
	replaying, downLives, upKills := 0, 0, 0
	var dupBound, lastInterval uint64
	var replays []string
	for n, l := range lives {
		for _, i := range l.acked {
			acked[i] = true
		}
		storeErrs = append(storeErrs, l.errs...)
		if l.down {
			downLives++
		} else {
			upKills++
			dupBound += l.publishedWithin(2*cursorInterval) + inFlight
			lastInterval += l.publishedWithin(cursorInterval)
		}
		if n > 0 && l.replayed > 0 {
			replaying++
		}
		if n > 0 && l.down && lives[n-1].down {
			// Nothing was published since the predecessor opened.
			if want := lives[n-1].replayed + uint64(len(lives[n-1].acked)); l.replayed < want {
				t.Errorf("process %d, restarted with Kafka down, replayed %d records; want at least the %d its predecessor replayed plus the %d it acknowledged",
					n, l.replayed, lives[n-1].replayed, len(lives[n-1].acked))
			}
		}
		if l.torn > 0 || l.corrupt > 0 || n%max(1, kills/10) == 0 {
			replays = append(replays, fmt.Sprintf("#%d %s: replayed %d, acked %d, torn %d, corrupt %d", n, map[bool]string{true: "down", false: "up"}[l.down], l.replayed, len(l.acked), l.torn, l.corrupt))
		}
	}
	if len(storeErrs) > 0 {
		t.Errorf("%d Store errors; first: %s", len(storeErrs), storeErrs[0])
	}
	if replaying == 0 {
		t.Errorf("no restart replayed anything")
	}

	// Kafka: every acknowledged activation, some twice.
	inKafka := map[int]int{}
	records, foreign := 0, 0
	scanStart := time.Now()
	ScanTopic(t, k.Broker, topic, func(m kafka.Message) {
		records++
		r, i, ok := Index(string(m.Key))
		if !ok || r != cfg.Run {
			foreign++
			return
		}
		inKafka[i]++
	})
	duplicates := records - foreign - len(inKafka)
	scanTook := time.Since(scanStart)
	lostInKafka := 0
	for i := range acked {
		if inKafka[i] == 0 {
			lostInKafka++
		}
	}
	if lostInKafka > 0 || foreign > 0 {
		t.Errorf("Kafka lacks %d of the %d acknowledged activations, and holds %d foreign records", lostInKafka, len(acked), foreign)
	}
	if uint64(duplicates) > dupBound {
		t.Errorf("%d records in Kafka twice or more; want at most %d (what the killed processes published in the last %v before their kill, plus %d per kill with Kafka up)", duplicates, dupBound, 2*cursorInterval, inFlight)
	}

	// CouchDB: everything in Kafka, once.
	persistStart := time.Now()
	// CouchDB takes some 5,000 documents a second on 2 CPUs: a minute
	// for every 100,000 records, at least 5.
	within := max(5*time.Minute, time.Duration(records/100_000)*time.Minute)
	couchURL, db, persisted, conflicts := drainTopic(ctx, t, k.Broker, topic, within)
	persistTook := time.Since(persistStart)
	inCouch := map[int]bool{}
	couchDup, couchForeign := 0, 0
	for _, id := range listDocIDs(ctx, t, couchURL, db, within) {
		ns, aid, _ := strings.Cut(id, "/")
		r, i, ok := Index(aid)
		switch {
		case ns != Namespace || !ok || r != cfg.Run || inKafka[i] == 0:
			couchForeign++
		case inCouch[i]:
			couchDup++
		default:
			inCouch[i] = true
		}
	}
	lostInCouch := 0
	for i := range acked {
		if !inCouch[i] {
			lostInCouch++
		}
	}
	if lostInCouch > 0 || len(inCouch) != len(inKafka) || couchDup > 0 || couchForeign > 0 {
		t.Errorf("CouchDB: %d of %d acknowledged activations missing; %d activations of the %d in Kafka; %d twice, %d not in Kafka",
			lostInCouch, len(acked), len(inCouch), len(inKafka), couchDup, couchForeign)
	}
	// On a CouchDB cluster a duplicate may meet its document on some
	// copies only: the write is byte-identical, so it makes the same
	// revision where it is missing and is answered as written, and counts
	// as persisted (the database still holds each once: checked above).
	kind, _ := couchtest.Selected()
	exact := kind != couchtest.Cluster && kind != couchtest.External
	if persisted+conflicts != int64(records) || persisted < int64(len(inKafka)) || (exact && persisted != int64(len(inKafka))) {
		t.Errorf("persisted %d documents and %d duplicates; want one per activation in Kafka, %d (at least, on a cluster), and the %d records in all",
			persisted, conflicts, len(inKafka), records)
	}

	t.Logf("SUMMARY %s (Kafka %s, volume %s): %d SIGKILLs survived (%d with Kafka up, %d down) in %v; acknowledged %d activations, %d in Kafka as %d records (scanned in %v): "+
		"duplicates %d (bound %d; published in the last %v before the kills %d), none of the acknowledged lost: %t; restarts replaying %d of %d; drain replayed %d, published %d in %v (torn tails %d); "+
		"persister wrote CouchDB in %v: %d documents, persisted %d, conflicts %d; Store errors %d; lives: %s",
		t.Name(), k.Kind(), testvolume.Current(), kills, upKills, downLives, killing.Round(time.Millisecond), len(acked), len(inKafka), records, scanTook.Round(time.Millisecond),
		duplicates, dupBound, cursorInterval, lastInterval, lostInKafka == 0 && lostInCouch == 0, replaying, kills, final.Spool.Replayed, final.Published, drainTook.Round(time.Millisecond), final.Spool.TornTails,
		persistTook.Round(time.Millisecond), len(inCouch), persisted, conflicts, len(storeErrs), strings.Join(replays, "; "))
}
