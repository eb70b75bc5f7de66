package messages

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
)

// loadedCursors returns new cursors over a new store, with user's devices
// loaded.
func loadedCursors(t testing.TB, user string, devices ...string) (*cursors, storage.Store) {
	t.Helper()
	s := openStore(t)
	c := newCursors()
	for _, d := range devices {
		if err := c.load(context.Background(), s, user, d); err != nil {
			t.Fatal(err)
		}
	}
	return c, s
}

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

// cursorKey names a cursor: a device's for a conversation.
type cursorKey struct{ user, device, conv string }

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
	c, s := loadedCursors(t, "u", "d")
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
	c, _ := loadedCursors(t, "u", "d", ephemeralDevice(1))
	c.ack("u", "d", "g:a", 5)
	c.ack("u", ephemeralDevice(1), "g:b", 7)
	ops, taken := c.takeDirty()
	c.restore(taken) // the write failed
	again, _ := c.takeDirty()
	if len(again) != len(ops) || len(ops) != 3 { // device record, device cursor, the baseline of g:b
		t.Fatalf("%d writes after restore, %d before; want 3", len(again), len(ops))
	}
}

// TestCursorsAckDuringFailedWrite: a cursor acked again while a write of
// it fails goes out once with the next flush, at its newest seq.
func TestCursorsAckDuringFailedWrite(t *testing.T) {
	c, _ := loadedCursors(t, "u", "d")
	c.ack("u", "d", "g:a", 5)
	_, taken := c.takeDirty()
	c.ack("u", "d", "g:a", 6) // while the write is out
	c.restore(taken)          // the write failed
	ops, _ := c.takeDirty()
	key := string(append(deviceCursorPrefix("u", "d"), "g:a"...))
	var values []uint64
	for _, op := range ops {
		if string(op.Key) == key {
			v, _ := binary.Uvarint(op.Value)
			values = append(values, v)
		}
	}
	if len(values) != 1 || values[0] != 6 {
		t.Fatalf("the cursor written as %v (writes %q), want once, at 6", values, opKeys(ops))
	}
}

// TestCursorsRecycledAfterWrite: the maps of a written dirty set, kept for
// the next flush, come back empty: the next flush writes what changed
// since, nothing of what was written before.
func TestCursorsRecycledAfterWrite(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := newCursors()
	for _, u := range []string{"u", "v"} {
		if err := c.load(ctx, s, u, "d"); err != nil {
			t.Fatal(err)
		}
		c.ack(u, "d", "g:a", 5)
	}
	_, taken := c.takeDirty()
	c.recycle(taken) // written
	c.ack("u", "d", "g:a", 6)
	ops, taken := c.takeDirty()
	if len(ops) != 1 || string(ops[0].Key) != string(append(deviceCursorPrefix("u", "d"), "g:a"...)) {
		t.Fatalf("after a written flush and one ack: writes %q, want u's cursor only", opKeys(ops))
	}
	c.recycle(taken)
	if ops, _ := c.takeDirty(); len(ops) != 0 {
		t.Fatalf("nothing changed, yet writes %q", opKeys(ops))
	}
}

