package receipts

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// These tests drive the coalescer on a fake clock: note and flush are
// called at chosen instants, as a punctual flush loop would call flush.

const tick = defaultPushInterval // one token

var epoch0 = time.Unix(1_000_000, 0)

// fakeClock is the coalescer's clock in tests; the loop may read it.
type fakeClock struct{ ns atomic.Int64 }

func (f *fakeClock) now() time.Time      { return epoch0.Add(time.Duration(f.ns.Load())) }
func (f *fakeClock) set(d time.Duration) { f.ns.Store(int64(d)) }

// timedFrame is a push as the test sees it: when, to whom, which counts.
type timedFrame struct {
	at   time.Duration // since epoch0
	user string
	rs   []*pb.MessageReceipt
}

// String is "user@at:seq=count,seq=count" with at in ticks (or ms).
func (f timedFrame) String() string {
	var b strings.Builder
	at := fmt.Sprintf("%dms", f.at.Milliseconds())
	if f.at%tick == 0 {
		at = fmt.Sprintf("%dT", f.at/tick)
	}
	fmt.Fprintf(&b, "%s@%s:", f.user, at)
	for i, r := range f.rs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=%d", r.Seq, r.ReadCount)
	}
	return b.String()
}

// timedPusher records receipt pushes with the fake time they happened at.
type timedPusher struct {
	clock  *fakeClock
	mu     sync.Mutex
	frames []timedFrame
}

func (p *timedPusher) PushExcept(user string, _ uint64, f *pb.ServerFrame) { p.Push(user, f) }
func (p *timedPusher) MayReach(string, uint64) bool                        { return true }

func (p *timedPusher) Push(user string, f *pb.ServerFrame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frames = append(p.frames, timedFrame{at: p.clock.now().Sub(epoch0), user: user, rs: f.GetReceipts_().GetReceipts()})
}

func (p *timedPusher) strings() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.frames))
	for i, f := range p.frames {
		out[i] = f.String()
	}
	return out
}

func newTestCoalescer() (*coalescer, *fakeClock, *timedPusher) {
	clock := &fakeClock{}
	p := &timedPusher{clock: clock}
	return newCoalescer(p, clock.now, defaultPushBurst, defaultPushInterval), clock, p
}

// advance moves the clock to t, running flush at every instant the loop
// would wake at on the way.
func advance(c *coalescer, clock *fakeClock, t time.Duration) {
	for {
		next := c.flush()
		if next.IsZero() || next.Sub(epoch0) > t {
			break
		}
		clock.set(next.Sub(epoch0))
	}
	clock.set(t)
	c.flush()
}

// rc is the receipt of message seq of group conversation g (sent by user)
// with count readers.
func rc(user, g string, seq, count uint64) noteItem {
	return noteItem{key: msgKey{"g:" + g, seq}, sender: user,
		r: &pb.MessageReceipt{Seq: seq, GroupId: g, ReadCount: count}}
}

