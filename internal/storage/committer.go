package storage

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Committer is a group-commit queue in front of a Store. Callers submit
// writes; the commit goroutine gathers everything queued into a single
// synced batch and, once it is applied, reports to each submitter in
// submission order. Many concurrent small synced writes thus cost one fsync
// per gathering, and callers that need ordered side effects (pushes in seq
// order) get them by submitting in that order.
//
// Pipeline. The commit goroutine hands each sealed batch to a sync
// goroutine (Fences hook, then Store.Apply) and meanwhile gathers and
// prepares the next one, so preparing batch N+1 overlaps the fsync of batch
// N. At most one batch is syncing and one gathering; N+1 is handed over
// only after N is durable, and N's done callbacks run before N+1's. Hence:
//
//   - A prepare may see in-memory effects of the batch still syncing (not
//     yet durable), exactly as a reader may see them today.
//   - If batch N fails, batch N+1, prepared on top of N's effects, fails
//     too, unapplied, with an error wrapping N's (so errors.Is(err,
//     ErrFenced) still says "nothing written, retry at the owner"). Its done
//     callbacks run after N's, so N's rollbacks happen first; the batch after
//     it is prepared only once both are rolled back, so the failure never
//     spreads further.
type Committer struct {
	store   Store
	maxOps  int
	queue   chan *commitReq
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool
	// OnCommit, if set before use, observes each group commit (ops written,
	// requests served), failed ones included; for metrics. It runs on the
	// commit goroutine after the batch's Apply, before its done callbacks.
	OnCommit func(ops, requests int)
	// OnApply, if set before use, observes how long each non-empty batch's
	// Fences and Apply took (the durable write: the fsync, or the PostgreSQL
	// commit), failed ones included; for metrics. It runs on the sync
	// goroutine.
	OnApply func(time.Duration)
	// Fences, if set before use (by the cluster node), maps the partitions a
	// gathered batch recorded with Batch.Fence to the leases it relies on;
	// an error (partition not owned) fails the whole gathering unapplied.
	// It is called on the sync goroutine right before Apply, so a lease lost
	// while the batch waited is seen. nil (embedded default): batches carry
	// no fences.
	Fences func(parts []uint32) ([]Fence, error)
	// OnFail, if set before use, observes the error of each gathering that
	// the Fences hook or the store refused (not of the one failed after it).
	OnFail func(err error)
}

type commitReq struct {
	prepare func(b *Batch)
	done    func(err error)
}

// gathering is one batch and the requests prepared into it.
type gathering struct {
	b    Batch
	reqs []*commitReq
}

func (g *gathering) add(r *commitReq) {
	g.reqs = append(g.reqs, r)
	r.prepare(&g.b)
}

func (g *gathering) reset() {
	g.b.Reset()
	clear(g.reqs)
	g.reqs = g.reqs[:0]
}

