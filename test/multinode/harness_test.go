// Package multinode holds Readmark's multi-process cluster tests: real
// readmarkd processes (built once per run) on loopback, sharing the
// machine's PostgreSQL and NATS under a table and a cluster name of their
// own, driven through the public SDK; nodes are killed (SIGKILL), paused
// (SIGSTOP) and restarted (SIGTERM). Every process is bounded by the test
// and killed at its end.
package multinode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/testenv"
	"github.com/readmark/readmark/usersig"
)

// binary is readmarkd, built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "readmark-multinode")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "readmarkd")
	// Without -race: the processes are the system under test, the race
	// detector runs on the unit and in-process tests.
	build := exec.Command("go", "build", "-o", binary, "../../cmd/readmarkd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building readmarkd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// testCluster is a set of nodes sharing one database table and one cluster
// name.
type testCluster struct {
	t      *testing.T
	name   string
	table  string
	secret []byte
	dir    string
	nodes  []*node
	// hold: every node gets a file of its own for the commit hold of
	// TestPausedNodeIsFenced (holdCommit).
	hold bool
}

// node is one readmarkd process (restartable on the same port and ID).
type node struct {
	c    *testCluster
	id   string
	addr string // host:port once started
	cmd  *exec.Cmd
	out  *syncBuffer // stderr (the log), kept for failures
	done chan struct{}
	err  error // Wait's, after done
}

// newCluster starts n nodes and waits until they share the partitions.
func newCluster(t *testing.T, n int, opts ...func(*testCluster)) *testCluster {
	t.Helper()
	testenv.NeedPostgres(t)
	testenv.NeedNATS(t)
	table := testenv.TempTable(t)
	c := &testCluster{t: t, name: "mn" + table[len("rmtest_"):], table: table,
		secret: []byte("multinode-test-secret"), dir: t.TempDir()}
	for _, o := range opts {
		o(c)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "secret"), c.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		nd := &node{c: c, id: fmt.Sprintf("n%d", i), addr: "127.0.0.1:0"}
		c.nodes = append(c.nodes, nd)
		nd.start()
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.kill()
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				t.Logf("--- log of %s:\n%s", nd.id, nd.out.tail(4000))
			}
		}
	})
	c.waitBalanced()
	return c
}

func (nd *node) start() {
	t := nd.c.t
	t.Helper()
	data := filepath.Join(nd.c.dir, nd.id)
	cmd := exec.Command(binary, "--listen", nd.addr, "--data", data,
		"--secret-file", filepath.Join(nd.c.dir, "secret"),
		"--postgres", testenv.PostgresDSN(), "--postgres-table", nd.c.table,
		"--nats", testenv.NATSURL(), "--cluster", nd.c.name, "--node-id", nd.id,
		"--log-level", "info", "--shutdown-timeout", "30s")
	if nd.c.hold {
		cmd.Env = append(os.Environ(), "READMARK_TEST_HOLD_COMMIT="+nd.holdFile())
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if nd.out == nil {
		nd.out = &syncBuffer{}
	}
	cmd.Stderr = nd.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nd.cmd, nd.done = cmd, make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addr <- a
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		nd.err = cmd.Wait()
		close(nd.done)
	}()
	select {
	case a := <-addr:
		nd.addr = a
	case <-nd.done:
		t.Fatalf("%s exited at start: %v\n%s", nd.id, nd.err, nd.out.tail(4000))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its address\n%s", nd.id, nd.out.tail(4000))
	}
}

// kill ends the process at once (SIGKILL: no drain, leases left to expire).
func (nd *node) kill() {
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = nd.cmd.Process.Kill()
	<-nd.done
	nd.cmd = nil
}

// stop ends the process gracefully (SIGTERM: drain, then exit) and checks
// it exited cleanly.
func (nd *node) stop() {
	t := nd.c.t
	t.Helper()
	if err := nd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-nd.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit after SIGTERM", nd.id)
	}
	nd.cmd = nil
	if nd.err != nil {
		t.Fatalf("%s exited with %v\n%s", nd.id, nd.err, nd.out.tail(4000))
	}
}

func (nd *node) signal(sig syscall.Signal) {
	if err := nd.cmd.Process.Signal(sig); err != nil {
		nd.c.t.Fatal(err)
	}
}

func (nd *node) url() string { return "ws://" + nd.addr }

// holdCommits makes the nodes hold commits on request (holdCommit).
func holdCommits(c *testCluster) { c.hold = true }

func (nd *node) holdFile() string { return filepath.Join(nd.c.dir, nd.id+".hold") }

