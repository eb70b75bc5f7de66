package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestPlanProcs(t *testing.T) {
	tests := []struct {
		name    string
		flag    string
		env     string
		runtime int
		want    procsPlan // why not compared
		wantErr bool
	}{
		{"one CPU: by load up to two Ps", "auto", "", 1, procsPlan{adaptive: true, max: 2}, false},
		{"more CPUs: by load up to all of them", "auto", "", 4, procsPlan{adaptive: true, max: 4}, false},
		{"the environment wins", "auto", "1", 1, procsPlan{}, false},
		{"a number", "3", "", 1, procsPlan{fixed: 3}, false},
		{"a number even below two", "1", "", 8, procsPlan{fixed: 1}, false},
		{"zero", "0", "", 1, procsPlan{}, true},
		{"garbage", "many", "", 1, procsPlan{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOMAXPROCS" {
					return tt.env
				}
				return ""
			}
			got, err := planProcs(tt.flag, getenv, tt.runtime)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got.why == "" {
				t.Fatal("no reason given")
			}
			got.why = ""
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// fakeProcs drives a procsTuner with made-up CPU use, one period per step.
type fakeProcs struct {
	t     *procsTuner
	now   time.Time
	cpu   time.Duration
	procs int
	sets  int
}

func newFakeProcs(t *testing.T, max int) *fakeProcs {
	f := &fakeProcs{now: time.Unix(1000, 0)}
	f.t = newProcsTuner(max, func() (time.Duration, error) { return f.cpu, nil },
		func(n int) { f.procs = n; f.sets++ }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f.t.start(f.now); err != nil {
		t.Fatal(err)
	}
	return f
}

// use steps one period in which the process used cores.
func (f *fakeProcs) use(cores float64) {
	f.now = f.now.Add(f.t.period)
	f.cpu += time.Duration(cores * float64(f.t.period))
	f.t.step(f.now)
}

// idleFor steps through d of light use (0.1 core).
func (f *fakeProcs) idleFor(d time.Duration) {
	for end := f.now.Add(d); f.now.Before(end); {
		f.use(0.1)
	}
}

func TestProcsTuner(t *testing.T) {
	type step struct {
		cores float64
		want  int // Ps after the step
	}
	light := func(n int, want int) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{0.2, want}
		}
		return s
	}
	tests := []struct {
		name  string
		after time.Duration // of light use first, from the start
		steps []step
	}{
		{"starts at the most and holds them a while", 0, light(20, 2)},
		{"lowered after downTicks light periods past the hold", 9500 * time.Millisecond,
			append(light(3, 2), step{0.2, 1})},
		{"a busy period restarts the count", 9500 * time.Millisecond,
			append(append(light(3, 2), step{0.9, 2}), append(light(3, 2), step{0.2, 1})...)},
		{"two Ps at 0.75 of a core: one would do", 9500 * time.Millisecond,
			[]step{{0.75, 2}, {0.75, 2}, {0.75, 2}, {0.75, 1}}},
		{"two Ps at 0.8 of a core: kept", 9500 * time.Millisecond,
			[]step{{0.8, 2}, {0.8, 2}, {0.8, 2}, {0.8, 2}, {0.8, 2}, {0.8, 2}}},
		{"one P at 0.8 of a core over upTicks periods: raised", 13 * time.Second,
			[]step{{0.8, 1}, {0.8, 1}, {0.8, 1}, {0.8, 2}}},
		{"one P at 0.7 of a core: kept", 13 * time.Second,
			[]step{{0.7, 1}, {0.7, 1}, {0.7, 1}, {0.7, 1}, {0.7, 1}, {0.75, 1}}},
		{"one P: upTicks periods before the average counts", 11500 * time.Millisecond,
			[]step{{0.9, 1}, {0.9, 1}, {0.9, 1}, {0.9, 2}}},
		{"one P: a burst to 0.9 alone is not raised", 13 * time.Second,
			[]step{{0.9, 1}, {0.6, 1}, {0.6, 1}, {0.6, 1}, {0.7, 1}, {0.9, 1}, {0.2, 1}}},
		{"one P saturated: raised at once", 13 * time.Second,
			[]step{{0.3, 1}, {0.95, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeProcs(t, 2)
			if f.procs != 2 {
				t.Fatalf("started at %d Ps", f.procs)
			}
			f.idleFor(tt.after)
			for i, s := range tt.steps {
				f.use(s.cores)
				if f.procs != s.want {
					t.Fatalf("step %d (%.2f cores): %d Ps, want %d", i, s.cores, f.procs, s.want)
				}
			}
		})
	}
}

func TestProcsTunerHoldsARaise(t *testing.T) {
	f := newFakeProcs(t, 4)
	f.idleFor(20 * time.Second)
	if f.procs != 1 {
		t.Fatalf("%d Ps after 20 s of light use", f.procs)
	}
	f.use(1.5)
	if f.procs != 4 {
		t.Fatalf("%d Ps after a busy period", f.procs)
	}
	f.idleFor(f.t.hold - f.t.period)
	if f.procs != 4 {
		t.Fatalf("lowered to %d Ps within the hold", f.procs)
	}
	f.idleFor(time.Duration(f.t.downTicks+1) * f.t.period)
	if f.procs != 1 {
		t.Fatalf("%d Ps after the hold and %d light periods", f.procs, f.t.downTicks+1)
	}
	if f.sets != 4 { // start, down, up, down
		t.Errorf("GOMAXPROCS set %d times, want 4", f.sets)
	}
}

func TestProcsTunerKeepsPsWhenCPUUnreadable(t *testing.T) {
	f := newFakeProcs(t, 2)
	f.t.cpu = func() (time.Duration, error) { return 0, errors.New("no rusage") }
	f.idleFor(time.Minute)
	if f.procs != 2 || f.sets != 1 {
		t.Fatalf("%d Ps, set %d times", f.procs, f.sets)
	}
}

func TestProcsTunerRunEndsWithContext(t *testing.T) {
	f := newFakeProcs(t, 2)
	f.t.period = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.t.run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not end with its context")
	}
}
