// Package storagetest is the conformance suite for storage.Store: every
// implementation (pebblestore, pgstore) runs the same tests, so the services
// above can rely on the contract written on the interface and nothing more.
//
// Use it from an implementation's tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			s, err := mystore.Open(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		}, storagetest.WithReopen(...))
//	}
//
// open must return a new, empty store whose data no other call sees. The
// suite closes every store it opens (once), so open should register in
// t.Cleanup only what outlives the store (a temporary table, a directory).
//
// What the suite cannot check: durability across a crash. It checks that
// writes are visible when Apply or Commit returns and, with WithReopen, that
// they survive Close and a reopen; a crash test needs a store-specific fault
// injector.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/readmark/readmark/internal/storage"
)

// Option adjusts Run.
type Option func(*config)

type config struct {
	reopen func(t *testing.T) func() storage.Store
	fence  func(t *testing.T, s storage.Store) func(part uint32, epoch int64)
}

// WithFencing enables the fencing test, for stores that check a batch's
// Fences (see storage.Batch). f is called with a fresh store from open and
// returns a function that sets the current lease epoch of a partition, as a
// takeover would; partitions never set have no lease.
func WithFencing(f func(t *testing.T, s storage.Store) func(part uint32, epoch int64)) Option {
	return func(c *config) { c.fence = f }
}

// WithReopen enables the tests that close a store and open it again. f is
// called once per such test and returns an opener bound to one fresh, empty
// location: every call of the opener opens that same location, seeing what
// earlier (closed) instances wrote. The suite closes each instance it opens.
func WithReopen(f func(t *testing.T) func() storage.Store) Option {
	return func(c *config) { c.reopen = f }
}

// Run runs the conformance suite, one subtest per property, each on a store
// of its own.
func Run(t *testing.T, open func(t *testing.T) storage.Store, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"GetMissing", testGetMissing},
		{"SetGet", testSetGet},
		{"EmptyAndNilValue", testEmptyValue},
		{"GetMany", testGetMany},
		{"GetManyLarge", testGetManyLarge},
		{"GetManyAtomic", testGetManyAtomic},
		{"LastKeys", testLastKeys},
		{"ScanPrefixes", testScanPrefixes},
		{"ScanPrefixesLarge", testScanPrefixesLarge},
		{"BatchAtomicUnderScanPrefixes", testAtomicScanPrefixes},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"SetAndDeleteInOneBatch", testSetDeleteOneBatch},
		{"LaterWriteWins", testLaterWriteWins},
		{"EmptyBatch", testEmptyBatch},
		{"ValuesAreCopies", testValuesCopied},
		{"LargeValue", testLargeValue},
		{"SyncAndNoSync", testSyncModes},
		{"ScanBounds", testScanBounds},
		{"ScanStopsEarly", testScanStop},
		{"ScanPrefix", testScanPrefix},
		{"BinaryKeys", testBinaryKeys},
		{"Uint64Order", testUint64Order},
		{"ScanLarge", testScanLarge},
		{"ScanCanceledContext", testScanCanceled},
		{"BatchAtomicUnderScan", testAtomicScan},
		{"ConcurrentApply", testConcurrentApply},
		{"ConcurrentApplySameKeys", testConcurrentSameKeys},
		{"ErrClosed", testErrClosed},
		{"CommitterOrder", testCommitterOrder},
		{"CommitterConcurrentSubmitters", testCommitterConcurrent},
		{"CommitterCloseDrains", testCommitterCloseDrains},
		{"CommitterErrClosed", testCommitterErrClosed},
		{"Reopen", testReopen},
		{"CommitterReopen", testCommitterReopen},
		{"Fencing", testFencing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &harness{open: open, cfg: &cfg})
		})
	}
}

// harness opens stores for one test and closes them at its end.
type harness struct {
	open func(t *testing.T) storage.Store
	cfg  *config
}

// store opens a fresh store; the suite closes it when the test ends unless
// the test closed it through the returned function first.
func (h *harness) store(t *testing.T) (storage.Store, func() error) {
	t.Helper()
	s := h.open(t)
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	return s, closeOnce(t, s)
}

