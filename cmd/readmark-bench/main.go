// Command readmark-bench is the load tool of Readmark. It drives a server
// over real WebSocket connections with the im SDK, as real users would:
// every simulated user logs in with its own token (usersig) on its own
// connection and sends its own read receipts.
//
// By default it starts an embedded server in this process (temporary data
// directory, removed afterwards); --url ws://HOST:PORT with --secret-file
// FILE targets a running readmarkd instead (loopback addresses only are
// intended; add --server-pid PID to measure its RSS and CPU). With several
// comma-separated URLs (the nodes of a cluster) the simulated users are
// spread over the nodes round-robin, so senders, readers and the pushes
// between them cross nodes; --server-pid then measures one node.
//
// Usage:
//
//	go run ./cmd/readmark-bench --scenario fanin --members 10000 --messages 20 --batch 20
//	go run ./cmd/readmark-bench --scenario steady --groups 10 --members 1000 --rate 10000 --duration 20s
//	go run ./cmd/readmark-bench --scenario query --members 100000
//	go run ./cmd/readmark-bench --scenario baseline --conns 64 --duration 10s
//	go run ./cmd/readmark-bench --scenario echo-server --listen 127.0.0.1:7799 &
//	go run ./cmd/readmark-bench --scenario churn --members 20000 --url ws://127.0.0.1:7799
//	go run ./cmd/readmark-bench --scenario steady-echo --groups 5 --members 1000 --rate 5000 --duration 15s --url ws://127.0.0.1:7799
//
// Scenarios:
//
//	fanin     one Work group of --members readers; the sender sends --messages
//	          messages with NeedReadReceipt; then every member comes online (at
//	          most --conns at once), reads all messages in calls of --batch, waits
//	          for the acks and leaves. Reports acknowledged receipts/s, the time
//	          until the sender's pushed counts are final, push counts, receipt->push
//	          latency, RSS and on-disk bytes per receipt, and checks with
//	          GetMessageReadReceipts that every count is exact (exit 1 if not).
//	steady    --groups groups of --members members, all online; messages are sent
//	          at --rate/members per second so that receipts arrive at --rate/s for
//	          --duration; reports send->deliver and receipt->push latency, CPU use,
//	          and whether the server kept up.
//	query     one group of --members (default 100,000) with a message read by half
//	          of them; latency of GetGroupMessageReadMemberList pages and of
//	          GetMessageReadReceipts for 100 messages.
//	baseline  a bare WebSocket echo server and pipelining client (64-byte frames
//	          over --conns connections): the frames/s ceiling of this machine. Pass
//	          the number as --baseline-fps to the other scenarios to see their
//	          throughput as a fraction of it.
//	churn     --members bare WebSocket connections (at most --conns at once),
//	          each: connect, upgrade, one request and its answer, close. The
//	          request is a login against Readmark, a 64-byte frame against an
//	          echo server (--url without --secret-file; --requests of them one
//	          after another): members/s and CPU per member are the floor under
//	          fanin's member sessions.
//	steady-echo  steady's frames without Readmark: --groups rooms of an echo
//	          server (in this process, or --url of an echo-server without
//	          --secret-file), each with a sender and --members members; the
//	          sender's messages go to its whole room, each member answers each
//	          message with a receipt frame when steady's member would read it,
//	          and the server echoes it. Its server CPU per pair is the floor
//	          under steady's with the same --groups, --members and --rate.
//	echo-server  serves a bare echo server on --listen until interrupted, with
//	          its CPU time on /metrics, so churn and steady-echo can run
//	          against it from another process and measure its CPU alone.
//
// Every scenario reports CPU per operation in µs. Embedded, the server and
// the simulated clients share this process, and the metric says so
// (server_and_clients_cpu_us_per_*); against a separate server
// server_cpu_us_per_* is the server's alone (the delta of
// process_cpu_seconds_total on its /metrics, summed over the nodes; or
// /proc of --server-pid) and load_tool_cpu_us_per_* is this process's.
//
// Progress goes to stderr every second; the result is a table on stdout, or
// JSON with --json. --timeout stops a run (partial results are printed, exit
// status 1). --cpuprofile and --memprofile write pprof profiles of the whole
// process (server and clients when embedded).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

