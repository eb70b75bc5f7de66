package messages

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
)

func openStore(t testing.TB) storage.Store {
	t.Helper()
	s, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// flush writes c's dirty cursors to s and forgets everyone (as after the
// users went offline), so that the next use reads the store.
func flush(t *testing.T, c *cursors, s storage.Store) {
	t.Helper()
	ops, _ := c.takeDirty()
	if err := s.Apply(context.Background(), &storage.Batch{Ops: ops}, false); err != nil {
		t.Fatal(err)
	}
	c.evictOffline(func(string) bool { return false })
	if n := len(c.loaded()); n != 0 {
		t.Fatalf("%d users kept after a clean flush", n)
	}
}

// loaded returns the users whose cursors are in memory.
func (c *cursors) loaded() map[string]bool {
	out := make(map[string]bool)
	for i := range c.shards {
		for u := range c.shards[i].users {
			out[u] = true
		}
	}
	return out
}

func TestCursorsPerDevice(t *testing.T) {
	ctx := context.Background()
	const conv, other = "g:team", "c:a:b"
	tests := []struct {
		name   string
		acks   []cursorKey // in order, each to seq 10*(i+1)
		flush  bool        // write and reload between the acks and the check
		device string
		want   map[string]uint64
	}{
		{"a device resumes at its own ack", []cursorKey{{"u", "phone", conv}}, false, "phone", map[string]uint64{conv: 10}},
		{"and after a restart", []cursorKey{{"u", "phone", conv}}, true, "phone", map[string]uint64{conv: 10}},
		{
			// The tablet was seen before the phone acked: the phone's ack
			// does not hide anything from it.
			"a known device keeps its own cursor",
			[]cursorKey{{"u", "tablet", other}, {"u", "phone", conv}}, true, "tablet",
			map[string]uint64{conv: 0, other: 10},
		},
		{
			"a new device starts at the highest ack of any device",
			[]cursorKey{{"u", "phone", conv}, {"u", "tablet", conv}, {"u", "phone", other}}, true, "laptop",
			map[string]uint64{conv: 20, other: 30},
		},
		{
			"an ephemeral device starts at the baseline too",
			[]cursorKey{{"u", "phone", conv}}, false, ephemeralDevice(7),
			map[string]uint64{conv: 10},
		},
		{
			"ephemeral acks move the baseline but are not stored",
			[]cursorKey{{"u", ephemeralDevice(7), conv}}, true, "new",
			map[string]uint64{conv: 10},
		},
		{"another user's acks do not count", []cursorKey{{"v", "phone", conv}}, true, "phone", map[string]uint64{conv: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			c := newCursors()
			for i, a := range tt.acks {
				if err := c.load(ctx, s, a.user, a.device); err != nil {
					t.Fatal(err)
				}
				c.ack(a.user, a.device, a.conv, uint64(10*(i+1)))
			}
			if tt.flush {
				flush(t, c, s)
			}
			if err := c.load(ctx, s, "u", tt.device); err != nil {
				t.Fatal(err)
			}
			for conv, want := range tt.want {
				if got := c.get("u", tt.device, conv); got != want {
					t.Errorf("%s: cursor %d, want %d", conv, got, want)
				}
			}
		})
	}
}

func TestCursorsOnlyMoveForward(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := newCursors()
	if err := c.load(ctx, s, "u", "d"); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{5, 9, 3} {
		c.ack("u", "d", "g:x", seq)
	}
	flush(t, c, s)
	if err := c.load(ctx, s, "u", "d"); err != nil {
		t.Fatal(err)
	}
	if got := c.get("u", "d", "g:x"); got != 9 {
		t.Fatalf("cursor %d, want 9", got)
	}
}

func TestCursorsEvictOffline(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := newCursors()
	for _, u := range []string{"online", "offline-clean", "offline-dirty"} {
		if err := c.load(ctx, s, u, "d"); err != nil {
			t.Fatal(err)
		}
		c.ack(u, "d", "g:a", 5)
	}
	c.takeDirty()                         // written: everything clean
	c.ack("offline-dirty", "d", "g:a", 8) // changed since the write
	c.evictOffline(func(u string) bool { return u == "online" })
	for _, tt := range []struct {
		user string
		kept bool
	}{{"online", true}, {"offline-clean", false}, {"offline-dirty", true}} {
		if ok := c.loaded()[tt.user]; ok != tt.kept {
			t.Errorf("%s: kept=%v, want %v", tt.user, ok, tt.kept)
		}
	}
}

func TestCursorsRestoreAfterFailedWrite(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := newCursors()
	if err := c.load(ctx, s, "u", "d"); err != nil {
		t.Fatal(err)
	}
	c.ack("u", "d", "g:a", 5)
	ops, taken := c.takeDirty()
	c.restore(taken) // the write failed
	again, _ := c.takeDirty()
	if len(again) != len(ops) || len(ops) != 3 { // device record, device cursor, baseline
		t.Fatalf("%d writes after restore, %d before; want 3", len(again), len(ops))
	}
}

// TestCursorsShardedByUser: one user's cursors being locked (by a flush
// of its shard, or a slow ack) holds up no user of another shard.
func TestCursorsShardedByUser(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := newCursors()
	a, b := "a", "b"
	for i := 0; c.shard(a) == c.shard(b); i++ {
		b = "b" + strconv.Itoa(i)
	}
	for _, u := range []string{a, b} {
		if err := c.load(ctx, s, u, "d"); err != nil {
			t.Fatal(err)
		}
	}
	sh := c.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.ack(b, "d", "g:x", 5) // would deadlock behind a's lock if shared
	if got := c.get(b, "d", "g:x"); got != 5 {
		t.Fatalf("cursor %d, want 5", got)
	}
}

// BenchmarkCursorsParallel measures acks and cursor reads from many
// goroutines at once, each on its own users (as sessions on different
// connections are), over 10,000 loaded users: what one mutex over all
// cursors serializes. Each iteration is one ack and one get; run it with
// -cpu 8 and -mutexprofile to see the waits.
func BenchmarkCursorsParallel(b *testing.B) {
	ctx := context.Background()
	s := openStore(b)
	c := newCursors()
	const users = 10_000
	names := make([]string, users)
	for i := range names {
		names[i] = "u" + strconv.Itoa(i)
		if err := c.load(ctx, s, names[i], "d"); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		base := next.Add(1) * 7919
		for i := uint64(0); pb.Next(); i++ {
			u := names[(base+i)%users]
			c.ack(u, "d", "g:x", i)
			c.get(u, "d", "g:x")
		}
	})
}