func TestCoalescerPushes(t *testing.T) {
	type step struct {
		at    time.Duration
		items []noteItem // one commit
	}
	a := func(seq, count uint64) noteItem { return rc("alice", "g", seq, count) }
	b := func(seq, count uint64) noteItem { return rc("bob", "h", seq, count) }
	tests := []struct {
		name  string
		burst bool // first use up the burst: three frames at 0 for message 9
		steps []step
		want  []string // after the burst's frames
	}{{
		name:  "idle bucket: pushed at once",
		steps: []step{{5 * time.Millisecond, []noteItem{a(1, 1)}}},
		want:  []string{"alice@5ms:1=1"},
	}, {
		name:  "one commit, one frame",
		steps: []step{{0, []noteItem{a(1, 1), a(2, 1), a(3, 1)}}},
		want:  []string{"alice@0T:1=1,2=1,3=1"},
	}, {
		name:  "after the burst, the newest count at the next token",
		burst: true,
		steps: []step{{1 * time.Millisecond, []noteItem{a(9, 4)}}, {10 * time.Millisecond, []noteItem{a(9, 5)}}},
		want:  []string{"alice@1T:9=5"},
	}, {
		name:  "held receipts of several messages share one frame",
		burst: true,
		steps: []step{
			{1 * time.Millisecond, []noteItem{a(1, 1), a(2, 1)}},
			{2 * time.Millisecond, []noteItem{a(3, 1)}},
			{3 * time.Millisecond, []noteItem{a(1, 2)}},
		},
		want: []string{"alice@1T:1=2,2=1,3=1"},
	}, {
		name:  "a busy receiver does not hold back another",
		burst: true,
		steps: []step{{1 * time.Millisecond, []noteItem{a(1, 1), b(1, 1)}}},
		want:  []string{"bob@1ms:1=1", "alice@1T:1=1"},
	}, {
		name:  "sustained: one frame per token",
		burst: true,
		steps: []step{
			{1 * time.Millisecond, []noteItem{a(9, 4)}},
			{tick + time.Millisecond, []noteItem{a(9, 5)}},
			{2*tick + time.Millisecond, []noteItem{a(9, 6)}},
		},
		want: []string{"alice@1T:9=4", "alice@2T:9=5", "alice@3T:9=6"},
	}, {
		name:  "the bucket refills",
		burst: true,
		steps: []step{{3 * tick, []noteItem{a(9, 4)}}, {3 * tick, []noteItem{a(9, 5)}}, {3 * tick, []noteItem{a(9, 6)}}},
		want:  []string{"alice@3T:9=4", "alice@3T:9=5", "alice@3T:9=6"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clock, p := newTestCoalescer()
			want := tt.want
			if tt.burst {
				for i := range uint64(3) {
					c.note([]noteItem{a(9, i+1)})
				}
				want = append([]string{"alice@0T:9=1", "alice@0T:9=2", "alice@0T:9=3"}, want...)
			}
			for _, s := range tt.steps {
				advance(c, clock, s.at)
				c.note(s.items)
			}
			advance(c, clock, time.Second)
			if got := p.strings(); !slices.Equal(got, want) {
				t.Fatalf("frames\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestCoalescerPushWait: each message of a frame is reported with how long
// its oldest held receipt waited; a receipt pushed at once waited 0, and a
// newer receipt replacing a held one does not restart its wait.
func TestCoalescerPushWait(t *testing.T) {
	c, clock, _ := newTestCoalescer()
	var waits []time.Duration
	c.onWait = func(d time.Duration) { waits = append(waits, d) }
	a := func(seq, count uint64) noteItem { return rc("alice", "g", seq, count) }
	for i := range uint64(3) { // the burst: pushed at once
		c.note([]noteItem{a(9, i+1)})
	}
	advance(c, clock, 10*time.Millisecond)
	c.note([]noteItem{a(1, 1)})
	advance(c, clock, 20*time.Millisecond)
	c.note([]noteItem{a(1, 2), a(2, 1)})
	advance(c, clock, time.Second)
	want := []time.Duration{0, 0, 0, tick - 10*time.Millisecond, tick - 20*time.Millisecond}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
}

// TestCoalescerBurst: two senders whose 20 messages each are read by 200
// members within two seconds, in commits of 1 to 8 receipts. Each sender
// gets at most 20 frames in any second, every receipt is pushed within one
// token interval, counts never go backwards and the last push of every
// message has its final count.
func TestCoalescerBurst(t *testing.T) {
	const (
		senders  = 2
		messages = 20
		readers  = 200
		spread   = 2 * time.Second
	)
	type commit struct {
		at    time.Duration
		items []noteItem
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var all []noteItem
	for s := range senders {
		for m := range messages {
			for range readers {
				all = append(all, rc(fmt.Sprint("s", s), fmt.Sprint("g", s), uint64(m+1), 0))
			}
		}
	}
	rnd.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	counts := map[msgKey]uint64{}
	var commits []commit
	for len(all) > 0 {
		n := min(len(all), 1+rnd.IntN(8))
		cm := commit{items: all[:n]}
		all = all[n:]
		for i, it := range cm.items {
			counts[it.key]++
			cm.items[i].r = &pb.MessageReceipt{Seq: it.r.Seq, GroupId: it.r.GroupId, ReadCount: counts[it.key]}
		}
		commits = append(commits, cm)
	}
	for i := range commits {
		commits[i].at = spread * time.Duration(i) / time.Duration(len(commits))
	}

	c, clock, p := newTestCoalescer()
	type noted struct {
		at    time.Duration
		count uint64
	}
	notes := map[msgKey][]noted{}
	for _, cm := range commits {
		advance(c, clock, cm.at)
		c.note(cm.items)
		for _, it := range cm.items {
			notes[it.key] = append(notes[it.key], noted{cm.at, it.r.ReadCount})
		}
	}
	advance(c, clock, spread+time.Second)

	byUser := map[string][]timedFrame{}
	for _, f := range p.frames {
		byUser[f.user] = append(byUser[f.user], f)
	}
	shared := 0
	for user, fs := range byUser {
		lo := 0
		for hi, f := range fs {
			for f.at-fs[lo].at > time.Second {
				lo++
			}
			if n := hi - lo + 1; n > 20 {
				t.Fatalf("%s: %d frames between %v and %v", user, n, fs[lo].at, f.at)
			}
			if len(f.rs) > 1 {
				shared++
			}
		}
		t.Logf("%s: %d frames for %d receipts", user, len(fs), messages*readers)
	}
	if shared == 0 {
		t.Error("no frame carried more than one message")
	}
	pushed := map[msgKey][]timedFrame{} // per message: the frames that carried it, with just its receipt
	for _, f := range p.frames {
		for _, r := range f.rs {
			k := msgKey{"g:" + r.GroupId, r.Seq}
			pushed[k] = append(pushed[k], timedFrame{at: f.at, user: f.user, rs: []*pb.MessageReceipt{r}})
		}
	}
	for k, final := range counts {
		ps := pushed[k]
		for i := 1; i < len(ps); i++ {
			if ps[i].rs[0].ReadCount < ps[i-1].rs[0].ReadCount {
				t.Fatalf("%v: pushed %v after %v", k, ps[i], ps[i-1])
			}
		}
		if len(ps) == 0 || ps[len(ps)-1].rs[0].ReadCount != final {
			t.Fatalf("%v: last push %v, want count %d", k, ps[len(ps)-1:], final)
		}
		for _, n := range notes[k] {
			i := slices.IndexFunc(ps, func(f timedFrame) bool { return f.rs[0].ReadCount >= n.count })
			if wait := ps[i].at - n.at; wait > tick {
				t.Fatalf("%v: count %d noted at %v, pushed %v later", k, n.count, n.at, wait)
			}
		}
	}
}

// TestCoalescerSustained: a receiver read without pause from a quiet start
// gets its burst, then one frame per interval, and never more than 20 frames
// in any second, both ends included: 18 default intervals are just over a
// second. The interval rounded down to the nanosecond would allow 21.
func TestCoalescerSustained(t *testing.T) {
	tests := []struct {
		interval time.Duration
		most     int
	}{
		{defaultPushInterval, 20},
		{time.Second / 18, 21},
	}
	for _, tt := range tests {
		t.Run(tt.interval.String(), func(t *testing.T) {
			clock := &fakeClock{}
			p := &timedPusher{clock: clock}
			c := newCoalescer(p, clock.now, defaultPushBurst, tt.interval)
			for i := range uint64(3000) { // one receipt per ms for 3 s
				advance(c, clock, time.Duration(i)*time.Millisecond)
				c.note([]noteItem{rc("alice", "g", 1, i+1)})
			}
			advance(c, clock, 4*time.Second)
			most, lo := 0, 0
			for hi, f := range p.frames {
				for f.at-p.frames[lo].at > time.Second {
					lo++
				}
				most = max(most, hi-lo+1)
				if hi > 0 && f.at-p.frames[hi-1].at > tt.interval {
					t.Fatalf("frames %v and %v: more than one interval apart under load", p.frames[hi-1], f)
				}
			}
			if most != tt.most {
				t.Fatalf("at most %d frames in a second, want %d", most, tt.most)
			}
		})
	}
}

// TestCoalescerCloseFlushes: close pushes what is held, with its newest
// counts, although no token has come (the clock stands still).
func TestCoalescerCloseFlushes(t *testing.T) {
	c, _, p := newTestCoalescer()
	c.start()
	for i := range uint64(6) {
		c.note([]noteItem{rc("alice", "g", 1, i+1), rc("alice", "g", 2, i+1)})
	}
	c.note([]noteItem{rc("bob", "h", 1, 1)})
	held := len(p.strings())
	c.close()
	want := []string{"alice@0T:1=1,2=1", "alice@0T:1=2,2=2", "alice@0T:1=3,2=3", "bob@0T:1=1", "alice@0T:1=6,2=6"}
	if got := p.strings(); held != 4 || !slices.Equal(got, want) {
		t.Fatalf("%d frames before close; frames\n got %q\nwant %q", held, got, want)
	}
}

// TestCoalescerDrop: a partition handoff pushes at once what is held for
// its conversations (with everything else held for the same receiver), and
// leaves other receivers' held receipts to their next token.
func TestCoalescerDrop(t *testing.T) {
	c, clock, p := newTestCoalescer()
	for i := range uint64(4) {
		c.note([]noteItem{rc("alice", "g", 1, i+1), rc("bob", "h", 1, i+1)})
	}
	c.note([]noteItem{rc("alice", "k", 1, 1)})
	clock.set(time.Millisecond)
	c.drop(func(conv string) bool { return conv == "g:g" })
	advance(c, clock, time.Second)
	want := []string{
		"alice@0T:1=1", "bob@0T:1=1", "alice@0T:1=2", "bob@0T:1=2", "alice@0T:1=3", "bob@0T:1=3",
		"alice@1ms:1=4,1=1", "bob@1T:1=4",
	}
	if got := p.strings(); !slices.Equal(got, want) {
		t.Fatalf("frames\n got %q\nwant %q", got, want)
	}
}
