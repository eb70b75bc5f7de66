package storage

import (
	"context"
	"sync"
)

// Committer is a group-commit queue in front of a Store. Callers submit
// writes; one goroutine gathers everything queued into a single synced batch,
// applies it, then reports to each submitter in submission order. Many
// concurrent small synced writes thus cost one fsync per gathering, and
// callers that need ordered side effects (pushes in seq order) get them by
// submitting in that order.
type Committer struct {
	store   Store
	maxOps  int
	queue   chan *commitReq
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool
	// OnCommit, if set before use, observes each group commit (ops written,
	// requests served); for metrics.
	OnCommit func(ops, requests int)
	// Fences, if set before use (by the cluster node), maps the partitions a
	// gathered batch recorded with Batch.Fence to the leases it relies on;
	// an error (partition not owned) fails the whole gathering unapplied.
	// nil (embedded default): batches carry no fences.
	Fences func(parts []uint32) ([]Fence, error)
	// OnFail, if set before use, observes each failed gathering's error.
	OnFail func(err error)
}

type commitReq struct {
	prepare func(b *Batch)
	done    func(err error)
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
// writes to b (it may read state that must be captured at commit time); done,
// if not nil, runs on the commit goroutine after the batch is durable (err nil)
// or failed, in submission order. Both must be quick, must not call Submit
// or Commit, and must not take a lock that a caller of Submit may hold while
// submitting (Submit blocks while the queue is full). Submit blocks only while the queue is full; it fails with
// ErrClosed after Close, without calling done.
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

func (c *Committer) loop() {
	defer close(c.done)
	var (
		b    Batch
		reqs []*commitReq
	)
	for {
		var r *commitReq
		select {
		case r = <-c.queue:
		case <-c.stop:
			// Submit cannot add more once closed is set: commit what is
			// queued, still gathered, then end.
			select {
			case r = <-c.queue:
			default:
				return
			}
		}
		reqs = append(reqs[:0], r)
		b.Reset()
		r.prepare(&b)
	gather:
		for b.Len() < c.maxOps {
			select {
			case r := <-c.queue:
				reqs = append(reqs, r)
				r.prepare(&b)
			default:
				break gather
			}
		}
		c.finish(&b, reqs)
	}
}

func (c *Committer) finish(b *Batch, reqs []*commitReq) {
	var err error
	if b.Len() > 0 && c.Fences != nil && len(b.parts) > 0 {
		b.Fences, err = c.Fences(b.parts)
	}
	if b.Len() > 0 && err == nil {
		err = c.store.Apply(context.Background(), b, true)
	}
	if c.OnCommit != nil {
		c.OnCommit(b.Len(), len(reqs))
	}
	if err != nil && c.OnFail != nil {
		c.OnFail(err)
	}
	for _, r := range reqs {
		if r.done != nil {
			r.done(err)
		}
	}
}