func opKeys(ops []storage.Op) []string {
	keys := make([]string, len(ops))
	for i, op := range ops {
		keys[i] = string(op.Key)
	}
	return keys
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
	const users = 300 // 2 writes each: device record, device cursor (holding the baseline)
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
	if total != 2*users {
		t.Errorf("%d cursor writes in %d batches, want %d", total, len(sizes), 2*users)
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

// clock is a settable time for tests.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := new(clock)
	c.set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return c
}
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// expiringCursors returns a store and cursors whose devices expire after
// ttl on the returned clock.
func expiringCursors(t *testing.T, ttl time.Duration) (storage.Store, *clock, *cursors) {
	t.Helper()
	clk := newClock()
	c := newCursors()
	c.now, c.ttl = clk.now, ttl
	return openStore(t), clk, c
}

// storedDevices returns the users/devices with a record in s, and how many
// device cursors s holds.
func storedDevices(t *testing.T, s storage.Store) (map[string]bool, int) {
	t.Helper()
	devs := make(map[string]bool)
	cursors := 0
	for _, pre := range []string{"dev/", "curd/"} {
		err := s.Scan(context.Background(), []byte(pre), storage.PrefixEnd([]byte(pre)), false, func(k, _ []byte) bool {
			if pre == "dev/" {
				devs[string(k[len(pre):])] = true
			} else {
				cursors++
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return devs, cursors
}

func TestCursorsSweepExpiredDevices(t *testing.T) {
	ctx := context.Background()
	const ttl = 90 * 24 * time.Hour
	tests := []struct {
		name  string
		ttl   time.Duration
		idle  time.Duration // since "old" was last seen
		keep  bool          // "old" survives the sweep
		inMem bool          // "old" is in memory (online) at the sweep
	}{
		{"not seen for longer than the TTL: deleted with its cursors", ttl, ttl + time.Hour, false, false},
		{"seen recently: kept", ttl, ttl - 2*deviceSeenRefresh, true, false},
		{"online: kept", ttl, ttl + time.Hour, true, true},
		{"TTL 0: kept", 0, 10 * ttl, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			clk := newClock()
			c := newCursors()
			c.now, c.ttl = clk.now, tt.ttl
			for _, d := range []string{"old", "phone"} {
				if err := c.load(ctx, s, "u", d); err != nil {
					t.Fatal(err)
				}
				c.ack("u", d, "g:a", 5)
				c.ack("u", d, "g:b", 7)
			}
			flush(t, c, s)
			clk.add(tt.idle)
			// The phone was used just now (a load a day after its record
			// was written refreshes it).
			if err := c.load(ctx, s, "u", "phone"); err != nil {
				t.Fatal(err)
			}
			flush(t, c, s)
			if tt.inMem {
				// Loaded after the flush: its stored record is still stale.
				if err := c.load(ctx, s, "u", "old"); err != nil {
					t.Fatal(err)
				}
			}
			n, err := c.sweep(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			devs, curs := storedDevices(t, s)
			if !devs["u/phone"] {
				t.Errorf("the recently seen phone was deleted")
			}
			if devs["u/old"] != tt.keep {
				t.Errorf("old device kept %v, want %v (sweep deleted %d)", devs["u/old"], tt.keep, n)
			}
			if want := 2 + map[bool]int{true: 2}[tt.keep]; curs != want {
				t.Errorf("%d device cursors stored, want %d", curs, want)
			}
		})
	}
}

// A record without a time (written before records had one) is not deleted
// at the first sweep; it expires a TTL after it.
func TestCursorsSweepRecordWithoutTime(t *testing.T) {
	ctx := context.Background()
	const ttl = 24 * time.Hour * 30
	s, clk, c := expiringCursors(t, ttl)
	old := &storage.Batch{}
	old.Set(deviceRecordKey("u", "legacy"), []byte{})
	old.Set(append(deviceCursorPrefix("u", "legacy"), "g:a"...), []byte{3})
	if err := s.Apply(ctx, old, false); err != nil {
		t.Fatal(err)
	}
	if n, err := c.sweep(ctx, s); err != nil || n != 0 {
		t.Fatalf("first sweep deleted %d (%v), want 0", n, err)
	}
	clk.add(ttl - time.Hour)
	if n, err := c.sweep(ctx, s); err != nil || n != 0 {
		t.Fatalf("sweep within the TTL of the first deleted %d (%v), want 0", n, err)
	}
	clk.add(2 * time.Hour)
	if n, err := c.sweep(ctx, s); err != nil || n != 1 {
		t.Fatalf("sweep a TTL after the first deleted %d (%v), want 1", n, err)
	}
	if devs, curs := storedDevices(t, s); len(devs) != 0 || curs != 0 {
		t.Errorf("left %v and %d cursors", devs, curs)
	}
}

// A device back after it expired is a new device: it starts at the user's
// baseline, not at its old cursor.
func TestCursorsExpiredDeviceStartsAtBaseline(t *testing.T) {
	ctx := context.Background()
	const ttl = 90 * 24 * time.Hour
	s, clk, c := expiringCursors(t, ttl)
	ack := func(device string, seq uint64) {
		t.Helper()
		if err := c.load(ctx, s, "u", device); err != nil {
			t.Fatal(err)
		}
		c.ack("u", device, "g:a", seq)
		flush(t, c, s)
	}
	ack("tablet", 10)
	clk.add(ttl)
	ack("phone", 50) // the baseline moves on while the tablet is away
	clk.add(2 * deviceSeenRefresh)
	if _, err := c.sweep(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := c.load(ctx, s, "u", "tablet"); err != nil {
		t.Fatal(err)
	}
	if got := c.get("u", "tablet", "g:a"); got != 50 {
		t.Errorf("returning tablet starts at %d, want the baseline 50", got)
	}
}

// TestCursorsBaselineStoredWhereNoDeviceHoldsIt: the flush writes a
// baseline only where no stored device's cursor equals it, and a new
// device, after a restart, still starts at it.
func TestCursorsBaselineStoredWhereNoDeviceHoldsIt(t *testing.T) {
	ctx := context.Background()
	eph := ephemeralDevice(1)
	type ack struct {
		device string
		seq    uint64
	}
	tests := []struct {
		name     string
		acks     []ack // of g:a, in order
		wantBase bool  // cur/u/g:a written
		want     uint64
	}{
		{"one device: its cursor holds it", []ack{{"phone", 5}}, false, 5},
		{"a device behind another: the one ahead holds it", []ack{{"phone", 9}, {"tablet", 5}}, false, 9},
		{"an ephemeral device's ack: only the baseline holds it", []ack{{eph, 5}}, true, 5},
		{"ahead of the stored devices by an ephemeral one", []ack{{"phone", 5}, {eph, 9}}, true, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			c := newCursors()
			for _, a := range tt.acks {
				if err := c.load(ctx, s, "u", a.device); err != nil {
					t.Fatal(err)
				}
				c.ack("u", a.device, "g:a", a.seq)
			}
			ops, _ := c.takeDirty()
			wrote := false
			for _, op := range ops {
				wrote = wrote || string(op.Key) == string(baseStoreKey("u", "g:a"))
			}
			if wrote != tt.wantBase {
				t.Errorf("baseline written %v, want %v", wrote, tt.wantBase)
			}
			if err := s.Apply(ctx, &storage.Batch{Ops: ops}, false); err != nil {
				t.Fatal(err)
			}
			restarted := newCursors()
			if err := restarted.load(ctx, s, "u", "laptop"); err != nil {
				t.Fatal(err)
			}
			if got := restarted.get("u", "laptop", "g:a"); got != tt.want {
				t.Errorf("a new device after a restart starts at %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCursorsSweepKeepsTheBaseline: a device whose cursor held the
// baseline (so none was stored) leaves it behind when it expires: a new
// device still starts there.
func TestCursorsSweepKeepsTheBaseline(t *testing.T) {
	ctx := context.Background()
	const ttl = 90 * 24 * time.Hour
	s, clk, c := expiringCursors(t, ttl)
	// Both devices are registered before either acks: the tablet stays
	// behind the phone, which alone holds the baseline.
	for _, d := range []string{"tablet", "phone"} {
		if err := c.load(ctx, s, "u", d); err != nil {
			t.Fatal(err)
		}
	}
	for _, conv := range []string{"g:a", "g:b"} {
		c.ack("u", "phone", conv, 50)
		c.ack("u", "tablet", conv, 10)
	}
	flush(t, c, s)
	clk.add(ttl)
	if err := c.load(ctx, s, "u", "tablet"); err != nil { // the tablet is used again
		t.Fatal(err)
	}
	flush(t, c, s)
	clk.add(2 * deviceSeenRefresh)
	if n, err := c.sweep(ctx, s); err != nil || n != 1 {
		t.Fatalf("sweep deleted %d (%v), want the phone", n, err)
	}
	if devs, _ := storedDevices(t, s); devs["u/phone"] || !devs["u/tablet"] {
		t.Fatalf("devices after the sweep: %v, want the tablet alone", devs)
	}
	for _, conv := range []string{"g:a", "g:b"} {
		if err := c.load(ctx, s, "u", "laptop"); err != nil {
			t.Fatal(err)
		}
		if got := c.get("u", "laptop", conv); got != 50 {
			t.Errorf("%s: a new device starts at %d, want the expired phone's 50", conv, got)
		}
	}
}
