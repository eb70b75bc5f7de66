package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/readmark/readmark/internal/storage"
)

// These are unit tests of the Committer's own logic (gathering, the maxOps
// bound, error fan-out, Close racing Submit) on a recording fake store. What a
// real store must give the Committer (ordered callbacks, durable writes,
// draining on Close) is in storagetest, run by every implementation.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore records every Apply; Apply fails while failNext > 0.
type fakeStore struct {
	mu       sync.Mutex
	applies  []applyCall
	fences   [][]storage.Fence // of each Apply
	failNext int
	failWith error
}

type applyCall struct {
	ops  int
	sync bool
}

func (f *fakeStore) Get(context.Context, []byte) ([]byte, error) { return nil, storage.ErrNotFound }
func (f *fakeStore) GetMany(_ context.Context, keys [][]byte) ([][]byte, error) {
	return make([][]byte, len(keys)), nil
}
func (f *fakeStore) LastKeys(_ context.Context, prefixes [][]byte) ([][]byte, error) {
	return make([][]byte, len(prefixes)), nil
}
func (f *fakeStore) ScanPrefixes(context.Context, [][]byte, func(i int, k, v []byte) bool) error {
	return nil
}
func (f *fakeStore) Scan(context.Context, []byte, []byte, bool, func(k, v []byte) bool) error {
	return nil
}
func (f *fakeStore) Close() error { return nil }

func (f *fakeStore) Apply(_ context.Context, b *storage.Batch, sync bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, applyCall{ops: b.Len(), sync: sync})
	f.fences = append(f.fences, slices.Clone(b.Fences))
	if f.failNext > 0 {
		f.failNext--
		return f.failWith
	}
	return nil
}

func (f *fakeStore) calls() []applyCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applies)
}

type commitStat struct{ ops, requests int }

// gate blocks the commit goroutine inside the first prepare until opened, so
// that a test can queue requests and know exactly what gets gathered.
type gate struct {
	c    *storage.Committer
	open chan struct{}
}

func newGated(t *testing.T, s storage.Store, maxOps int) (*gate, *[]commitStat) {
	t.Helper()
	c := storage.NewCommitter(s, maxOps)
	var stats []commitStat // written on the commit goroutine only
	c.OnCommit = func(ops, requests int) { stats = append(stats, commitStat{ops, requests}) }
	g := &gate{c: c, open: make(chan struct{})}
	if err := c.Submit(t.Context(), func(b *storage.Batch) {
		<-g.open
		b.Set([]byte("gate"), nil)
	}, nil); err != nil {
		t.Fatal(err)
	}
	return g, &stats
}

func TestCommitterGathers(t *testing.T) {
	f := &fakeStore{}
	g, stats := newGated(t, f, 0)
	var order []int // written on the commit goroutine only
	last := make(chan struct{})
	for i := range 99 {
		if err := g.c.Submit(t.Context(), func(b *storage.Batch) { b.Set([]byte{byte(i)}, nil) },
			func(err error) {
				if err != nil {
					t.Errorf("done: %v", err)
				}
				order = append(order, i)
				if i == 98 {
					close(last)
				}
			}); err != nil {
			t.Fatal(err)
		}
	}
	close(g.open)
	// Wait for the last done, not for Close: Close drains without gathering.
	<-last
	g.c.Close() // waits for the loop: stats and order are safe to read
	if want := []commitStat{{100, 100}}; !slices.Equal(*stats, want) {
		t.Errorf("commits %v, want %v (all queued requests in one gathering)", *stats, want)
	}
	if want := []applyCall{{100, true}}; !slices.Equal(f.calls(), want) {
		t.Errorf("applies %v, want %v", f.calls(), want)
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("done order %v", order)
		}
	}
	if len(order) != 99 {
		t.Errorf("%d done calls, want 99", len(order))
	}
}