// holdCommit makes nd hold its next commit that writes partition p, after
// reading its lease epochs and before applying it (READMARK_TEST_HOLD_COMMIT,
// see internal/server), until release is called. The cluster needs the
// holdCommits option.
func (nd *node) holdCommit(p uint32) (release func()) {
	t := nd.c.t
	t.Helper()
	if err := os.WriteFile(nd.holdFile(), []byte(strconv.FormatUint(uint64(p), 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(nd.holdFile()); err != nil {
			t.Fatal(err)
		}
	}
}

// logged reports whether nd's log has a line containing s.
func (nd *node) logged(s string) bool { return nd.out.contains(s) }

// health is a node's /healthz body.
type health struct {
	Status          string `json:"status"`
	NodeID          string `json:"node_id"`
	PartitionsOwned int    `json:"partitions_owned"`
}

// health asks the node (nil if it does not answer healthy).
func (nd *node) health() *health {
	if nd.cmd == nil {
		return nil
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + nd.addr + "/healthz")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var h health
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil {
		return nil
	}
	return &h
}

// metric reads one sample (summed over labels) of the node's /metrics.
func (nd *node) metric(name string) float64 {
	resp, err := http.Get("http://" + nd.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// owner is the node whose lease on partition p is current.
func (c *testCluster) owner(p uint32) *node {
	c.t.Helper()
	ctx := ctxT(c.t)
	conn, err := pgx.Connect(ctx, testenv.PostgresDSN())
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var id string
	if err := conn.QueryRow(ctx, "SELECT owner FROM "+pgx.Identifier{c.table + "_leases"}.Sanitize()+
		" WHERE part = $1 AND expires > now()", int32(p)).Scan(&id); err != nil {
		c.t.Fatalf("owner of partition %d: %v", p, err)
	}
	for _, nd := range c.nodes {
		if nd.id == id {
			return nd
		}
	}
	c.t.Fatalf("partition %d owned by unknown node %q", p, id)
	return nil
}

// live are the nodes running.
func (c *testCluster) live() []*node {
	var ns []*node
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			ns = append(ns, nd)
		}
	}
	return ns
}

// owned is the partitions owned by the running nodes together, and the
// most one owns; ok=false if one did not answer.
func (c *testCluster) owned(nodes []*node) (total, most int, ok bool) {
	for _, nd := range nodes {
		h := nd.health()
		if h == nil {
			return 0, 0, false
		}
		total += h.PartitionsOwned
		most = max(most, h.PartitionsOwned)
	}
	return total, most, true
}

// waitBalanced waits until the running nodes own every partition, each its
// fair share.
func (c *testCluster) waitBalanced() {
	c.t.Helper()
	live := c.live()
	share := (cluster.Partitions + len(live) - 1) / len(live)
	waitFor(c.t, 60*time.Second, "partitions spread over the nodes", func() bool {
		total, most, ok := c.owned(live)
		return ok && total == cluster.Partitions && most <= share
	})
}

func (c *testCluster) token(user string) string {
	tok, err := usersig.Gen(c.secret, user, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// urls is every node's URL, comma-separated, nd's first: the SDK starts at
// a random one and fails over to the others.
func (c *testCluster) urls(nd *node) string {
	us := []string{nd.url()}
	for _, o := range c.nodes {
		if o != nd {
			us = append(us, o.url())
		}
	}
	return strings.Join(us, ",")
}

// dial logs user in on the cluster (any node, failing over to the others),
// with a recorder.
func (c *testCluster) dial(nd *node, user string) (*im.Client, *recorder) {
	c.t.Helper()
	return c.dialURLs(c.urls(nd), user)
}

// dialOnly logs user in on nd alone: the client reconnects only there.
func (c *testCluster) dialOnly(nd *node, user string) *im.Client {
	c.t.Helper()
	cl, _ := c.dialURLs(nd.url(), user)
	return cl
}

func (c *testCluster) dialURLs(urls, user string) (*im.Client, *recorder) {
	c.t.Helper()
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := im.Dial(ctx, urls, user, c.token(user), im.WithListener(rec),
		im.WithBackoff(20*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		c.t.Fatalf("dial %s at %s: %v", user, urls, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl, rec
}

// waitFor polls cond every 20 ms until it holds, failing t after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Contains(s.b.Bytes(), []byte(sub))
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	return string(b[max(0, len(b)-n):])
}

// recorder keeps what an SDK client is pushed.
type recorder struct {
	im.BaseAdvancedMsgListener
	mu       sync.Mutex
	msgs     []*im.Message
	receipts []*im.MessageReceipt
	c2c      []*im.MessageReceipt
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) OnRecvNewMessage(m *im.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

func (r *recorder) OnRecvMessageReadReceipts(rs []*im.MessageReceipt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts = append(r.receipts, rs...)
}

func (r *recorder) OnRecvC2CReadReceipt(rs []*im.MessageReceipt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c2c = append(r.c2c, rs...)
}

func (r *recorder) messages() []*im.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*im.Message(nil), r.msgs...)
}

// lastReceipt is the newest pushed receipt of msgID (nil if none).
func (r *recorder) lastReceipt(msgID string) *im.MessageReceipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.receipts) - 1; i >= 0; i-- {
		if r.receipts[i].MsgID == msgID {
			return r.receipts[i]
		}
	}
	return nil
}

func (r *recorder) c2cReceipts() []*im.MessageReceipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*im.MessageReceipt(nil), r.c2c...)
}