// closeOnce returns a Close that runs at most once, and registers it in
// t.Cleanup.
func closeOnce(t *testing.T, s storage.Store) func() error {
	var (
		once sync.Once
		err  error
	)
	c := func() error {
		once.Do(func() { err = s.Close() })
		return err
	}
	t.Cleanup(func() {
		if err := c(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func (h *harness) reopener(t *testing.T) func() (storage.Store, func() error) {
	t.Helper()
	if h.cfg.reopen == nil {
		t.Skip("store does not support reopening (no WithReopen)")
	}
	open := h.cfg.reopen(t)
	return func() (storage.Store, func() error) {
		t.Helper()
		s := open()
		if s == nil {
			t.Fatal("reopen returned a nil store")
		}
		return s, closeOnce(t, s)
	}
}

func apply(t *testing.T, s storage.Store, sync bool, ops ...storage.Op) {
	t.Helper()
	if err := s.Apply(t.Context(), &storage.Batch{Ops: ops}, sync); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func set(k, v string) storage.Op { return storage.Op{Key: []byte(k), Value: []byte(v)} }
func del(k string) storage.Op    { return storage.Op{Key: []byte(k), Delete: true} }

func get(t *testing.T, s storage.Store, key []byte) ([]byte, bool) {
	t.Helper()
	v, err := s.Get(t.Context(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v, true
}

func wantValue(t *testing.T, s storage.Store, key, want string) {
	t.Helper()
	v, ok := get(t, s, []byte(key))
	if !ok {
		t.Fatalf("Get(%q): not found, want %q", key, want)
	}
	if string(v) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, v, want)
	}
}

func wantMissing(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if v, ok := get(t, s, []byte(key)); ok {
		t.Fatalf("Get(%q) = %q, want ErrNotFound", key, v)
	}
}

type kv struct{ k, v string }

// scan collects a Scan, copying the slices.
func scan(t *testing.T, s storage.Store, start, end []byte, reverse bool) []kv {
	t.Helper()
	var out []kv
	err := s.Scan(t.Context(), start, end, reverse, func(k, v []byte) bool {
		out = append(out, kv{string(k), string(v)})
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q, %v): %v", start, end, reverse, err)
	}
	return out
}

func keysOf(kvs []kv) []string {
	out := make([]string, len(kvs))
	for i, x := range kvs {
		out[i] = x.k
	}
	return out
}

func testGetMissing(t *testing.T, h *harness) {
	s, _ := h.store(t)
	_, err := s.Get(t.Context(), []byte("nope"))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get on empty store: err = %v, want ErrNotFound", err)
	}
	apply(t, s, true, set("a", "1"))
	for _, k := range []string{"", "nope", "a\x00", "A", "aa"} {
		if _, err := s.Get(t.Context(), []byte(k)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q): err = %v, want ErrNotFound", k, err)
		}
	}
}

func testSetGet(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("a", "1"), set("b", "2"), set("c/d", "3"))
	wantValue(t, s, "a", "1")
	wantValue(t, s, "b", "2")
	wantValue(t, s, "c/d", "3")
	wantMissing(t, s, "c")
}

// testEmptyValue: an empty value, or a nil one with Set, is a present key
// with a zero-length value, not a missing key.
func testEmptyValue(t *testing.T, h *harness) {
	s, _ := h.store(t)
	b := &storage.Batch{}
	b.Set([]byte("empty"), []byte{})
	b.Set([]byte("nil"), nil)
	if err := s.Apply(t.Context(), b, true); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"empty", "nil"} {
		v, ok := get(t, s, []byte(k))
		if !ok || len(v) != 0 {
			t.Errorf("Get(%q) = %q, found %v; want empty value, found", k, v, ok)
		}
	}
	if got := keysOf(scan(t, s, nil, nil, false)); !slices.Equal(got, []string{"empty", "nil"}) {
		t.Errorf("Scan = %q", got)
	}
}

// getMany calls GetMany and checks the length of its result.
func getMany(t *testing.T, s storage.Store, keys ...[]byte) [][]byte {
	t.Helper()
	vs, err := s.GetMany(t.Context(), keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(vs) != len(keys) {
		t.Fatalf("GetMany of %d keys returned %d values", len(keys), len(vs))
	}
	return vs
}

// testGetMany: values in the order of the keys, nil for a missing key and a
// non-nil empty slice for an empty value; each a copy of its own, even for
// a key asked twice.
func testGetMany(t *testing.T, h *harness) {
	s, _ := h.store(t)
	if vs := getMany(t, s); len(vs) != 0 {
		t.Fatalf("GetMany() = %q", vs)
	}
	apply(t, s, true, set("a", "1"), set("b\x00\xff", "2"), set("e", ""), set("c", "3"))
	keys := []string{"c", "x", "a", "e", "", "b\x00\xff", "a", "b"}
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
	}
	bs[4] = nil // a nil key is the empty key
	vs := getMany(t, s, bs...)
	want := []any{"3", nil, "1", "", nil, "2", "1", nil}
	for i, w := range want {
		switch {
		case w == nil && vs[i] != nil:
			t.Errorf("GetMany: key %q = %q, want missing (nil)", keys[i], vs[i])
		case w != nil && (vs[i] == nil || string(vs[i]) != w):
			t.Errorf("GetMany: key %q = %q (nil %v), want %q", keys[i], vs[i], vs[i] == nil, w)
		}
	}
	vs[2][0] = 'X'
	if string(vs[6]) != "1" {
		t.Errorf("a key asked twice shares memory: %q", vs[6])
	}
	if again := getMany(t, s, []byte("a")); string(again[0]) != "1" {
		t.Errorf("GetMany after changing a returned value: %q", again[0])
	}
}

// testLastKeys: per prefix the greatest key starting with it, nil if none,
// in the order of the prefixes, each a copy of its own; prefixes without an
// end (empty, all 0xff) included.
func testLastKeys(t *testing.T, h *harness) {
	s, _ := h.store(t)
	lastKeys := func(prefixes ...string) [][]byte {
		t.Helper()
		bs := make([][]byte, len(prefixes))
		for i, p := range prefixes {
			bs[i] = []byte(p)
		}
		ks, err := s.LastKeys(t.Context(), bs)
		if err != nil {
			t.Fatalf("LastKeys: %v", err)
		}
		if len(ks) != len(prefixes) {
			t.Fatalf("LastKeys of %d prefixes returned %d keys", len(prefixes), len(ks))
		}
		return ks
	}
	if ks := lastKeys(); len(ks) != 0 {
		t.Fatalf("LastKeys() = %q", ks)
	}
	if ks := lastKeys("m/", ""); ks[0] != nil || ks[1] != nil {
		t.Fatalf("LastKeys of an empty store = %q", ks)
	}
	apply(t, s, true, set("m/a/1", "x"), set("m/a/3", "x"), set("m/a/2", "x"), set("m/b/1", "x"),
		set("m/c", "x"), set("n", "x"), set("\xff\xff", "x"), set("\xff\xff\x01", "x"), set("\xff\xfe\xff", "x"))
	prefixes := []string{"m/a/", "m/x/", "m/", "m/b/", "", "\xff\xff", "\xff", "m/a/3", "o", "m/a/"}
	want := []any{"m/a/3", nil, "m/c", "m/b/1", "\xff\xff\x01", "\xff\xff\x01", "\xff\xff\x01", "m/a/3", nil, "m/a/3"}
	ks := lastKeys(prefixes...)
	for i, w := range want {
		switch {
		case w == nil && ks[i] != nil:
			t.Errorf("prefix %q: last key %q, want none", prefixes[i], ks[i])
		case w != nil && string(ks[i]) != w:
			t.Errorf("prefix %q: last key %q, want %q", prefixes[i], ks[i], w)
		}
	}
	ks[0][0] = 'X'
	if string(ks[9]) != "m/a/3" {
		t.Errorf("a prefix asked twice shares memory: %q", ks[9])
	}
}

// scanPrefixes collects a ScanPrefixes, copying the slices: per prefix,
// its keys and values.
func scanPrefixes(t *testing.T, s storage.Store, prefixes ...string) [][]kv {
	t.Helper()
	bs := make([][]byte, len(prefixes))
	for i, p := range prefixes {
		bs[i] = []byte(p)
	}
	out := make([][]kv, len(prefixes))
	err := s.ScanPrefixes(t.Context(), bs, func(i int, k, v []byte) bool {
		out[i] = append(out[i], kv{string(k), string(v)})
		return true
	})
	if err != nil {
		t.Fatalf("ScanPrefixes(%q): %v", prefixes, err)
	}
	return out
}

func testScanPrefixes(t *testing.T, h *harness) {
	s, _ := h.store(t)
	if got := scanPrefixes(t, s); len(got) != 0 {
		t.Fatalf("ScanPrefixes() = %q", got)
	}
	if got := scanPrefixes(t, s, "m/", ""); got[0] != nil || got[1] != nil {
		t.Fatalf("ScanPrefixes of an empty store = %q", got)
	}
	apply(t, s, true, set("m/a/1", "1"), set("m/a/3", "3"), set("m/a/2", ""), set("m/b/1", "b"),
		set("m/c", "c"), set("n", "n"), set("\xff\xff", "f"), set("\xff\xff\x01", "g"))
	prefixes := []string{"m/b/", "m/x/", "m/a/", "", "\xff\xff", "m/a/", "m/a/3"}
	want := [][]string{
		{"m/b/1"}, nil, {"m/a/1", "m/a/2", "m/a/3"},
		{"m/a/1", "m/a/2", "m/a/3", "m/b/1", "m/c", "n", "\xff\xff", "\xff\xff\x01"},
		{"\xff\xff", "\xff\xff\x01"}, {"m/a/1", "m/a/2", "m/a/3"}, {"m/a/3"},
	}
	got := scanPrefixes(t, s, prefixes...)
	for i := range prefixes {
		if !slices.Equal(keysOf(got[i]), want[i]) {
			t.Errorf("prefix %q: keys %q, want %q", prefixes[i], keysOf(got[i]), want[i])
		}
	}
	if got[2][0].v != "1" || got[2][1].v != "" || got[6][0].v != "3" {
		t.Errorf("values under m/a/: %q", got[2])
	}
	// Stopping ends the whole scan.
	var seen []string
	err := s.ScanPrefixes(t.Context(), [][]byte{[]byte("m/a/"), []byte("m/b/")}, func(i int, k, _ []byte) bool {
		seen = append(seen, string(k))
		return len(seen) < 2
	})
	if err != nil || !slices.Equal(seen, []string{"m/a/1", "m/a/2"}) {
		t.Errorf("stopping after two keys: saw %q, %v", seen, err)
	}
}

// testScanPrefixesLarge: prefixes of thousands of keys beside small ones
// (stores that read small ranges in one round trip must not cut the
// large).
func testScanPrefixesLarge(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const n = 3000
	b := numbered("big/", n)
	b.Set([]byte("small/1"), []byte("s"))
	if err := s.Apply(t.Context(), b, false); err != nil {
		t.Fatal(err)
	}
	got := scanPrefixes(t, s, "small/", "big/", "none/")
	if len(got[0]) != 1 || got[2] != nil {
		t.Fatalf("small prefixes beside a large one: %q, %q", got[0], got[2])
	}
	if len(got[1]) != n {
		t.Fatalf("large prefix: %d keys, want %d", len(got[1]), n)
	}
	for i, x := range got[1] {
		if storage.Uint64Suffix([]byte(x.k)) != uint64(i) || x.v != fmt.Sprint(i) {
			t.Fatalf("large prefix: row %d is %q=%q", i, x.k, x.v)
		}
	}
}

// testAtomicScanPrefixes: ScanPrefixes reads one snapshot across its
// prefixes, as Scan does across a range.
func testAtomicScanPrefixes(t *testing.T, h *harness) {
	s, _ := h.store(t)
	// Each key its own prefix, plus the whole range: every row of one read
	// must be of one generation.
	prefixes := [][]byte{[]byte("atom/")}
	for i := range atomKeys {
		prefixes = append(prefixes, atomKey(i))
	}
	writeGenerations(t, s, func(reads int) bool {
		g := &oneGeneration{t: t, read: reads}
		err := s.ScanPrefixes(t.Context(), prefixes, func(_ int, _, v []byte) bool { return g.see(v) })
		if err != nil {
			t.Fatalf("ScanPrefixes: %v", err)
		}
		if g.count != 0 && g.count != 2*atomKeys {
			t.Fatalf("read %d saw %d rows, want 0 or %d", reads, g.count, 2*atomKeys)
		}
		return !t.Failed()
	})
}

// testGetManyLarge: thousands of keys in one call, half of them missing.
func testGetManyLarge(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const n = 3000
	key := func(i int) []byte { return storage.AppendUint64([]byte("many/"), uint64(i)) }
	b := &storage.Batch{}
	for i := 0; i < n; i += 2 {
		b.Set(key(i), fmt.Appendf(nil, "v%d", i))
	}
	if err := s.Apply(t.Context(), b, false); err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = key(n - 1 - i) // descending: order follows the keys, not the store
	}
	for i, v := range getMany(t, s, keys...) {
		k := n - 1 - i
		if k%2 == 1 && v != nil || k%2 == 0 && string(v) != fmt.Sprintf("v%d", k) {
			t.Fatalf("key %d = %q", k, v)
		}
	}
}

