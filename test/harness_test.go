// Package test holds Readmark's black-box integration tests: each starts a
// real server on 127.0.0.1:0 and drives it through the public im SDK and
// admin API, as an app would.
package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/usersig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a running server and how to reach it.
type testServer struct {
	t         testing.TB
	dir       string
	addr      string
	heartbeat time.Duration
	rateLimit float64 // requests/s per user, with an equal burst (0 = server default)
	adminRate float64 // requests/s per admin token, with an equal burst (0 = server default)
	webhooks  server.WebhookConfig
	// openStore and openBus, if set, replace the embedded backends.
	openStore func(context.Context) (storage.Store, error)
	openBus   func(context.Context) (bus.Bus, error)
	devTokens bool
	// tweak, if set, adjusts the server's configuration (limits).
	tweak func(*server.Config)
	srv   *server.Server
}

// startServer starts a server on a fresh data directory.
func startServer(t testing.TB) *testServer {
	t.Helper()
	return startServerWith(t, 0)
}

// startServerWith starts a server that asks clients for the given heartbeat.
func startServerWith(t testing.TB, heartbeat time.Duration) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", heartbeat: heartbeat}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

// startServerTweaked starts a server whose configuration tweak adjusts.
func startServerTweaked(t testing.TB, tweak func(*server.Config)) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", tweak: tweak}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	cfg := server.Config{
		Listen: ts.addr, DataDir: ts.dir, Heartbeat: ts.heartbeat,
		OpenStore: ts.openStore, OpenBus: ts.openBus,
		RateLimit: ts.rateLimit, RateBurst: int(ts.rateLimit), DevTokens: ts.devTokens,
		AdminRateLimit: ts.adminRate, AdminRateBurst: int(ts.adminRate), Webhooks: ts.webhooks,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if ts.tweak != nil {
		ts.tweak(&cfg)
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		ts.t.Fatalf("starting server: %v", err)
	}
	ts.srv = srv
	ts.addr = srv.Addr() // a restart reuses the port
}

func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("shutdown: %v", err)
	}
	ts.srv = nil
}

// restart stops the server and starts it again on the same data and port.
func (ts *testServer) restart() {
	ts.t.Helper()
	ts.stop()
	ts.start()
}

func (ts *testServer) url() string { return "ws://" + ts.addr }

func (ts *testServer) token(user string) string {
	ts.t.Helper()
	tok, err := usersig.Gen(ts.srv.Secret(), user, time.Hour)
	if err != nil {
		ts.t.Fatal(err)
	}
	return tok
}

// dial logs user in with a recorder listener attached.
func (ts *testServer) dial(user string, opts ...im.Option) (*im.Client, *recorder) {
	ts.t.Helper()
	rec := newRecorder()
	opts = append([]im.Option{im.WithListener(rec), im.WithBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := im.Dial(ctxT(ts.t), ts.url(), user, ts.token(user), opts...)
	if err != nil {
		ts.t.Fatalf("dial %s: %v", user, err)
	}
	ts.t.Cleanup(func() { c.Close() })
	return c, rec
}

// adminDo calls the admin API with the admin user's token (or tok if set).
func (ts *testServer) adminDo(method, path, body, tok string) (int, string) {
	ts.t.Helper()
	status, out, _ := ts.restRaw(ts.t, method, path, []byte(body), tok)
	return status, string(out)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recorder is a listener that keeps everything it is told.
type recorder struct {
	im.BaseAdvancedMsgListener
	mu       sync.Mutex
	msgs     []*im.Message
	receipts []*im.MessageReceipt
	c2cRead  []*im.MessageReceipt
	self     []*im.Message
	events   []*im.GroupEvent
	changed  chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) note() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) OnRecvNewMessage(m *im.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.note()
}

func (r *recorder) OnRecvMessageReadReceipts(rs []*im.MessageReceipt) {
	r.mu.Lock()
	r.receipts = append(r.receipts, rs...)
	r.mu.Unlock()
	r.note()
}

func (r *recorder) OnRecvC2CReadReceipt(rs []*im.MessageReceipt) {
	r.mu.Lock()
	r.c2cRead = append(r.c2cRead, rs...)
	r.mu.Unlock()
	r.note()
}

func (r *recorder) OnRecvSelfReadReceipts(ms []*im.Message) {
	r.mu.Lock()
	r.self = append(r.self, ms...)
	r.mu.Unlock()
	r.note()
}

func (r *recorder) OnGroupEvent(ev *im.GroupEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.note()
}

// read copies one of r's lists under its lock.
func read[T any](r *recorder, list *[]T) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), (*list)...)
}

func (r *recorder) messages() []*im.Message             { return read(r, &r.msgs) }
func (r *recorder) receiptPushes() []*im.MessageReceipt { return read(r, &r.receipts) }
func (r *recorder) c2cReads() []*im.MessageReceipt      { return read(r, &r.c2cRead) }
func (r *recorder) selfReceipts() []*im.Message         { return read(r, &r.self) }
func (r *recorder) groupEvents() []*im.GroupEvent       { return read(r, &r.events) }

// texts returns the texts of the received messages, in order.
func (r *recorder) texts() []string {
	var out []string
	for _, m := range r.messages() {
		out = append(out, m.Text)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitForMsg is waitFor that, on timeout, reports what r received.
func waitForMsg(t *testing.T, what string, r *recorder, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			var got []string
			for _, m := range r.messages() {
				got = append(got, fmt.Sprintf("%s#%d", m.GroupID+m.UserID, m.Seq))
			}
			t.Fatalf("timed out waiting for %s; received %d: %v", what, len(got), got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantCode checks that err is an *im.Error with the given code.
func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var e *im.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want *im.Error with code %d", err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %d (%s), want %d", e.Code, e.Desc, code)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func send(t *testing.T, c *im.Client, text, receiver, group string, receipt bool) *im.Message {
	t.Helper()
	m := c.CreateTextMessage(text)
	m.NeedReadReceipt = receipt
	out, err := c.SendMessage(ctxT(t), m, receiver, group, im.PriorityNormal, false)
	if err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return out
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
