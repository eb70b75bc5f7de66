package gateway

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestWatchdog(t *testing.T) {
	const d = time.Second
	tests := []struct {
		name  string
		steps func(w *watchdog, after func(time.Duration, bool))
	}{
		{"a period shorter than d", func(w *watchdog, after func(time.Duration, bool)) {
			w.begin()
			after(d-time.Millisecond, false)
			w.end()
			after(3*d, false)
		}},
		{"a period of d", func(w *watchdog, after func(time.Duration, bool)) {
			w.begin()
			after(d-time.Millisecond, false)
			after(2*time.Millisecond, true)
		}},
		{"periods are timed from their own begin", func(w *watchdog, after func(time.Duration, bool)) {
			w.begin()
			after(d/2, false)
			w.end()
			w.begin() // the timer, armed by the first, goes off in d/2
			after(d/2+d/4, false)
			after(d/4-time.Millisecond, false)
			after(2*time.Millisecond, true)
		}},
		{"begin after the timer went off with nothing open", func(w *watchdog, after func(time.Duration, bool)) {
			w.begin()
			w.end()
			after(2*d, false)
			w.begin()
			after(d+time.Millisecond, true)
		}},
		{"stop", func(w *watchdog, after func(time.Duration, bool)) {
			w.begin()
			w.stop()
			after(2*d, false)
		}},
		{"now", func(w *watchdog, after func(time.Duration, bool)) {
			w.begin()
			w.end()
			w.now()
			after(0, true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var fired atomic.Int32
				w := newWatchdog(d, func() { fired.Add(1) })
				tt.steps(w, func(sleep time.Duration, want bool) {
					t.Helper()
					time.Sleep(sleep)
					synctest.Wait()
					if got := fired.Load() > 0; got != want {
						t.Fatalf("fired = %v, want %v", got, want)
					}
				})
				w.stop()
			})
		})
	}
}