// testGetManyAtomic: GetMany sees a batch applied during it wholly or not at
// all.
func testGetManyAtomic(t *testing.T, h *harness) {
	s, _ := h.store(t)
	keys := make([][]byte, atomKeys)
	for i := range keys {
		keys[i] = atomKey(i)
	}
	writeGenerations(t, s, func(reads int) bool {
		vs := getMany(t, s, keys...)
		for _, v := range vs[1:] {
			if (v == nil) != (vs[0] == nil) || !bytes.Equal(v, vs[0]) {
				t.Errorf("read %d saw a torn batch: %q and %q", reads, vs[0], v)
				return false
			}
		}
		return true
	})
}

func testOverwrite(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("k", "old"))
	apply(t, s, true, set("k", "new-and-longer"))
	wantValue(t, s, "k", "new-and-longer")
	apply(t, s, true, set("k", "x"))
	wantValue(t, s, "k", "x")
}

func testDelete(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("a", "1"), set("b", "2"))
	apply(t, s, true, del("a"), del("never-written"))
	wantMissing(t, s, "a")
	wantMissing(t, s, "never-written")
	wantValue(t, s, "b", "2")
	if got := keysOf(scan(t, s, nil, nil, false)); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Scan after delete = %q, want [b]", got)
	}
	// A deleted key can be written again.
	apply(t, s, true, set("a", "3"))
	wantValue(t, s, "a", "3")
}