// NewCommitter starts the commit loop. maxOps bounds one gathering (0 = 10,000).
func NewCommitter(s Store, maxOps int) *Committer {
	if maxOps <= 0 {
		maxOps = 10000
	}
	c := &Committer{
		store:  s,
		maxOps: maxOps,
		queue:  make(chan *commitReq, 4096),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go c.loop()
	return c
}

// Submit queues a write. prepare runs on the commit goroutine and adds the
// writes to b (it may read state that must be captured at commit time, which
// may include the effects of the batch still syncing: see Committer); done,
// if not nil, runs on the commit goroutine after the batch is durable (err
// nil) or failed, in submission order. Both must be quick, must not call
// Submit or Commit, and must not take a lock that a caller of Submit may
// hold while submitting (Submit blocks while the queue is full). Submit
// blocks only while the queue is full; it fails with ErrClosed after Close,
// without calling done.
func (c *Committer) Submit(ctx context.Context, prepare func(b *Batch), done func(err error)) error {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	select {
	case c.queue <- &commitReq{prepare: prepare, done: done}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Commit submits a write and waits until it is durable.
func (c *Committer) Commit(ctx context.Context, prepare func(b *Batch)) error {
	wait, err := c.Enqueue(ctx, prepare)
	if err != nil {
		return err
	}
	return wait()
}

// Enqueue submits a write and returns a function that waits until it is
// durable: queue under a lock that orders writes, wait outside it.
func (c *Committer) Enqueue(ctx context.Context, prepare func(b *Batch)) (wait func() error, err error) {
	ch := make(chan error, 1)
	if err := c.Submit(ctx, prepare, func(err error) { ch <- err }); err != nil {
		return nil, err
	}
	// The write is queued and will be applied whatever happens to ctx; waiting
	// for it keeps "returned nil" equal to "durable".
	return func() error { return <-ch }, nil
}

// Close commits everything queued, stops the loop and waits for it.
func (c *Committer) Close() {
	c.closeMu.Lock()
	if c.closed {
		c.closeMu.Unlock()
		return
	}
	c.closed = true
	c.closeMu.Unlock()
	close(c.stop)
	<-c.done
}

// loop is the commit goroutine: it prepares, seals and reports batches; the
// sync goroutine it owns applies them.
func (c *Committer) loop() {
	defer close(c.done)
	toSync := make(chan *Batch)
	synced := make(chan error)
	syncDone := make(chan struct{})
	go c.syncLoop(toSync, synced, syncDone)
	defer func() {
		close(toSync)
		<-syncDone
	}()

	var gs [2]gathering
	next := &gs[0]       // being gathered
	var busy *gathering  // being synced (nil: none)
	stop := c.stop       // nil once closing
	handOver := func() { // next → busy; the other gathering is empty
		c.drain(next)
		next.b.seal()
		toSync <- &next.b
		busy = next
	}
	for {
		if busy == nil && len(next.reqs) > 0 {
			handOver()
			next = other(&gs, busy)
			continue
		}
		if busy == nil && stop == nil {
			// Closing and idle: Submit cannot add more, so take what is
			// still queued, or end.
			select {
			case r := <-c.queue:
				next.add(r)
				continue
			default:
				return
			}
		}
		queue := c.queue
		if next.b.Len() >= c.maxOps {
			queue = nil // full: wait for the batch syncing
		}
		select {
		case r := <-queue:
			next.add(r)
		case err := <-synced:
			prev := busy
			busy = nil
			if err == nil && len(next.reqs) > 0 {
				// Keep the store busy: hand over the next batch before
				// releasing the previous one's waiters.
				handOver()
			}
			c.report(prev, err, true)
			if err != nil && len(next.reqs) > 0 {
				// Prepared on top of prev's effects, which prev's done
				// callbacks have just undone: it must not be applied.
				next.b.seal()
				c.report(next, fmt.Errorf("storage: group commit not applied after the previous one failed: %w", err), false)
				next.reset()
			}
			prev.reset()
			if busy != nil {
				next = prev
			}
		case <-stop:
			stop = nil
		}
	}
}

func other(gs *[2]gathering, g *gathering) *gathering {
	if g == &gs[0] {
		return &gs[1]
	}
	return &gs[0]
}

// drain prepares what is queued into g, up to maxOps, without waiting.
func (c *Committer) drain(g *gathering) {
	for g.b.Len() < c.maxOps {
		select {
		case r := <-c.queue:
			g.add(r)
		default:
			return
		}
	}
}

// syncLoop is the sync goroutine: it applies each batch it is handed and
// answers with the result, until in is closed.
func (c *Committer) syncLoop(in <-chan *Batch, out chan<- error, done chan<- struct{}) {
	defer close(done)
	for b := range in {
		out <- c.apply(b)
	}
}

func (c *Committer) apply(b *Batch) error {
	if b.Len() == 0 {
		return nil
	}
	if c.OnApply != nil {
		defer func(start time.Time) { c.OnApply(time.Since(start)) }(time.Now())
	}
	if c.Fences != nil && len(b.parts) > 0 {
		var err error
		if b.Fences, err = c.Fences(b.parts); err != nil {
			return err
		}
	}
	return c.store.Apply(context.Background(), b, true)
}

// report tells the observers and the submitters of g how it ended; refused
// is whether err (if any) came from its own Apply or Fences.
func (c *Committer) report(g *gathering, err error, refused bool) {
	if c.OnCommit != nil {
		c.OnCommit(g.b.Len(), len(g.reqs))
	}
	if err != nil && refused && c.OnFail != nil {
		c.OnFail(err)
	}
	g.b.applied(err)
	for _, r := range g.reqs {
		if r.done != nil {
			r.done(err)
		}
	}
}