type config struct {
	scenario    string
	members     int
	messages    int
	conns       int
	batch       int
	groups      int
	duration    time.Duration
	rate        float64
	readSpread  time.Duration
	url         string
	secretFile  string
	serverPID   int
	jsonOut     bool
	cpuprofile  string
	memprofile  string
	timeout     time.Duration
	baselineFPS float64
	quiet       bool
	listen      string
	requests    int
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("readmark-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.scenario, "scenario", "fanin", "fanin, steady, steady-echo, query, baseline, churn or echo-server")
	fs.IntVar(&cfg.members, "members", 0, "group members besides the sender (default: fanin 1000, steady 1000, query 100000)")
	fs.IntVar(&cfg.messages, "messages", 20, "fanin: messages the sender sends")
	fs.IntVar(&cfg.conns, "conns", 0, "max concurrent client connections (steady: concurrent logins; steady-echo: concurrent connects; baseline: connections) (default 2000; baseline 64)")
	fs.IntVar(&cfg.batch, "batch", 20, "messages per SendMessageReadReceipts call (server max 100)")
	fs.IntVar(&cfg.groups, "groups", 10, "steady: number of groups")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "steady, steady-echo, baseline: how long to offer load")
	fs.Float64Var(&cfg.rate, "rate", 10000, "steady, steady-echo: offered receipts/s")
	fs.DurationVar(&cfg.readSpread, "read-spread", time.Second, "steady: each member reads a message a random (fixed per member) delay in [0, read-spread) after it was sent")
	fs.StringVar(&cfg.url, "url", "", "target a running server (ws://HOST:PORT) instead of an embedded one; several comma-separated URLs (cluster nodes): users are spread over them round-robin")
	fs.StringVar(&cfg.secretFile, "secret-file", "", "with --url: the server's secret file")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "with --url: read RSS and CPU of this process")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of this process to FILE")
	fs.StringVar(&cfg.memprofile, "memprofile", "", "write a heap profile of this process to FILE at the end")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "hard stop")
	fs.Float64Var(&cfg.baselineFPS, "baseline-fps", 0, "frames/s measured by the baseline scenario, to report throughput relative to it")
	fs.BoolVar(&cfg.quiet, "quiet", false, "no progress on stderr")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:7799", "echo-server: address to serve on")
	fs.IntVar(&cfg.requests, "requests", 1, "churn against an echo server: frames each member has echoed, one after another")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.members == 0 {
		cfg.members = 1000
		if cfg.scenario == "query" {
			cfg.members = 100_000
		}
	}
	if cfg.conns == 0 {
		cfg.conns = 2000
		if cfg.scenario == "baseline" {
			cfg.conns = 64
		}
	}
	switch {
	case cfg.members < 1 || cfg.messages < 1 || cfg.conns < 1 || cfg.groups < 1 || cfg.requests < 1:
		return nil, errors.New("--members, --messages, --conns, --groups and --requests must be positive")
	case cfg.batch < 1 || cfg.batch > 100:
		return nil, errors.New("--batch must be in 1..100")
	case cfg.rate <= 0 || cfg.duration <= 0 || cfg.timeout <= 0:
		return nil, errors.New("--rate, --duration and --timeout must be positive")
	case cfg.url != "" && cfg.secretFile == "" && cfg.scenario != "churn" && cfg.scenario != "steady-echo":
		return nil, errors.New("--url needs --secret-file (only churn and steady-echo run against an echo server without one)")
	case cfg.scenario == "steady-echo" && cfg.secretFile != "":
		return nil, errors.New("steady-echo runs against an echo server (--scenario echo-server), which needs no --secret-file")
	}
	return cfg, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "readmark-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "readmark-bench:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "readmark-bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	logw := stderr
	if cfg.quiet {
		logw = io.Discard
	}
	res := execute(ctx, cfg, logw)
	if cfg.memprofile != "" {
		if err := writeHeapProfile(cfg.memprofile); err != nil {
			fmt.Fprintln(stderr, "readmark-bench:", err)
		}
	}
	if cfg.jsonOut {
		res.writeJSON(stdout)
	} else {
		res.writeTable(stdout)
	}
	if !res.OK {
		return 1
	}
	return 0
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	return errors.Join(pprof.WriteHeapProfile(f), f.Close())
}

// execute runs the scenario of cfg and always returns a result; OK is false
// (and Error set) if the run failed, was cut short or found wrong counts.
func execute(ctx context.Context, cfg *config, logw io.Writer) *Result {
	res := newResult(cfg.scenario)
	res.param("load_avg_at_start", loadAvg())
	defer func() { res.param("load_avg_at_end", loadAvg()) }()
	prog := newProgress(logw)
	defer prog.close()
	var err error
	switch cfg.scenario {
	case "baseline":
		res.Target = "in-process echo server"
		err = runBaseline(ctx, cfg, res, prog)
	case "echo-server":
		err = runEchoServer(ctx, cfg, res, logw)
	case "steady-echo":
		if cfg.url == "" {
			res.Target = "in-process echo server"
			err = runSteadyEcho(ctx, cfg, nil, res, prog)
			break
		}
		fallthrough
	default:
		var t *target
		t, err = startTarget(ctx, cfg, logw)
		if err == nil {
			res.Target = t.name()
			switch cfg.scenario {
			case "fanin":
				err = runFanin(ctx, cfg, t, res, prog)
			case "steady":
				err = runSteady(ctx, cfg, t, res, prog)
			case "query":
				err = runQuery(ctx, cfg, t, res, prog)
			case "churn":
				err = runChurn(ctx, cfg, t, res, prog)
			case "steady-echo":
				err = runSteadyEcho(ctx, cfg, t, res, prog)
			default:
				err = fmt.Errorf("unknown scenario %q", cfg.scenario)
			}
			if n := t.retry.Load(); n > 0 {
				res.metric("retries", float64(n), "", "dials or calls retried after a transient error")
			}
			if cerr := t.close(); cerr != nil && err == nil {
				err = fmt.Errorf("server shutdown: %w", cerr)
			}
		}
	}
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
		if ctx.Err() != nil {
			res.Error = fmt.Sprintf("stopped in phase %q: %v", prog.phaseName(), err)
		}
	}
	return res
}

// loadAvg is the machine's 1-minute load average and core count: other
// work on the machine skews every number.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if err != nil || len(f) == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%s (%d cores)", f[0], runtime.NumCPU())
}

// relative reports a throughput as a fraction of the baseline frames/s.
func relative(cfg *config, r *Result, name string, v float64, what string) {
	if cfg.baselineFPS > 0 {
		r.metric(name+"_of_baseline", v/cfg.baselineFPS, "ratio", what+" / baseline frames/s ("+num(cfg.baselineFPS)+")")
	}
}
