package workers

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func (p *Pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// waitIdle waits until p has n idle workers.
func waitIdle(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.idleCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers, want %d", p.idleCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWorkers(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name string
		run  func(t *testing.T, p *Pool)
	}{
		{"a worker is reused", func(t *testing.T, p *Pool) {
			for range 5 {
				done := make(chan struct{})
				p.Run(func() { close(done) })
				<-done
				waitIdle(t, p, 1)
			}
		}},
		{"concurrent requests get workers of their own", func(t *testing.T, p *Pool) {
			release := make(chan struct{})
			started := make(chan struct{})
			for range 3 {
				p.Run(func() { started <- struct{}{}; <-release })
			}
			for range 3 {
				<-started
			}
			close(release)
			waitIdle(t, p, 3)
		}},
		{"idle workers end", func(t *testing.T, p *Pool) {
			p.IdleFor = 5 * time.Millisecond
			done := make(chan struct{})
			p.Run(func() { close(done) })
			<-done
			waitIdle(t, p, 0)
		}},
		{"stop waits for a busy worker", func(t *testing.T, p *Pool) {
			release, started, stopped := make(chan struct{}), make(chan struct{}), make(chan struct{})
			p.Run(func() { close(started); <-release })
			<-started
			go func() { p.Stop(); close(stopped) }()
			select {
			case <-stopped:
				t.Fatal("stop returned while a request ran")
			case <-time.After(20 * time.Millisecond):
			}
			close(release)
			<-stopped
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Pool{}
			tt.run(t, p)
			p.Stop()
		})
	}
}

// TestWorkersIdleExpiry: a worker ends once it has been idle for IdleFor,
// not before, and one that went idle later outlives it.
func TestWorkersIdleExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Pool{IdleFor: time.Second}
		defer p.Stop()
		first, second := make(chan struct{}), make(chan struct{})
		p.Run(func() { <-first })
		p.Run(func() { <-second }) // a worker of its own: the first is busy
		close(first)
		synctest.Wait()
		if n := p.idleCount(); n != 1 {
			t.Fatalf("%d idle workers, want 1", n)
		}
		idleAfter := func(d time.Duration, want int, when string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			if n := p.idleCount(); n != want {
				t.Fatalf("%s: %d idle workers, want %d", when, n, want)
			}
		}
		time.Sleep(600 * time.Millisecond)
		close(second) // the second goes idle 0.6 s after the first
		idleAfter(0, 2, "both idle")
		idleAfter(399*time.Millisecond, 2, "0.999 s after the first went idle")
		idleAfter(2*time.Millisecond, 1, "1.001 s after the first went idle")
		idleAfter(600*time.Millisecond, 0, "1.001 s after the second went idle")
	})
}