func TestCommitterMaxOps(t *testing.T) {
	f := &fakeStore{}
	g, stats := newGated(t, f, 10)
	last := make(chan struct{})
	for i := range 24 {
		var done func(error)
		if i == 23 {
			done = func(error) { close(last) }
		}
		if err := g.c.Submit(t.Context(), func(b *storage.Batch) { b.Set([]byte{byte(i)}, nil) }, done); err != nil {
			t.Fatal(err)
		}
	}
	close(g.open)
	<-last // not Close: it drains without gathering
	g.c.Close()
	if want := []commitStat{{10, 10}, {10, 10}, {5, 5}}; !slices.Equal(*stats, want) {
		t.Errorf("commits %v, want %v", *stats, want)
	}
	for _, a := range f.calls() {
		if !a.sync {
			t.Error("Committer applied a batch without sync")
		}
	}
}

// TestCommitterApplyError: a failed Apply fails every request of its
// gathering, and only those.
func TestCommitterApplyError(t *testing.T) {
	boom := errors.New("boom")
	f := &fakeStore{failNext: 1, failWith: boom}
	g, _ := newGated(t, f, 0)
	var failed []error // written on the commit goroutine, read after Close
	g.c.OnFail = func(err error) { failed = append(failed, err) }
	errs := make([]error, 5)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		if err := g.c.Submit(t.Context(), func(b *storage.Batch) { b.Set([]byte{byte(i)}, nil) },
			func(err error) { errs[i] = err; wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	close(g.open)
	wg.Wait()
	// A Commit after the failed gathering succeeds.
	if err := g.c.Commit(t.Context(), func(b *storage.Batch) { b.Set([]byte("later"), nil) }); err != nil {
		t.Errorf("Commit after a failed gathering: %v", err)
	}
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("done %d: %v, want %v", i, err, boom)
		}
	}
	f.mu.Lock()
	f.failNext = 1
	f.mu.Unlock()
	if err := g.c.Commit(t.Context(), func(b *storage.Batch) { b.Set([]byte("x"), nil) }); !errors.Is(err, boom) {
		t.Errorf("Commit: %v, want %v", err, boom)
	}
	g.c.Close()
	if len(failed) != 2 || !errors.Is(failed[0], boom) || !errors.Is(failed[1], boom) {
		t.Errorf("OnFail saw %v, want the two failed gatherings", failed)
	}
}

// TestCommitterFences: the partitions a gathering records (each once) go
// through the Fences hook and the store gets the fences; a hook error fails
// the gathering without an Apply; a batch without recorded parts carries no
// fences and does not call the hook.
func TestCommitterFences(t *testing.T) {
	notOwned := fmt.Errorf("%w: partition 9", storage.ErrFenced)
	tests := []struct {
		name      string
		parts     [][]uint32 // recorded by each request of one gathering
		wantHook  []uint32   // nil: hook not called
		wantFence []storage.Fence
		wantErr   error
	}{
		{"none", [][]uint32{nil, nil}, nil, nil, nil},
		{"distinct", [][]uint32{{3, 5}, {5}, {3, 7}}, []uint32{3, 5, 7},
			[]storage.Fence{{3, 13}, {5, 15}, {7, 17}}, nil},
		{"not owned", [][]uint32{{3}, {9}}, []uint32{3, 9}, nil, notOwned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeStore{}
			g, _ := newGated(t, f, 0)
			var hooked []uint32 // written on the commit goroutine only
			hookCalled := false
			g.c.Fences = func(parts []uint32) ([]storage.Fence, error) {
				hookCalled = true
				hooked = slices.Clone(parts)
				var fs []storage.Fence
				for _, p := range parts {
					if p == 9 {
						return nil, notOwned
					}
					fs = append(fs, storage.Fence{Part: p, Epoch: int64(p) + 10})
				}
				return fs, nil
			}
			errs := make([]error, len(tt.parts))
			var wg sync.WaitGroup
			for i, ps := range tt.parts {
				wg.Add(1)
				if err := g.c.Submit(t.Context(), func(b *storage.Batch) {
					b.Set([]byte{byte(i)}, nil)
					for _, p := range ps {
						b.Fence(p)
					}
				}, func(err error) { errs[i] = err; wg.Done() }); err != nil {
					t.Fatal(err)
				}
			}
			close(g.open)
			wg.Wait()
			g.c.Close()
			for i, err := range errs {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("request %d: %v, want %v", i, err, tt.wantErr)
				}
			}
			if tt.wantHook == nil && hookCalled {
				t.Errorf("hook called with %v for a batch without fences", hooked)
			}
			if !slices.Equal(hooked, tt.wantHook) {
				t.Errorf("hook got %v, want %v", hooked, tt.wantHook)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if tt.wantErr != nil {
				if len(f.applies) != 0 {
					t.Errorf("%d Apply calls after a hook error", len(f.applies))
				}
				return
			}
			if len(f.fences) != 1 || !slices.Equal(f.fences[0], tt.wantFence) {
				t.Errorf("store got fences %v, want [%v]", f.fences, tt.wantFence)
			}
		})
	}
}

