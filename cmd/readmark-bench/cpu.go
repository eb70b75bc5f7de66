package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// cpuWindow measures the CPU spent over a phase of a run. Embedded, the
// server and the simulated clients share this process, so only their sum
// can be measured and the metric names say so; against a separate server
// its CPU comes from the process_cpu_seconds_total of its /metrics (summed
// over the nodes of a cluster), or from /proc with --server-pid, and this
// process's CPU is reported apart as the load tool's.
type cpuWindow struct {
	embedded bool
	server   func(context.Context) (usage, bool) // nil when embedded
	from     string                              // where the server figure comes from
	wall0    time.Time
	self0    usage
	srv0     usage
	srvOK    bool
}

// usage is a process's CPU time and completed GC cycles so far (gc < 0:
// unknown).
type usage struct {
	cpu time.Duration
	gc  int64
}

// cpuSpan is the CPU spent between the start of a window and a snapshot.
type cpuSpan struct {
	w        *cpuWindow
	wall     time.Duration
	self     time.Duration // this process
	server   time.Duration // the server process(es); valid if serverOK
	serverOK bool
	gc       int64 // the server's GC cycles (embedded: this process's); < 0 unknown
}

// startCPU opens a window over t's CPU (t nil: an in-process echo server).
func startCPU(ctx context.Context, t *target) *cpuWindow {
	w := &cpuWindow{embedded: t == nil || t.srv != nil}
	if !w.embedded {
		w.server, w.from = t.serverCPU()
	}
	w.wall0 = time.Now()
	w.self0 = selfUsage()
	if w.server != nil {
		w.srv0, w.srvOK = w.server(ctx)
	}
	return w
}

// snapshot returns the CPU spent since the window started.
func (w *cpuWindow) snapshot(ctx context.Context) cpuSpan {
	self := selfUsage()
	s := cpuSpan{w: w, wall: time.Since(w.wall0), self: self.cpu - w.self0.cpu, gc: -1}
	if w.embedded {
		s.gc = self.gc - w.self0.gc
	}
	if w.srvOK {
		var now usage
		if now, s.serverOK = w.server(ctx); s.serverOK {
			s.server = now.cpu - w.srv0.cpu
			if now.gc >= 0 && w.srv0.gc >= 0 {
				s.gc = now.gc - w.srv0.gc
			}
		}
	}
	return s
}