func testSetDeleteOneBatch(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("old", "1"), set("keep", "2"))
	apply(t, s, true, set("new", "3"), del("old"), set("keep", "4"))
	wantMissing(t, s, "old")
	wantValue(t, s, "new", "3")
	wantValue(t, s, "keep", "4")
}

func testLaterWriteWins(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("gone", "x"))
	apply(t, s, true,
		set("k", "1"), set("k", "2"), set("k", "3"), // last set wins
		set("sd", "1"), del("sd"), // set then delete: deleted
		del("ds"), set("ds", "1"), // delete then set: present
		del("gone"), set("gone", "back"), del("gone"), // ends deleted
		set("k2", "a"), del("k2"), set("k2", "b"), // ends set
	)
	wantValue(t, s, "k", "3")
	wantMissing(t, s, "sd")
	wantValue(t, s, "ds", "1")
	wantMissing(t, s, "gone")
	wantValue(t, s, "k2", "b")
	want := []kv{{"ds", "1"}, {"k", "3"}, {"k2", "b"}}
	if got := scan(t, s, nil, nil, false); !slices.Equal(got, want) {
		t.Errorf("Scan = %q, want %q", got, want)
	}
}

func testEmptyBatch(t *testing.T, h *harness) {
	s, _ := h.store(t)
	for _, sync := range []bool{true, false} {
		if err := s.Apply(t.Context(), &storage.Batch{}, sync); err != nil {
			t.Fatalf("Apply(empty, sync=%v): %v", sync, err)
		}
	}
	if got := scan(t, s, nil, nil, false); len(got) != 0 {
		t.Errorf("Scan = %q, want nothing", got)
	}
}

// testValuesCopied: Get returns a copy the caller owns.
func testValuesCopied(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("k", "value"))
	v, _ := get(t, s, []byte("k"))
	for i := range v {
		v[i] = 'X'
	}
	_ = append(v[:0], "overwritten-by-append"...)
	wantValue(t, s, "k", "value")
	v2, _ := get(t, s, []byte("k"))
	v3, _ := get(t, s, []byte("k"))
	v2[0] = 'Y'
	if string(v3) != "value" {
		t.Errorf("two Gets share memory: %q", v3)
	}
}