// unsyncedBatches records the size of each unsynced batch applied to the
// store (the cursor flushes; group commits are synced).
type unsyncedBatches struct {
	storage.Store
	mu    sync.Mutex
	sizes []int
}

func (u *unsyncedBatches) Apply(ctx context.Context, b *storage.Batch, sync bool) error {
	if !sync {
		u.mu.Lock()
		u.sizes = append(u.sizes, b.Len())
		u.mu.Unlock()
	}
	return u.Store.Apply(ctx, b, sync)
}

// TestCursorFlushChunked: a flush of many users' cursors is written in
// batches of at most cursorFlushChunk writes, so that no synced receipt
// commit waits behind one huge batch, and every write arrives.
func TestCursorFlushChunked(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	rec := &unsyncedBatches{Store: st}
	s := newNode(t, rec)
	const users = 300 // 3 writes each: device record, device cursor, baseline
	for i := range users {
		u := "u" + strconv.Itoa(i)
		if err := s.cursors.load(ctx, st, u, "d"); err != nil {
			t.Fatal(err)
		}
		s.cursors.ack(u, "d", "g:a", 5)
	}
	s.flushCursors()
	rec.mu.Lock()
	sizes := slices.Clone(rec.sizes)
	rec.mu.Unlock()
	total := 0
	for _, n := range sizes {
		if n > cursorFlushChunk {
			t.Errorf("a flush batch of %d writes, want at most %d", n, cursorFlushChunk)
		}
		total += n
	}
	if total != 3*users {
		t.Errorf("%d cursor writes in %d batches, want %d", total, len(sizes), 3*users)
	}
	c := newCursors()
	last := "u" + strconv.Itoa(users-1)
	if err := c.load(ctx, st, last, "d"); err != nil {
		t.Fatal(err)
	}
	if got := c.get(last, "d", "g:a"); got != 5 {
		t.Errorf("%s's stored cursor %d, want 5", last, got)
	}
}
