package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/internal/storage/storagetest"
	"github.com/readmark/readmark/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, table string, pageSize int) storage.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), table)
	if err != nil {
		t.Fatalf("pgstore.Open: %v", err)
	}
	if pageSize > 0 {
		pgstore.SetPageSize(s, pageSize)
	}
	return s
}

func run(t *testing.T, pageSize int) {
	testenv.NeedPostgres(t)
	storagetest.Run(t,
		func(t *testing.T) storage.Store { return open(t, testenv.TempTable(t), pageSize) },
		storagetest.WithReopen(func(t *testing.T) func() storage.Store {
			table := testenv.TempTable(t)
			return func() storage.Store { return open(t, table, pageSize) }
		}),
		storagetest.WithFencing(leases),
	)
}

func TestConformance(t *testing.T) { run(t, 0) }

// TestConformanceSmallPages runs the suite again with 7-row pages, so that
// every multi-row scan crosses page boundaries (and snapshots must hold
// across them).
func TestConformanceSmallPages(t *testing.T) { run(t, 7) }

func TestOpenCreatesTableOnce(t *testing.T) {
	testenv.NeedPostgres(t)
	table := testenv.TempTable(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), table)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), ""); err == nil {
		t.Error("Open with empty table: no error")
	}
	if _, err := pgstore.Open(t.Context(), "postgres://127.0.0.1:5432/test?pool_max_conns=zero", "t"); err == nil {
		t.Error("Open with bad pool_max_conns: no error")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// Port 1 is closed: Open fails and leaks nothing.
	if _, err := pgstore.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", "t"); err == nil {
		t.Error("Open on a closed port: no error")
	}
}

// TestPoolBound: more concurrent calls than pool_max_conns queue for a
// connection rather than fail, and Close waits for them and leaves no
// goroutine of the pool behind.
func TestPoolBound(t *testing.T) {
	testenv.NeedPostgres(t)
	table := testenv.TempTable(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // after both Closes
	s, err := pgstore.Open(t.Context(), testenv.PostgresDSN()+"&pool_max_conns=2", table)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			b := &storage.Batch{}
			b.Set([]byte{byte(i)}, []byte{byte(i)})
			if err := s.Apply(context.Background(), b, i%2 == 0); err != nil {
				t.Errorf("Apply: %v", err)
			}
			if _, err := s.Get(context.Background(), []byte{byte(i)}); err != nil {
				t.Errorf("Get: %v", err)
			}
		})
	}
	wg.Wait()
	n := 0
	if err := s.Scan(t.Context(), nil, nil, false, func(_, _ []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 16 {
		t.Errorf("%d keys, want 16", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), []byte{0}); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

// leases creates the store's leases table (the columns fencing reads; package
// cluster owns the real one) and returns a setter of a partition's epoch.
func leases(t *testing.T, s storage.Store) func(part uint32, epoch int64) {
	t.Helper()
	table := pgstore.LeasesTable(pgstore.Table(s.(*pgstore.Store)))
	conn, err := pgx.Connect(t.Context(), testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table); err != nil {
			t.Errorf("dropping %s: %v", table, err)
		}
		conn.Close(context.Background())
	})
	if _, err := conn.Exec(t.Context(), "CREATE TABLE "+table+" (part int PRIMARY KEY, epoch bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return func(part uint32, epoch int64) {
		t.Helper()
		if _, err := conn.Exec(t.Context(), "INSERT INTO "+table+" VALUES ($1, $2) "+
			"ON CONFLICT (part) DO UPDATE SET epoch = EXCLUDED.epoch", int32(part), epoch); err != nil {
			t.Fatal(err)
		}
	}
}

// TestApplyAtomic: a batch's writes commit together or not at all, even when
// a statement after the first fails (here the deletes, refused by a
// trigger, after the sets were written): Apply runs its statements as one
// pipeline, whose implicit transaction must roll back whole.
func TestApplyAtomic(t *testing.T) {
	testenv.NeedPostgres(t)
	s := open(t, testenv.TempTable(t), 0)
	defer s.Close()
	table := pgstore.SuffixedTable(pgstore.Table(s.(*pgstore.Store)), "")
	fn := pgstore.SuffixedTable(pgstore.Table(s.(*pgstore.Store)), "_refuse")
	conn, err := pgx.Connect(t.Context(), testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		"CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
		"CREATE TRIGGER refuse BEFORE DELETE ON " + table + " FOR EACH ROW WHEN (OLD.k = 'poison') EXECUTE FUNCTION " + fn + "()",
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+fn+" CASCADE") })
	poison := &storage.Batch{}
	poison.Set([]byte("poison"), []byte("x"))
	if err := s.Apply(t.Context(), poison, true); err != nil {
		t.Fatal(err)
	}
	for _, sync := range []bool{true, false} {
		b := &storage.Batch{}
		b.Set([]byte("a"), []byte("1"))
		b.Delete([]byte("poison"))
		if err := s.Apply(t.Context(), b, sync); err == nil {
			t.Fatalf("sync=%v: Apply succeeded, want the trigger's error", sync)
		}
		if _, err := s.Get(t.Context(), []byte("a")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("sync=%v: the set before the failed delete was committed (Get: %v)", sync, err)
		}
	}
}

// TestScanOnePageReleasesConnection: a range that fits Scan's first page is
// read whole before the callback runs, so the callback may use the store
// even when the pool has a single connection (a scan read page by page in a
// transaction would still hold it).
func TestScanOnePageReleasesConnection(t *testing.T) {
	testenv.NeedPostgres(t)
	s, err := pgstore.Open(t.Context(), testenv.PostgresDSN()+"&pool_max_conns=1", testenv.TempTable(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &storage.Batch{}
	for i := range 10 {
		b.Set([]byte{'k', byte(i)}, []byte{byte(i)})
	}
	if err := s.Apply(t.Context(), b, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n := 0
	err = s.Scan(ctx, []byte("k"), []byte("l"), false, func(k, v []byte) bool {
		got, err := s.Get(ctx, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get(%q) in the callback = %q, %v; want %q", k, got, err, v)
		}
		n++
		return true
	})
	if err != nil || n != 10 {
		t.Fatalf("Scan: %d rows, %v; want 10", n, err)
	}
}
