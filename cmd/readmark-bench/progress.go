package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress prints the current phase, done/total and rate to stderr every
// second until stopped.
type progress struct {
	w     io.Writer
	start time.Time
	done  atomic.Int64

	mu    sync.Mutex
	phase string
	unit  string
	total int64
	extra func() string

	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now(), stop: make(chan struct{})}
	p.wg.Add(1)
	go p.loop()
	return p
}

// set starts a phase with total units to do (0: unknown); extra, if not
// nil, adds details to each line.
func (p *progress) set(phase string, total int64, unit string, extra func() string) {
	p.mu.Lock()
	p.phase, p.total, p.unit, p.extra = phase, total, unit, extra
	p.done.Store(0)
	p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] phase %s\n", time.Since(p.start).Seconds(), phase)
}

func (p *progress) add(n int64) { p.done.Add(n) }

func (p *progress) phaseName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phase
}

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	var lastPhase string
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		phase, total, unit, extra := p.phase, p.total, p.unit, p.extra
		p.mu.Unlock()
		if phase == "" {
			continue
		}
		done := p.done.Load()
		if phase != lastPhase {
			last, lastPhase = 0, phase
		}
		line := fmt.Sprintf("[%6.1fs] %-22s %d", time.Since(p.start).Seconds(), phase, done)
		if total > 0 {
			line += fmt.Sprintf("/%d", total)
		}
		line += fmt.Sprintf(" %s (%d/s)", unit, done-last)
		if extra != nil {
			line += "  " + extra()
		}
		last = done
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) close() {
	close(p.stop)
	p.wg.Wait()
}