// perOp reports the CPU per operation: µs of CPU over the window / n, op
// naming the metric (e.g. "member") and what describing one operation.
func (s cpuSpan) perOp(res *Result, op string, n int64, what string) {
	if n <= 0 {
		return
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	if s.w.embedded {
		res.metric("server_and_clients_cpu_us_per_"+op, us(s.self), "µs",
			"CPU of this process (server AND simulated clients) per "+what)
		return
	}
	if !s.serverOK {
		res.noteOnce("server CPU not measured: its /metrics did not answer and no --server-pid was given")
	} else {
		res.metric("server_cpu_us_per_"+op, us(s.server), "µs", "server CPU ("+s.w.from+") per "+what)
	}
	res.metric("load_tool_cpu_us_per_"+op, us(s.self), "µs", "this load tool's own CPU per "+what)
}

// cores reports the CPU used over the window / its wall time.
func (s cpuSpan) cores(res *Result, over string) {
	if s.wall <= 0 {
		return
	}
	if s.gc >= 0 {
		res.metric("gc_cycles", float64(s.gc), "", "GC cycles of the server (embedded: of this process) over "+over)
	}
	if s.w.embedded {
		res.metric("cpu_cores", float64(s.self)/float64(s.wall), "cores", "CPU time / wall time of this process (server AND clients) over "+over)
		return
	}
	if s.serverOK {
		res.metric("cpu_cores", float64(s.server)/float64(s.wall), "cores", "server CPU time ("+s.w.from+") / wall time over "+over)
	}
	res.metric("load_tool_cpu_cores", float64(s.self)/float64(s.wall), "cores", "this load tool's CPU time / wall time over "+over)
}

// serverCPU returns how to read a remote server's usage: the sums of
// process_cpu_seconds_total and go_gc_duration_seconds_count (completed GC
// cycles) over the /metrics of every node, if they answer, else /proc of
// --server-pid (CPU only), else nil.
func (t *target) serverCPU() (func(context.Context) (usage, bool), string) {
	var metrics []string
	for _, u := range t.urls {
		if m, err := metricsURL(u); err == nil {
			metrics = append(metrics, m)
		}
	}
	fromMetrics := func(ctx context.Context) (usage, bool) {
		var cpu, gc float64
		for _, m := range metrics {
			c, g, err := scrapeUsage(ctx, m)
			if err != nil {
				return usage{}, false
			}
			cpu += c
			gc += g
		}
		return usage{cpu: time.Duration(cpu * float64(time.Second)), gc: int64(gc)}, len(metrics) > 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, ok := fromMetrics(ctx); ok {
		from := "process_cpu_seconds_total of its /metrics"
		if len(metrics) > 1 {
			from = fmt.Sprintf("process_cpu_seconds_total summed over the /metrics of %d nodes", len(metrics))
		}
		return fromMetrics, from
	}
	if t.pid != 0 {
		pid := t.pid
		return func(context.Context) (usage, bool) {
			cpu, ok := cpuTime(pid)
			return usage{cpu: cpu, gc: -1}, ok
		}, "/proc of --server-pid"
	}
	return nil, ""
}

// metricsURL maps a ws:// or wss:// server URL to its /metrics.
func metricsURL(ws string) (string, error) {
	u, err := url.Parse(ws)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("not a ws:// URL: %s", ws)
	}
	u.Path, u.RawQuery = "/metrics", ""
	return u.String(), nil
}

// scrapeUsage reads a server's CPU seconds (process_cpu_seconds_total) and
// completed GC cycles (the count of go_gc_duration_seconds) from its
// /metrics.
func scrapeUsage(ctx context.Context, metrics string) (cpu, gc float64, err error) {
	page, err := fetchPage(ctx, metrics)
	if err != nil {
		return 0, 0, err
	}
	c, g := page["process_cpu_seconds_total"].GetMetric(), page["go_gc_duration_seconds"].GetMetric()
	if len(c) != 1 || c[0].GetCounter() == nil || len(g) != 1 || g[0].GetSummary() == nil {
		return 0, 0, fmt.Errorf("%s lacks process_cpu_seconds_total or go_gc_duration_seconds", metrics)
	}
	return c[0].GetCounter().GetValue(), float64(g[0].GetSummary().GetSampleCount()), nil
}

// fetchPage fetches and parses a /metrics page.
func fetchPage(ctx context.Context, metrics string) (map[string]*dto.MetricFamily, error) {
	body, err := getMetrics(ctx, metrics)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	page, err := parser.TextToMetricFamilies(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", metrics, err)
	}
	return page, nil
}

// getMetrics fetches a /metrics page; the caller closes it.
func getMetrics(ctx context.Context, metrics string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", metrics, resp.Status)
	}
	return resp.Body, nil
}

// selfCPU is the user+system CPU time of this process so far.
func selfCPU() time.Duration {
	d, _ := cpuTime(os.Getpid())
	return d
}

// selfUsage is this process's CPU time and completed GC cycles.
func selfUsage() usage {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return usage{cpu: selfCPU(), gc: int64(s[0].Value.Uint64())}
}

// cpuTime is the user+system CPU time used by pid so far.
func cpuTime(pid int) (time.Duration, bool) {
	if pid == os.Getpid() {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0, false
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime, stime are fields 14, 15
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const userHZ = 100 // USER_HZ, fixed at 100 on Linux
	return time.Duration(u+st) * time.Second / userHZ, true
}