func testLargeValue(t *testing.T, h *harness) {
	s, _ := h.store(t)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	b := &storage.Batch{}
	b.Set([]byte("big"), big)
	if err := s.Apply(t.Context(), b, true); err != nil {
		t.Fatal(err)
	}
	v, ok := get(t, s, []byte("big"))
	if !ok || !bytes.Equal(v, big) {
		t.Fatalf("Get(big): found %v, len %d, equal %v", ok, len(v), bytes.Equal(v, big))
	}
}

func testSyncModes(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("sync", "1"))
	apply(t, s, false, set("nosync", "2"))
	// Visible as soon as Apply returns, whatever the mode.
	wantValue(t, s, "sync", "1")
	wantValue(t, s, "nosync", "2")
	apply(t, s, false, del("sync"), set("nosync", "3"))
	apply(t, s, true, set("sync2", "4"))
	wantMissing(t, s, "sync")
	wantValue(t, s, "nosync", "3")
	wantValue(t, s, "sync2", "4")
}

func testScanBounds(t *testing.T, h *harness) {
	s, _ := h.store(t)
	all := []string{"a", "b", "bb", "c", "d", "e", "f"}
	var ops []storage.Op
	for _, k := range all {
		ops = append(ops, set(k, "v"+k))
	}
	apply(t, s, true, ops...)

	rev := func(x []string) []string { y := slices.Clone(x); slices.Reverse(y); return y }
	b := func(s string) []byte { return []byte(s) }
	cases := []struct {
		name       string
		start, end []byte
		want       []string
	}{
		{"all", nil, nil, all},
		{"empty start", b(""), nil, all},
		{"closed-open", b("b"), b("d"), []string{"b", "bb", "c"}},
		{"bounds not keys", b("ba"), b("cc"), []string{"bb", "c"}},
		{"start only", b("d"), nil, []string{"d", "e", "f"}},
		{"end only", nil, b("bb"), []string{"a", "b"}},
		{"start after last", b("g"), nil, nil},
		{"end before first", nil, b("a"), nil},
		{"start equals end", b("c"), b("c"), nil},
		{"single key", b("c"), b("c\x00"), []string{"c"}},
		{"end past last", b("e"), b("zzz"), []string{"e", "f"}},
	}
	for _, tc := range cases {
		for _, reverse := range []bool{false, true} {
			want := tc.want
			if reverse {
				want = rev(want)
			}
			got := scan(t, s, tc.start, tc.end, reverse)
			if !slices.Equal(keysOf(got), want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("%s: Scan(%q, %q, reverse=%v) = %q, want %q", tc.name, tc.start, tc.end, reverse, keysOf(got), want)
			}
			for _, x := range got {
				if x.v != "v"+x.k {
					t.Errorf("%s: value of %q = %q", tc.name, x.k, x.v)
				}
			}
		}
	}
}

func testScanStop(t *testing.T, h *harness) {
	s, _ := h.store(t)
	var ops []storage.Op
	for i := range 50 {
		ops = append(ops, set(fmt.Sprintf("k%02d", i), "v"))
	}
	apply(t, s, true, ops...)
	for _, reverse := range []bool{false, true} {
		for _, stopAfter := range []int{1, 3, 49, 50} {
			var got []string
			err := s.Scan(t.Context(), nil, nil, reverse, func(k, _ []byte) bool {
				got = append(got, string(k))
				return len(got) < stopAfter
			})
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if len(got) != stopAfter {
				t.Fatalf("reverse=%v stopAfter=%d: fn called %d times", reverse, stopAfter, len(got))
			}
			first, last := "k00", fmt.Sprintf("k%02d", stopAfter-1)
			if reverse {
				first, last = "k49", fmt.Sprintf("k%02d", 50-stopAfter)
			}
			if got[0] != first || got[len(got)-1] != last {
				t.Errorf("reverse=%v stopAfter=%d: got %s..%s, want %s..%s", reverse, stopAfter, got[0], got[len(got)-1], first, last)
			}
		}
	}
	// The store is usable after an early stop.
	apply(t, s, true, set("after", "1"))
	wantValue(t, s, "after", "1")
}

func testScanPrefix(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true,
		set("m/c1", "x"), set("m/c1/", "x"), set("m/c1/a", "x"), set("m/c1/b", "x"),
		set("m/c10/a", "x"), set("m/c1\xff", "x"), set("m/c2/a", "x"),
	)
	p := storage.Key("m", "c1", "")
	got := keysOf(scan(t, s, p, storage.PrefixEnd(p), false))
	want := []string{"m/c1/", "m/c1/a", "m/c1/b"}
	if !slices.Equal(got, want) {
		t.Errorf("prefix %q: %q, want %q", p, got, want)
	}
	got = keysOf(scan(t, s, p, storage.PrefixEnd(p), true))
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("prefix %q reverse: %q, want %q", p, got, want)
	}
}

