package pebblestore_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"go.uber.org/goleak"

	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
	"github.com/readmark/readmark/internal/storage/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string) storage.Store {
	t.Helper()
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatalf("pebblestore.Open(%s): %v", dir, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) storage.Store { return open(t, t.TempDir()) },
		storagetest.WithReopen(func(t *testing.T) func() storage.Store {
			dir := t.TempDir()
			return func() storage.Store { return open(t, dir) }
		}),
	)
}

// TestReopenKeepsData: unsynced writes reach disk on Close (it flushes the
// memtable), and a second Close is harmless.
func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b := &storage.Batch{}
	b.Set([]byte("k"), []byte("v"))
	if err := s.Apply(t.Context(), b, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = open(t, dir)
	defer s.Close()
	v, err := s.Get(t.Context(), []byte("k"))
	if err != nil || string(v) != "v" {
		t.Fatalf("after reopen: Get = %q, %v", v, err)
	}
}

// TestGetManyAllocs: GetMany sets up one lookup for all its keys, not one
// per key: 20 keys cost the result slice and one copy per value found.
func TestGetManyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	s := open(t, t.TempDir())
	defer s.Close()
	b := &storage.Batch{}
	keys := make([][]byte, 20)
	for i := range keys {
		keys[i] = []byte{'k', byte(i)}
		b.Set(keys[i], make([]byte, 100))
	}
	if err := s.Apply(t.Context(), b, false); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		vs, err := s.GetMany(t.Context(), keys)
		if err != nil || vs[19] == nil {
			t.Fatalf("GetMany: %v", err)
		}
	})
	if want := float64(1 + len(keys)); allocs > want {
		t.Fatalf("GetMany of %d keys: %.0f allocations, want at most %.0f", len(keys), allocs, want)
	}
}

// TestWALSyncIntervalSharesSyncs: synced writes arriving within
// WALSyncInterval of a sync wait for its end and share one sync, where
// without it each goroutine's write would have its own or a few.
func TestWALSyncIntervalSharesSyncs(t *testing.T) {
	s, err := pebblestore.OpenWith(t.TempDir(), pebblestore.Options{WALSyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	apply := func(key string) {
		b := &storage.Batch{}
		b.Set([]byte(key), []byte("v"))
		if err := s.Apply(t.Context(), b, true); err != nil {
			t.Error(err)
		}
	}
	apply("first") // syncs at once, and starts the interval
	// Pebble counts a sync just after releasing its writers.
	atLeast := func(n uint64) {
		for deadline := time.Now().Add(10 * time.Second); syncs(t, s) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d syncs counted, want at least %d", syncs(t, s), n)
			}
		}
	}
	atLeast(1)
	before := syncs(t, s)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() { apply(fmt.Sprint("k", i)) })
	}
	wg.Wait()
	atLeast(before + 1)
	if n := syncs(t, s) - before; n != 1 {
		t.Fatalf("32 writes within the interval made %d syncs, want 1", n)
	}
}

// syncs is how many times s synced its write-ahead log.
func syncs(t *testing.T, s *pebblestore.Store) uint64 {
	t.Helper()
	var m dto.Metric
	if err := s.DB().Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