// TestCommitterEmpty: requests that write nothing complete without an Apply.
func TestCommitterEmpty(t *testing.T) {
	f := &fakeStore{}
	c := storage.NewCommitter(f, 0)
	defer c.Close()
	for range 3 {
		if err := c.Commit(t.Context(), func(*storage.Batch) {}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.calls()); n != 0 {
		t.Errorf("%d Apply calls for empty requests", n)
	}
}

// TestCommitterOnApply: OnApply observes every Apply, failed ones included,
// and nothing for requests that write nothing.
func TestCommitterOnApply(t *testing.T) {
	f := &fakeStore{failNext: 1, failWith: errors.New("boom")}
	c := storage.NewCommitter(f, 0)
	var (
		mu     sync.Mutex
		timed  int
		negDur bool
	)
	c.OnApply = func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		timed++
		negDur = negDur || d < 0
	}
	defer c.Close()
	for i := range 3 {
		err := c.Commit(t.Context(), func(b *storage.Batch) { b.Set([]byte{byte(i)}, nil) })
		if (err != nil) != (i == 0) {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	if err := c.Commit(t.Context(), func(*storage.Batch) {}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(f.calls()); timed != n || n != 3 || negDur {
		t.Errorf("OnApply called %d times (negative: %v) for %d Apply calls, want 3", timed, negDur, n)
	}
}

// TestCommitterSubmitCanceled: a Submit that cannot queue returns the
// context's error and its done is never called; what was queued completes.
func TestCommitterSubmitCanceled(t *testing.T) {
	f := &fakeStore{}
	g, _ := newGated(t, f, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var (
		mu       sync.Mutex
		done     = map[int]int{}
		accepted []int
	)
	// With the loop blocked, the queue fills; a canceled Submit may still
	// queue while there is room, and must fail once there is none.
	for i := 0; ; i++ {
		err := g.c.Submit(ctx, func(b *storage.Batch) { b.Set([]byte("k"), nil) }, func(error) {
			mu.Lock()
			done[i]++
			mu.Unlock()
		})
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Submit: %v, want context.Canceled", err)
			}
			break
		}
		accepted = append(accepted, i)
		if i > 1<<20 {
			t.Fatal("Submit never failed on a full queue")
		}
	}
	close(g.open)
	g.c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(done) != len(accepted) {
		t.Fatalf("%d done calls for %d accepted requests", len(done), len(accepted))
	}
	for _, i := range accepted {
		if done[i] != 1 {
			t.Fatalf("request %d: done called %d times", i, done[i])
		}
	}
}

// TestCommitterCloseRacesSubmit: with Close concurrent to Submits, each
// Submit either fails with ErrClosed (done never called) or is committed
// before Close returns (done called once).
func TestCommitterCloseRacesSubmit(t *testing.T) {
	f := &fakeStore{}
	c := storage.NewCommitter(f, 0)
	const workers, perWorker = 8, 200
	var (
		mu       sync.Mutex
		accepted int
		done     int
	)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start
			for range perWorker {
				err := c.Submit(context.Background(), func(b *storage.Batch) { b.Set([]byte("k"), nil) }, func(err error) {
					if err != nil {
						t.Errorf("done: %v", err)
					}
					mu.Lock()
					done++
					mu.Unlock()
				})
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Submit: %v", err)
					return
				}
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	close(start)
	c.Close()
	mu.Lock()
	doneAtClose := done
	mu.Unlock()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if doneAtClose != accepted || done != accepted {
		t.Errorf("accepted %d, done %d at Close and %d after", accepted, doneAtClose, done)
	}
}

// heldStore hands each Apply to the test: it announces the batch's keys on
// applying and returns what the test sends on release.
type heldStore struct {
	fakeStore
	applying chan string
	release  chan error
}

func (h *heldStore) Apply(ctx context.Context, b *storage.Batch, sync bool) error {
	var keys []byte
	for _, op := range b.Ops {
		keys = append(keys, op.Key...)
	}
	h.applying <- string(keys)
	if err := <-h.release; err != nil {
		return err
	}
	return h.fakeStore.Apply(ctx, b, sync)
}

// TestCommitterPipeline: the next batch is prepared while the previous one
// syncs; batches are reported in order, OnSeal and OnApplied hooks included;
// when a batch fails, the one prepared on top of it fails too, unapplied,
// after it, and the one after that is prepared afresh and applied.
func TestCommitterPipeline(t *testing.T) {
	boom := errors.New("boom")
	h := &heldStore{applying: make(chan string), release: make(chan error)}
	c := storage.NewCommitter(h, 0)
	defer c.Close()
	var failed []error // commit goroutine; read after Close
	c.OnFail = func(err error) { failed = append(failed, err) }
	var (
		mu   sync.Mutex
		log  []string // of the commit goroutine: prepares, hooks, dones
		errs = map[string]error{}
	)
	record := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	// submit queues a write of key name; the returned channel is closed once
	// it is prepared, done is closed once its done has run.
	submit := func(name string, hooks bool) (prepared, done chan struct{}) {
		prepared, done = make(chan struct{}), make(chan struct{})
		err := c.Submit(t.Context(), func(b *storage.Batch) {
			record("prepare " + name)
			b.Set([]byte(name), nil)
			if hooks {
				b.OnSeal(func(b *storage.Batch) {
					record("seal " + name)
					b.OnApplied(func(err error) { record(fmt.Sprintf("applied %s %v", name, err)) })
				})
			}
			close(prepared)
		}, func(err error) {
			record(fmt.Sprintf("done %s %v", name, err))
			mu.Lock()
			errs[name] = err
			mu.Unlock()
			close(done)
		})
		if err != nil {
			t.Fatal(err)
		}
		return prepared, done
	}
	expectApply := func(want string) {
		t.Helper()
		if got := <-h.applying; got != want {
			t.Fatalf("applying %q, want %q", got, want)
		}
	}

	submit("a", true)
	expectApply("a")
	// a is syncing: b and c are prepared meanwhile, into the next batch.
	submit("b", false)
	preparedC, _ := submit("c", true)
	<-preparedC
	h.release <- nil
	expectApply("bc")
	// b+c is syncing: d is prepared on top of it, then b+c fails.
	preparedD, doneD := submit("d", false)
	<-preparedD
	h.release <- boom
	<-doneD
	_, doneE := submit("e", false)
	expectApply("e")
	h.release <- nil
	<-doneE
	c.Close()

	wrapped := fmt.Sprintf("storage: group commit not applied after the previous one failed: %v", boom)
	want := []string{
		"prepare a", "seal a",
		"prepare b", "prepare c",
		"seal c", // handed over before a's waiters are released
		"applied a <nil>", "done a <nil>",
		"prepare d",
		"applied c boom", "done b boom", "done c boom",
		"done d " + wrapped,
		"prepare e", "done e <nil>",
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(log, want) {
		t.Errorf("commit goroutine did\n%q\nwant\n%q", log, want)
	}
	if err := errs["d"]; !errors.Is(err, boom) || err == boom {
		t.Errorf("d failed with %v, want an error wrapping %v", err, boom)
	}
	if want := []applyCall{{1, true}, {1, true}}; !slices.Equal(h.calls(), want) {
		t.Errorf("store applied %v, want a and e only", h.calls())
	}
	if len(failed) != 1 || failed[0] != boom {
		t.Errorf("OnFail saw %v, want only b+c's %v", failed, boom)
	}
}