// testBinaryKeys: keys are bytes, sorted bytewise (unsigned), including 0x00
// and 0xff anywhere in the key.
func testBinaryKeys(t *testing.T, h *harness) {
	s, _ := h.store(t)
	keys := []string{
		"\x00", "\x00\x00", "\x00\xff", "\x01", "a", "a\x00", "a\x00\x00", "a\x00b",
		"a\x7f", "a\x80", "a\xff", "a\xff\xff", "b", "\x7f", "\x80", "\xfe", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff",
	}
	shuffled := slices.Clone(keys)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var ops []storage.Op
	for _, k := range shuffled {
		ops = append(ops, storage.Op{Key: []byte(k), Value: []byte("v\x00\xff" + k)})
	}
	apply(t, s, true, ops...)
	slices.Sort(keys) // Go string order is bytewise.

	got := scan(t, s, nil, nil, false)
	if !slices.Equal(keysOf(got), keys) {
		t.Fatalf("Scan order:\n got %q\nwant %q", keysOf(got), keys)
	}
	for _, x := range got {
		if x.v != "v\x00\xff"+x.k {
			t.Errorf("value of %q = %q", x.k, x.v)
		}
	}
	for _, k := range keys {
		wantValue(t, s, k, "v\x00\xff"+k)
	}
	rev := slices.Clone(keys)
	slices.Reverse(rev)
	if got := keysOf(scan(t, s, nil, nil, true)); !slices.Equal(got, rev) {
		t.Errorf("reverse Scan order:\n got %q\nwant %q", got, rev)
	}
	// Bounds with 0x00/0xff.
	if got := keysOf(scan(t, s, []byte("a\x00"), []byte("a\x01"), false)); !slices.Equal(got, []string{"a\x00", "a\x00\x00", "a\x00b"}) {
		t.Errorf("Scan[a\\x00, a\\x01) = %q", got)
	}
	if got := keysOf(scan(t, s, []byte("\xff"), nil, false)); !slices.Equal(got, []string{"\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff"}) {
		t.Errorf("Scan[\\xff, nil) = %q", got)
	}
	// PrefixEnd of an all-0xff prefix is nil: no upper bound.
	p := []byte("\xff\xff")
	if got := keysOf(scan(t, s, p, storage.PrefixEnd(p), true)); !slices.Equal(got, []string{"\xff\xff\xff", "\xff\xff"}) {
		t.Errorf("reverse prefix \\xff\\xff = %q", got)
	}
	if got := keysOf(scan(t, s, nil, []byte("\x00\x00"), false)); !slices.Equal(got, []string{"\x00"}) {
		t.Errorf("Scan[nil, \\x00\\x00) = %q", got)
	}
}

