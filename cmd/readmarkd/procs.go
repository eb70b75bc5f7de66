package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// minProcs is the fewest Ps the server gets once its load needs more than
// one. With one P, a goroutine in a blocking system call (the WAL's
// fdatasync) holds the only P until the runtime notices and hands it over,
// and requests wait meanwhile: on one pinned core, 20,000 receipts/s once
// ran 94 % kept up with the core 24 % idle at one P, 97.6 % at two (third
// sitting in BENCHMARKS.md; the fifth, with fewer syncs, saw no difference).
const minProcs = 2

// procsPlan is what --gomaxprocs decided: a fixed GOMAXPROCS (0 keeps the
// runtime's value), or, if adaptive, a procsTuner between one P and max.
type procsPlan struct {
	fixed    int
	adaptive bool
	max      int
	why      string
}

// planProcs decides GOMAXPROCS from the --gomaxprocs flag ("auto" or a
// number), the environment (GOMAXPROCS, which "auto" respects) and the
// runtime's own choice (the CPUs the process may use).
func planProcs(flag string, getenv func(string) string, runtimeProcs int) (procsPlan, error) {
	switch f := strings.TrimSpace(flag); {
	case f == "auto" && getenv("GOMAXPROCS") != "":
		return procsPlan{why: "GOMAXPROCS from the environment"}, nil
	case f == "auto":
		max := runtimeProcs
		why := fmt.Sprintf("GOMAXPROCS 1 to %d, by load (%d CPU available)", max, runtimeProcs)
		if max < minProcs {
			max = minProcs
			why = fmt.Sprintf("GOMAXPROCS 1 to %d, by load (%d CPU: under load a blocking fsync must not hold the only P)", max, runtimeProcs)
		}
		return procsPlan{adaptive: true, max: max, why: why}, nil
	default:
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return procsPlan{}, fmt.Errorf("--gomaxprocs %q: want auto or a positive number", f)
		}
		return procsPlan{fixed: n, why: fmt.Sprintf("GOMAXPROCS %d", n)}, nil
	}
}

// procsTuner runs the server on one P while it needs little CPU and on max
// Ps once it needs more. A second P costs CPU of its own at moderate load:
// every goroutine a request wakes (worker, commit, writers) starts another
// thread that looks for work and sleeps again. At 5,000 receipts/s, about
// 0.6 of a core, one P took 20-25 % less server CPU per receipt than two,
// with latencies no worse (BENCHMARKS.md). One P gives the server at most
// one core, so the tuner raises the Ps once the server used upCores on
// average over the last upTicks periods, or satCores in the last period
// alone (one P absorbs a half second of burst, as a cursor flush or a GC).
// It lowers them only after downTicks periods in a row under downCores at
// max Ps, which one P does with about a fifth less, well under upCores. A
// raise holds for at least hold, so a load near the levels changes the Ps
// at most once per hold.
type procsTuner struct {
	max       int
	period    time.Duration
	upCores   float64
	upTicks   int
	satCores  float64
	downCores float64
	downTicks int
	hold      time.Duration

	cpu    func() (time.Duration, error) // the process's CPU time so far
	set    func(int)                     // runtime.GOMAXPROCS
	logger *slog.Logger

	procs    int
	lastCPU  time.Duration
	lastAt   time.Time
	recent   []float64 // cores used in the last periods at one P, oldest first
	low      int       // periods in a row under downCores
	raisedAt time.Time
}

func newProcsTuner(max int, cpu func() (time.Duration, error), set func(int), logger *slog.Logger) *procsTuner {
	return &procsTuner{
		max: max, period: 500 * time.Millisecond,
		upCores: 0.8, upTicks: 4, satCores: 0.95, downCores: 0.8, downTicks: 4, hold: 10 * time.Second,
		cpu: cpu, set: set, logger: logger,
	}
}

// start sets max Ps, for the logins that follow a start, and takes the
// first CPU reading.
func (t *procsTuner) start(now time.Time) error {
	c, err := t.cpu()
	if err != nil {
		return err
	}
	t.procs, t.lastCPU, t.lastAt, t.raisedAt = t.max, c, now, now
	t.set(t.max)
	return nil
}

// step takes one CPU reading at now and changes the Ps if the load says
// so.
func (t *procsTuner) step(now time.Time) {
	c, err := t.cpu()
	if err != nil {
		t.logger.Warn("reading the process's CPU time", "err", err)
		return
	}
	wall := now.Sub(t.lastAt)
	if wall <= 0 {
		return
	}
	used := float64(c-t.lastCPU) / float64(wall)
	t.lastCPU, t.lastAt = c, now
	if t.procs == 1 {
		if len(t.recent) == t.upTicks {
			t.recent = t.recent[1:]
		}
		t.recent = append(t.recent, used)
		if avg := mean(t.recent); used >= t.satCores || len(t.recent) == t.upTicks && avg >= t.upCores {
			t.change(t.max, max(used, avg))
			t.raisedAt, t.recent = now, t.recent[:0]
		}
		return
	}
	if used >= t.downCores || now.Sub(t.raisedAt) < t.hold {
		t.low = 0
		return
	}
	if t.low++; t.low >= t.downTicks {
		t.change(1, used)
		t.low = 0
	}
}

func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func (t *procsTuner) change(procs int, used float64) {
	t.logger.Info("cpu", "gomaxprocs", procs, "was", t.procs, "cores_used", fmt.Sprintf("%.2f", used))
	t.procs = procs
	t.set(procs)
}

// run steps every period until ctx ends.
func (t *procsTuner) run(ctx context.Context) {
	tick := time.NewTicker(t.period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// The time of the reading, not of the tick: a busy P may run
			// this late, and the CPU read then covers the delay too.
			t.step(time.Now())
		}
	}
}
