package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/server"
)

// TestFaninExact runs the fanin scenario against an embedded server and
// checks that the read counts end exact. Correctness only: no timing.
func TestFaninExact(t *testing.T) {
	for _, batch := range []string{"5", "1"} {
		t.Run("batch"+batch, func(t *testing.T) {
			cfg, err := parseFlags([]string{"--scenario", "fanin", "--members", "500", "--messages", "5",
				"--batch", batch, "--conns", "200", "--quiet"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := execute(ctx, cfg, io.Discard)
			var out strings.Builder
			res.writeTable(&out)
			if !res.OK {
				t.Fatalf("run failed: %s\n%s", res.Error, out.String())
			}
			want := map[string]float64{
				"receipts_acked": 500 * 5,
				"verified_exact": 1,
			}
			if res.Values["server_and_clients_cpu_us_per_member"] <= 0 {
				t.Errorf("no CPU per member reported")
			}
			for name, v := range want {
				if got := res.Values[name]; got != v {
					t.Errorf("%s = %v, want %v\n%s", name, got, v, out.String())
				}
			}
			if res.Values["push_final_s"] <= 0 {
				t.Errorf("the sender's pushed counts never reached 500 for every message\n%s", out.String())
			}
			wantServerLatency(t, res)
		})
	}
}

// runBench runs the scenario of args and fails the test if it fails.
func runBench(t *testing.T, args ...string) *Result {
	t.Helper()
	cfg, err := parseFlags(append(args, "--quiet"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := execute(ctx, cfg, io.Discard)
	if !res.OK {
		var out strings.Builder
		res.writeTable(&out)
		t.Fatalf("run failed: %s\n%s", res.Error, out.String())
	}
	return res
}

// wantMetrics checks that every metric of want is reported, and that the
// ones with a positive wanted value have exactly it.
func wantMetrics(t *testing.T, res *Result, want map[string]float64) {
	t.Helper()
	var out strings.Builder
	res.writeTable(&out)
	for name, v := range want {
		got, ok := res.Values[name]
		if !ok || (v > 0 && got != v) {
			t.Errorf("%s = %v (reported: %v), want %v\n%s", name, got, ok, v, out.String())
		}
	}
}

// TestChurnEmbedded: churn logs every member in against the embedded server
// and reports the process's CPU per member under a name saying it includes
// the clients.
func TestChurnEmbedded(t *testing.T) {
	res := runBench(t, "--scenario", "churn", "--members", "50", "--conns", "10")
	wantMetrics(t, res, map[string]float64{"members_done": 50, "server_and_clients_cpu_us_per_member": 0})
	cfg, err := parseFlags([]string{"--scenario", "churn", "--members", "5", "--requests", "2", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res := execute(context.Background(), cfg, io.Discard); res.OK || !strings.Contains(res.Error, "--requests") {
		t.Errorf("--requests 2 against Readmark: OK %v, error %q; want it refused", res.OK, res.Error)
	}
	if res.Values["server_and_clients_cpu_us_per_member"] <= 0 {
		t.Errorf("no CPU measured: %v", res.Values)
	}
	if _, ok := res.Values["server_cpu_us_per_member"]; ok {
		t.Error("embedded run claims a server-only CPU figure")
	}
}

// TestChurnEcho: churn against an echo server (as --scenario echo-server
// serves it) has each member's --requests echoed, reads the server's CPU
// from its /metrics and reports the load tool's apart.
func TestChurnEcho(t *testing.T) {
	e, err := startEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	res := runBench(t, "--scenario", "churn", "--members", "50", "--conns", "10", "--requests", "3", "--url", e.url)
	wantMetrics(t, res, map[string]float64{
		"members_done": 50, "server_cpu_us_per_member": 0, "load_tool_cpu_us_per_member": 0, "cpu_cores": 0, "gc_cycles": 0,
	})
	if n := e.conns.Load(); n != 50 {
		t.Errorf("echo server accepted %d connections, want 50", n)
	}
	if n := e.frames.Load(); n != 150 {
		t.Errorf("echo server read %d frames, want 3 from each of 50 members", n)
	}
}

// TestSteadyEcho: steady-echo against an echo server in another "process"
// (reached only by --url) gets every message to every member of its room
// and every receipt echoed, and reads the server's CPU from its /metrics;
// in-process it reports the CPU of server and clients together.
func TestSteadyEcho(t *testing.T) {
	e, err := startEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	// 20 messages (1 s at one per 50 ms), each read by 25 members.
	args := []string{"--scenario", "steady-echo", "--groups", "2", "--members", "25", "--rate", "500", "--duration", "1s", "--read-spread", "100ms"}
	res := runBench(t, append(args, "--url", e.url)...)
	wantMetrics(t, res, map[string]float64{
		"messages_sent": 20, "deliveries": 500, "receipts_acked_total": 500, "kept_up_ratio": 0,
		"server_cpu_us_per_pair": 0, "load_tool_cpu_us_per_pair": 0,
	})
	if n := e.conns.Load(); n != 2*26 {
		t.Errorf("echo server accepted %d connections, want %d", n, 2*26)
	}
	res = runBench(t, args...)
	wantMetrics(t, res, map[string]float64{"receipts_acked_total": 500, "server_and_clients_cpu_us_per_pair": 0})
}

// TestRemoteServerCPU: against a separate Readmark server (here started in
// the test, reached only by --url), the per-operation CPU is the server's,
// read from its /metrics.
func TestRemoteServerCPU(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.Start(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	secret := filepath.Join(dir, "secret-copy")
	if err := os.WriteFile(secret, srv.Secret(), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runBench(t, "--scenario", "churn", "--members", "50", "--conns", "10", "--url", srv.URL(), "--secret-file", secret)
	wantMetrics(t, res, map[string]float64{"members_done": 50, "server_cpu_us_per_member": 0, "load_tool_cpu_us_per_member": 0, "gc_cycles": 0})
	res = runBench(t, "--scenario", "fanin", "--members", "20", "--messages", "2", "--url", srv.URL(), "--secret-file", secret)
	wantMetrics(t, res, map[string]float64{"verified_exact": 1, "server_cpu_us_per_member": 0, "server_cpu_us_per_receipt": 0})
	wantServerLatency(t, res)
}

// wantServerLatency checks a fanin's server-side figures: the server timed
// at least every acknowledged receipt call (retries add to its count), and
// committed them.
func wantServerLatency(t *testing.T, res *Result) {
	t.Helper()
	v := res.Values
	if v["server_receipt_call_count"] < v["receipt_calls"] || v["receipt_calls"] == 0 ||
		v["server_receipt_call_p50_ms"] <= 0 || v["server_receipt_call_p99_9_ms"] < v["server_receipt_call_p50_ms"] ||
		v["server_group_commit_count"] == 0 || v["server_group_commit_p99_ms"] <= 0 {
		var out strings.Builder
		res.writeTable(&out)
		t.Errorf("server-side latencies missing or wrong:\n%s", out.String())
	}
}

// BenchmarkForEach: items that need a deep stack, as a member session does.
// Workers keep their grown stacks from item to item.
func BenchmarkForEach(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := forEach(context.Background(), 1000, 100, func(context.Context, int) error {
			deepStack(64)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// deepStack uses about n KiB of stack.
//
//go:noinline
func deepStack(n int) byte {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deepStack(n-1) + pad[n%len(pad)]
}
