// Package workers owns a pool of goroutines kept for the next job: the
// gateway runs sessions' requests on one, the cluster node the requests
// other nodes forward to it.
package workers

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// DefaultIdle is how long a worker waits for a job before it ends.
const DefaultIdle = 10 * time.Second

// Pool runs jobs on goroutines kept for the next job. A request grows its
// goroutine's stack to what protobuf, Pebble and the dispatcher need; with
// a new goroutine per request that stack copying was 7 % of the server's
// CPU under steady load, and a kept worker has grown its stack already.
// The most recently idle worker is reused first, so the ones a burst added
// sit idle until IdleFor ends them; Stop ends them all. The zero Pool is
// ready to use.
//
// One timer for the pool ends the workers idle too long, not one per
// worker: arming a worker's timer and selecting on it at every request
// was 3 % of the server's CPU at 20,000 receipts/s.
type Pool struct {
	IdleFor time.Duration // 0: DefaultIdle; set before the first Run

	mu      sync.Mutex
	idle    []*worker   // most recently idle last, so in order of idleSince
	reaper  *time.Timer // armed while a worker is idle; nil until needed
	armed   bool
	stopped bool
	wg      sync.WaitGroup
}

type worker struct {
	jobs      chan func() // capacity 1; closed to end the worker
	idleSince time.Time
}

// Run runs job on an idle worker, or on a new one.
func (p *Pool) Run(job func()) {
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

func (p *Pool) work(job func()) {
	defer p.wg.Done()
	w := &worker{jobs: make(chan func(), 1)}
	for job != nil {
		job()
		job = p.park(w)
	}
}

// park makes w idle and returns its next job, or nil when it is to end.
func (p *Pool) park(w *worker) func() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	w.idleSince = time.Now()
	p.idle = append(p.idle, w)
	if !p.armed {
		p.arm(p.idleTime())
	}
	p.mu.Unlock()
	return <-w.jobs // nil once closed
}

func (p *Pool) idleTime() time.Duration { return cmp.Or(p.IdleFor, DefaultIdle) }

// arm sets the reaper to run after d. p.mu is held.
func (p *Pool) arm(d time.Duration) {
	p.armed = true
	if p.reaper == nil {
		p.reaper = time.AfterFunc(d, p.reap)
	} else {
		p.reaper.Reset(d)
	}
}

// reap ends the workers idle for IdleFor or longer, and arms itself for
// the next one to reach it.
func (p *Pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if p.stopped {
		return
	}
	idleFor := p.idleTime()
	n := 0
	for n < len(p.idle) && time.Since(p.idle[n].idleSince) >= idleFor {
		close(p.idle[n].jobs)
		n++
	}
	p.idle = slices.Delete(p.idle, 0, n)
	if len(p.idle) > 0 {
		p.arm(idleFor - time.Since(p.idle[0].idleSince))
	}
}

// Stop ends the idle workers, makes the busy ones end after their job and
// waits for them. Call it once no job can start any more.
func (p *Pool) Stop() {
	p.mu.Lock()
	p.stopped = true
	for _, w := range p.idle {
		close(w.jobs)
	}
	p.idle = nil
	if p.reaper != nil {
		p.reaper.Stop()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
