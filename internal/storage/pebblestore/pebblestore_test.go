package pebblestore_test

import (
	"testing"

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
