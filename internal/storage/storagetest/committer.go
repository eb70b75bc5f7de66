package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/readmark/readmark/internal/storage"
)

// The Committer tests run the group-commit queue on the store under test:
// what they check is that the store gives the Committer what it promises
// (ordered done callbacks, "returned nil" means written). The Committer's own
// gathering logic is unit-tested in package storage.

// testCommitterOrder: prepare and done run in submission order; prepare sees
// state captured at commit time (here: a sequence counter), and each write is
// readable once its done has been called.
func testCommitterOrder(t *testing.T, h *harness) {
	s, _ := h.store(t)
	c := storage.NewCommitter(s, 0)
	defer c.Close()

	const n = 1000
	var (
		seq      uint64 // touched only on the commit goroutine
		mu       sync.Mutex
		prepared []int
		done     []int
		errs     []error
	)
	all := make(chan struct{})
	for i := range n {
		err := c.Submit(t.Context(), func(b *storage.Batch) {
			seq++
			b.Set(storage.AppendUint64([]byte("seq"), seq), fmt.Appendf(nil, "%d", i))
			mu.Lock()
			prepared = append(prepared, i)
			mu.Unlock()
		}, func(err error) {
			mu.Lock()
			done = append(done, i)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
			if i == n-1 {
				close(all)
			}
		})
		if err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}
	<-all
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		t.Fatalf("done: %v", err)
	}
	for i := range n {
		if prepared[i] != i || done[i] != i {
			t.Fatalf("position %d: prepared %d, done %d", i, prepared[i], done[i])
		}
	}
	// Sequence numbers were assigned in submission order.
	next := uint64(1)
	err := s.Scan(t.Context(), []byte("seq/"), []byte("seq0"), false, func(k, v []byte) bool {
		if got := storage.Uint64Suffix(k); got != next || string(v) != fmt.Sprint(next-1) {
			t.Errorf("key seq %d has value %q, want seq %d value %d", got, v, next, next-1)
			return false
		}
		next++
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != n+1 {
		t.Errorf("%d keys written, want %d", next-1, n)
	}

	// Commit returns once the write is in the store.
	for i := range 20 {
		k := fmt.Appendf(nil, "commit/%d", i)
		if err := c.Commit(t.Context(), func(b *storage.Batch) { b.Set(k, []byte("v")) }); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		wantValue(t, s, string(k), "v")
	}
	// A request that writes nothing still completes.
	if err := c.Commit(t.Context(), func(*storage.Batch) {}); err != nil {
		t.Fatalf("empty Commit: %v", err)
	}
}

// testCommitterConcurrent: many goroutines Commit at once; each goroutine's
// done callbacks come in its own submission order and every write lands.
func testCommitterConcurrent(t *testing.T, h *harness) {
	s, _ := h.store(t)
	c := storage.NewCommitter(s, 64)
	defer c.Close()

	const workers, perWorker = 8, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			last := -1
			var waits []chan error
			for i := range perWorker {
				ch := make(chan error, 1)
				err := c.Submit(context.Background(), func(b *storage.Batch) {
					b.Set(fmt.Appendf(nil, "cc/%d/%03d", w, i), fmt.Appendf(nil, "%d", i))
				}, func(err error) {
					// Runs on the commit goroutine, one at a time.
					if i != last+1 {
						t.Errorf("worker %d: done %d after %d", w, i, last)
					}
					last = i
					ch <- err
				})
				if err != nil {
					t.Errorf("Submit: %v", err)
					return
				}
				waits = append(waits, ch)
				if i%10 == 9 { // mix in synchronous commits
					if err := c.Commit(context.Background(), func(b *storage.Batch) {
						b.Set(fmt.Appendf(nil, "cc/%d/sync%03d", w, i), []byte("s"))
					}); err != nil {
						t.Errorf("Commit: %v", err)
						return
					}
				}
			}
			for _, ch := range waits {
				if err := <-ch; err != nil {
					t.Errorf("done: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got := len(scan(t, s, []byte("cc/"), []byte("cc0"), false)); got != workers*perWorker*11/10 {
		t.Errorf("%d keys, want %d", got, workers*perWorker*11/10)
	}
}

// testCommitterCloseDrains: Close commits everything submitted before it.
func testCommitterCloseDrains(t *testing.T, h *harness) {
	s, _ := h.store(t)
	c := storage.NewCommitter(s, 16)
	const n = 500
	var (
		mu   sync.Mutex
		done int
	)
	for i := range n {
		err := c.Submit(t.Context(), func(b *storage.Batch) {
			b.Set(fmt.Appendf(nil, "drain/%03d", i), []byte("v"))
		}, func(err error) {
			if err != nil {
				t.Errorf("done %d: %v", i, err)
			}
			mu.Lock()
			done++
			mu.Unlock()
		})
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	c.Close()
	mu.Lock()
	got := done
	mu.Unlock()
	if got != n {
		t.Fatalf("after Close: %d done callbacks, want %d", got, n)
	}
	if keys := len(scan(t, s, []byte("drain/"), []byte("drain0"), false)); keys != n {
		t.Fatalf("after Close: %d keys, want %d", keys, n)
	}
}

func testCommitterErrClosed(t *testing.T, h *harness) {
	s, _ := h.store(t)
	c := storage.NewCommitter(s, 0)
	c.Close()
	c.Close() // idempotent
	called := false
	err := c.Submit(t.Context(), func(b *storage.Batch) { b.Set([]byte("x"), nil) }, func(error) { called = true })
	if !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
	if err := c.Commit(t.Context(), func(b *storage.Batch) { b.Set([]byte("x"), nil) }); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
	if called {
		t.Error("done called for a rejected Submit")
	}
	wantMissing(t, s, "x")
}

// testReopen: what was applied, synced or not, survives Close and a reopen
// (Close flushes).
func testReopen(t *testing.T, h *harness) {
	reopen := h.reopener(t)
	s, closeStore := reopen()
	apply(t, s, true, set("sync", "1"), set("gone", "x"))
	apply(t, s, false, set("nosync", "2"), del("gone"))
	b := &storage.Batch{}
	for i := range 100 {
		b.Set(storage.AppendUint64([]byte("n"), uint64(i)), []byte{byte(i), 0, 0xff})
	}
	if err := s.Apply(t.Context(), b, false); err != nil {
		t.Fatal(err)
	}
	if err := closeStore(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, closeStore = reopen()
	wantValue(t, s, "sync", "1")
	wantValue(t, s, "nosync", "2")
	wantMissing(t, s, "gone")
	got := scan(t, s, []byte("n/"), []byte("n0"), false)
	if len(got) != 100 {
		t.Fatalf("after reopen: %d keys, want 100", len(got))
	}
	for i, x := range got {
		if storage.Uint64Suffix([]byte(x.k)) != uint64(i) || x.v != string([]byte{byte(i), 0, 0xff}) {
			t.Fatalf("after reopen: key %d = %q %q", i, x.k, x.v)
		}
	}
	// The reopened store is writable, and a third open sees that too.
	apply(t, s, true, set("second", "3"))
	if err := closeStore(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, _ = reopen()
	wantValue(t, s, "second", "3")
	wantValue(t, s, "sync", "1")
}

// testCommitterReopen: once Commit (or a done callback) reports success, the
// write is in the store for good: it is there after a reopen.
func testCommitterReopen(t *testing.T, h *harness) {
	reopen := h.reopener(t)
	s, closeStore := reopen()
	c := storage.NewCommitter(s, 0)
	for i := range 50 {
		if err := c.Commit(t.Context(), func(b *storage.Batch) {
			b.Set(fmt.Appendf(nil, "c/%02d", i), []byte("v"))
		}); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	queued := make(chan error, 50)
	for i := range 50 {
		if err := c.Submit(t.Context(), func(b *storage.Batch) {
			b.Set(fmt.Appendf(nil, "q/%02d", i), []byte("v"))
		}, func(err error) { queued <- err }); err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	c.Close()
	for range 50 {
		if err := <-queued; err != nil {
			t.Fatalf("done: %v", err)
		}
	}
	if err := closeStore(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, _ = reopen()
	if n := len(scan(t, s, []byte("c/"), []byte("c0"), false)); n != 50 {
		t.Errorf("committed keys after reopen: %d, want 50", n)
	}
	if n := len(scan(t, s, []byte("q/"), []byte("q0"), false)); n != 50 {
		t.Errorf("queued keys after reopen: %d, want 50", n)
	}
}
