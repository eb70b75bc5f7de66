package gateway

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// workerIdle is how long a worker waits for a request before it ends.
const workerIdle = 10 * time.Second

// workers runs requests on goroutines kept for the next request. A request
// grows its goroutine's stack to what protobuf, Pebble and the dispatcher
// need; with a new goroutine per request that stack copying was 7 % of the
// server's CPU under steady load, and a kept worker has grown its stack
// already. The most recently idle worker is reused first, so the ones a
// burst added sit idle until workerIdle ends them; stop ends them all.
type workers struct {
	idleFor time.Duration // 0 = workerIdle

	mu      sync.Mutex
	idle    []*worker // most recently idle last
	stopped bool
	wg      sync.WaitGroup
}

type worker struct {
	jobs    chan func() // capacity 1; closed by stop
	idleFor time.Duration
	timer   *time.Timer
}

// run runs job on an idle worker, or on a new one.
func (p *workers) run(job func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.jobs <- job
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go p.work(job)
}

func (p *workers) work(job func()) {
	defer p.wg.Done()
	w := &worker{jobs: make(chan func(), 1), idleFor: cmp.Or(p.idleFor, workerIdle)}
	w.timer = time.NewTimer(w.idleFor)
	defer w.timer.Stop()
	for job != nil {
		job()
		job = p.park(w)
	}
}

// park makes w idle and returns its next job, or nil when it is to end.
func (p *workers) park(w *worker) func() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.idle = append(p.idle, w)
	p.mu.Unlock()
	w.timer.Reset(w.idleFor)
	select {
	case job := <-w.jobs:
		return job
	case <-w.timer.C:
	}
	p.mu.Lock()
	if i := slices.Index(p.idle, w); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	// Taken by run (its job is on the way) or by stop (jobs is closed).
	return <-w.jobs
}

// stop ends the idle workers, makes the busy ones end after their request
// and waits for them. Call it once no request can start any more.
func (p *workers) stop() {
	p.mu.Lock()
	p.stopped = true
	for _, w := range p.idle {
		close(w.jobs)
	}
	p.idle = nil
	p.mu.Unlock()
	p.wg.Wait()
}