// testUint64Order: keys built with AppendUint64 scan in numeric order.
func testUint64Order(t *testing.T, h *harness) {
	s, _ := h.store(t)
	nums := []uint64{0, 1, 2, 255, 256, 257, 65535, 65536, 1 << 31, 1 << 32, 1<<32 + 1, 1 << 56, 1 << 63, math.MaxUint64 - 1, math.MaxUint64}
	shuffled := slices.Clone(nums)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	prefix := storage.Key("m", "conv")
	b := &storage.Batch{}
	for _, n := range shuffled {
		b.Set(storage.AppendUint64(slices.Clip(prefix), n), []byte(fmt.Sprint(n)))
	}
	// A neighbouring conversation must not leak into the range.
	b.Set(storage.AppendUint64(storage.Key("m", "conv2"), 5), []byte("other"))
	b.Set(storage.AppendUint64(storage.Key("m", "con"), 5), []byte("other"))
	if err := s.Apply(t.Context(), b, true); err != nil {
		t.Fatal(err)
	}
	lo := append(slices.Clip(prefix), '/')
	hi := storage.PrefixEnd(lo)
	check := func(reverse bool, want []uint64) {
		t.Helper()
		var got []uint64
		err := s.Scan(t.Context(), lo, hi, reverse, func(k, v []byte) bool {
			n := storage.Uint64Suffix(k)
			if string(v) != fmt.Sprint(n) {
				t.Errorf("key %d has value %q", n, v)
			}
			got = append(got, n)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("reverse=%v: %v, want %v", reverse, got, want)
		}
	}
	check(false, nums)
	rev := slices.Clone(nums)
	slices.Reverse(rev)
	check(true, rev)

	// A seq range [256, 1<<32) as services scan it.
	var got []uint64
	err := s.Scan(t.Context(), storage.AppendUint64(slices.Clip(prefix), 256), storage.AppendUint64(slices.Clip(prefix), 1<<32), false, func(k, _ []byte) bool {
		got = append(got, storage.Uint64Suffix(k))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{256, 257, 65535, 65536, 1 << 31}; !slices.Equal(got, want) {
		t.Errorf("range: %v, want %v", got, want)
	}
}

// numbered is a batch setting prefix + uint64(i) to the decimal i, for i
// in [0, n).
func numbered(prefix string, n int) *storage.Batch {
	b := &storage.Batch{}
	for i := range n {
		b.Set(storage.AppendUint64([]byte(prefix), uint64(i)), []byte(fmt.Sprint(i)))
	}
	return b
}

// testScanLarge scans more keys than any reasonable page or buffer, in both
// directions, with and without bounds.
func testScanLarge(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const n = 5000
	if err := s.Apply(t.Context(), numbered("big", n), false); err != nil {
		t.Fatal(err)
	}
	for _, reverse := range []bool{false, true} {
		i, count := 0, 0
		if reverse {
			i = n - 1
		}
		err := s.Scan(t.Context(), nil, nil, reverse, func(k, v []byte) bool {
			if got := storage.Uint64Suffix(k); got != uint64(i) || string(v) != fmt.Sprint(i) {
				t.Fatalf("reverse=%v: at %d got key %d value %q", reverse, i, got, v)
			}
			if reverse {
				i--
			} else {
				i++
			}
			count++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if count != n {
			t.Errorf("reverse=%v: %d keys, want %d", reverse, count, n)
		}
	}
	lo := storage.AppendUint64([]byte("big"), 1234)
	hi := storage.AppendUint64([]byte("big"), 4321)
	for _, reverse := range []bool{false, true} {
		got := scan(t, s, lo, hi, reverse)
		if len(got) != 4321-1234 {
			t.Fatalf("reverse=%v: %d keys in range, want %d", reverse, len(got), 4321-1234)
		}
		first, last := got[0].v, got[len(got)-1].v
		if reverse {
			first, last = last, first
		}
		if first != "1234" || last != "4320" {
			t.Errorf("reverse=%v: range %s..%s", reverse, first, last)
		}
	}
}

func testScanCanceled(t *testing.T, h *harness) {
	s, _ := h.store(t)
	apply(t, s, true, set("a", "1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// A canceled scan may fail or not (an embedded store may not look at the
	// context for a short scan), but it must not panic or hang, and the store
	// stays usable.
	_ = s.Scan(ctx, nil, nil, false, func(_, _ []byte) bool { return true })
	_ = s.ScanPrefixes(ctx, [][]byte{[]byte("a"), nil}, func(int, []byte, []byte) bool { return true })
	wantValue(t, s, "a", "1")
}

// testAtomicScan: batches applied while scanning are wholly visible or not at
// all. Each batch sets or deletes all keys; every scan must see all keys with
// one value, or none.
func testAtomicScan(t *testing.T, h *harness) {
	s, _ := h.store(t)
	writeGenerations(t, s, func(reads int) bool {
		for _, reverse := range []bool{false, true} {
			g := &oneGeneration{t: t, read: reads}
			err := s.Scan(t.Context(), []byte("atom/"), []byte("atom0"), reverse, func(_, v []byte) bool { return g.see(v) })
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if count := g.count; count != 0 && count != atomKeys {
				t.Fatalf("scan %d saw %d keys, want 0 or %d", reads, count, atomKeys)
			}
		}
		return !t.Failed()
	})
}

// oneGeneration checks that the values one read sees are all of one
// batch of writeGenerations.
type oneGeneration struct {
	t     *testing.T
	read  int
	first string
	count int
}

// see takes the next value; false (and an error) if it is of another batch.
func (g *oneGeneration) see(v []byte) bool {
	if g.count == 0 {
		g.first = string(v)
	} else if string(v) != g.first {
		g.t.Errorf("read %d saw a torn batch: %q and %q", g.read, g.first, v)
		return false
	}
	g.count++
	return true
}

// atomKeys keys atomKey(i) are written together by writeGenerations.
const atomKeys = 100

func atomKey(i int) []byte { return fmt.Appendf(nil, "atom/%03d", i) }

// writeGenerations applies batches that each set every atomKey to the
// batch's generation (every third deletes them all), while calling read
// until the writer is done and read has run at least 3 times, or read
// returns false.
func writeGenerations(t *testing.T, s storage.Store, read func(reads int) bool) {
	t.Helper()
	const batches = 60
	var done atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		defer done.Store(true)
		for n := 1; n <= batches; n++ {
			b := &storage.Batch{}
			for i := range atomKeys {
				if n%3 == 0 {
					b.Delete(atomKey(i))
				} else {
					b.Set(atomKey(i), fmt.Appendf(nil, "gen%d", n))
				}
			}
			if err := s.Apply(context.Background(), b, n%2 == 0); err != nil {
				errc <- err
				return
			}
		}
	})
	for reads := 1; !done.Load() || reads <= 3; reads++ {
		if !read(reads) {
			break
		}
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("Apply: %v", err)
	default:
	}
}

// testConcurrentApply: many goroutines apply batches at once, synced and not;
// every write lands.
func testConcurrentApply(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				b := &storage.Batch{}
				b.Set(fmt.Appendf(nil, "w%d/%03d/a", w, i), fmt.Appendf(nil, "%d-%d", w, i))
				b.Set(fmt.Appendf(nil, "w%d/%03d/b", w, i), fmt.Appendf(nil, "%d-%d", w, i))
				b.Delete(fmt.Appendf(nil, "w%d/%03d/a", w, i-1))
				if err := s.Apply(context.Background(), b, i%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Apply: %v", err)
	}
	got := scan(t, s, nil, nil, false)
	if len(got) != workers*(perWorker+1) {
		t.Fatalf("%d keys, want %d", len(got), workers*(perWorker+1))
	}
	for w := range workers {
		for i := range perWorker {
			wantValue(t, s, fmt.Sprintf("w%d/%03d/b", w, i), fmt.Sprintf("%d-%d", w, i))
		}
		wantValue(t, s, fmt.Sprintf("w%d/%03d/a", w, perWorker-1), fmt.Sprintf("%d-%d", w, perWorker-1))
	}
}

// testConcurrentSameKeys: concurrent batches over the same keys, in different
// orders, never interleave: at the end every key holds the value of one and
// the same batch (the last applied).
func testConcurrentSameKeys(t *testing.T, h *harness) {
	s, _ := h.store(t)
	const workers, perWorker, keys = 6, 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWorker {
				b := &storage.Batch{}
				for _, k := range r.Perm(keys) {
					b.Set(fmt.Appendf(nil, "same/%d", k), fmt.Appendf(nil, "w%d-%d", w, i))
				}
				// Some batches also delete and re-create keys.
				if i%4 == 1 {
					b.Delete([]byte("same/x"))
				} else {
					b.Set([]byte("same/x"), fmt.Appendf(nil, "w%d-%d", w, i))
				}
				if err := s.Apply(context.Background(), b, i%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Apply: %v", err)
	}
	got := scan(t, s, []byte("same/"), []byte("same0"), false)
	if len(got) < keys {
		t.Fatalf("%d keys, want at least %d", len(got), keys)
	}
	for _, x := range got[:keys] {
		if x.v != got[0].v {
			t.Fatalf("keys from different batches: %q", got)
		}
	}
	if len(got) == keys+1 && got[keys].v != got[0].v {
		t.Fatalf("same/x from a different batch: %q", got)
	}
}

func testErrClosed(t *testing.T, h *harness) {
	s, closeStore := h.store(t)
	apply(t, s, true, set("a", "1"))
	if err := closeStore(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	if _, err := s.Get(ctx, []byte("a")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if _, err := s.GetMany(ctx, [][]byte{[]byte("a")}); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("GetMany after Close: %v, want ErrClosed", err)
	}
	called := false
	if err := s.ScanPrefixes(ctx, [][]byte{[]byte("a")}, func(int, []byte, []byte) bool { called = true; return true }); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("ScanPrefixes after Close: %v, want ErrClosed", err)
	}
	if err := s.Scan(ctx, nil, nil, false, func(_, _ []byte) bool { called = true; return true }); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Scan after Close: %v, want ErrClosed", err)
	}
	if called {
		t.Error("Scan after Close called fn")
	}
	for _, sync := range []bool{true, false} {
		if err := s.Apply(ctx, &storage.Batch{Ops: []storage.Op{set("b", "2")}}, sync); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Apply(sync=%v) after Close: %v, want ErrClosed", sync, err)
		}
	}
}

// testFencing: a batch is applied only if every fence still has its
// partition's current epoch; otherwise nothing of it is, and Apply (and the
// Committer, which fills Fences through its hook) fails with ErrFenced.
func testFencing(t *testing.T, h *harness) {
	if h.cfg.fence == nil {
		t.Skip("store does not check fences (no WithFencing)")
	}
	s, _ := h.store(t)
	setEpoch := h.cfg.fence(t, s)
	setEpoch(1, 5)
	setEpoch(2, 7)
	tests := []struct {
		name   string
		fences []storage.Fence
		ok     bool
	}{
		{"current", []storage.Fence{{Part: 1, Epoch: 5}, {Part: 2, Epoch: 7}}, true},
		{"one stale", []storage.Fence{{Part: 1, Epoch: 5}, {Part: 2, Epoch: 6}}, false},
		{"newer than the lease", []storage.Fence{{Part: 2, Epoch: 8}}, false},
		{"no lease row", []storage.Fence{{Part: 3, Epoch: 0}}, false},
	}
	for i, tt := range tests {
		key := fmt.Sprintf("fenced/%d", i)
		b := &storage.Batch{Fences: tt.fences}
		b.Set([]byte(key), []byte("v"))
		b.Delete([]byte("fenced/keep"))
		apply(t, s, true, set("fenced/keep", "x"))
		err := s.Apply(t.Context(), b, true)
		if tt.ok {
			if err != nil {
				t.Fatalf("%s: Apply: %v", tt.name, err)
			}
			wantValue(t, s, key, "v")
			wantMissing(t, s, "fenced/keep")
			continue
		}
		if !errors.Is(err, storage.ErrFenced) {
			t.Fatalf("%s: Apply: %v, want ErrFenced", tt.name, err)
		}
		wantMissing(t, s, key)
		wantValue(t, s, "fenced/keep", "x")
	}

	// Through the Committer: a takeover (epoch 5 → 6) fences later commits.
	c := storage.NewCommitter(s, 0)
	defer c.Close()
	c.Fences = func(parts []uint32) ([]storage.Fence, error) {
		fs := make([]storage.Fence, len(parts))
		for i, p := range parts {
			fs[i] = storage.Fence{Part: p, Epoch: 5}
		}
		return fs, nil
	}
	write := func(key string) error {
		return c.Commit(t.Context(), func(b *storage.Batch) {
			b.Fence(1)
			b.Set([]byte(key), []byte("v"))
		})
	}
	if err := write("fenced/before"); err != nil {
		t.Fatalf("Commit before the takeover: %v", err)
	}
	setEpoch(1, 6)
	if err := write("fenced/after"); !errors.Is(err, storage.ErrFenced) {
		t.Fatalf("Commit after the takeover: %v, want ErrFenced", err)
	}
	wantValue(t, s, "fenced/before", "v")
	wantMissing(t, s, "fenced/after")
}
