package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/bus/membus"
	"github.com/readmark/readmark/internal/dispatch"
)

// holdingDispatcher holds read-only requests until their context ends and
// writes until released.
type holdingDispatcher struct {
	started   chan string // a request's name, once it runs
	cancelled chan string // a read-only request's name, once its context ended
	release   chan struct{}
}

func (d *holdingDispatcher) Do(ctx context.Context, _ dispatch.Caller, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	d.started <- dispatch.RequestName(f)
	if pb.ReadOnly(f) {
		<-ctx.Done()
		d.cancelled <- dispatch.RequestName(f)
		return nil, ctx.Err()
	}
	<-d.release
	return &pb.ServerFrame{Body: &pb.ServerFrame_Ok{Ok: &pb.Empty{}}}, nil
}

func (d *holdingDispatcher) SessionEnded(dispatch.Caller) {}

// TestReadOnlyCancelledWithConnection: when a client's connection is gone,
// its read-only requests still running are cancelled (and counted as
// Cancelled), while its writes run to their end.
func TestReadOnlyCancelledWithConnection(t *testing.T) {
	d := &holdingDispatcher{started: make(chan string, 2), cancelled: make(chan string, 1), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	g := New(Config{
		Authenticate: func(string) (string, error) { return "u1", nil },
		Hub:          NewHub(membus.New(), HubConfig{}),
		Dispatcher:   d,
		Metrics:      NewMetrics(reg),
	})
	srv := httptest.NewServer(g)
	defer srv.Close()
	// shutdown waits for the session's end (cutting it after 10 s).
	shutdown := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return g.Shutdown(ctx)
	}
	released := false
	defer func() {
		if !released {
			close(d.release)
			_ = shutdown()
		}
	}()

	ctx := t.Context()
	conn, _, err := websocket.Dial(ctx, srv.URL, &websocket.DialOptions{Subprotocols: []string{SubprotocolProto}})
	if err != nil {
		t.Fatal(err)
	}
	logIn(t, conn, "u1")
	sendFrame(t, conn, &pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}})
	sendFrame(t, conn, &pb.ClientFrame{Id: 3, Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{}}})
	<-d.started
	<-d.started
	conn.CloseNow()

	select {
	case name := <-d.cancelled:
		if name != "sync" {
			t.Fatalf("cancelled %s", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read-only request of a closed connection was not cancelled")
	}
	released = true
	close(d.release)
	if err := shutdown(); err != nil {
		t.Fatal(err)
	}
	if n := requests(t, reg, "sync", "Cancelled"); n != 1 {
		t.Errorf("sync counted Cancelled %v times, want 1", n)
	}
	if n := requests(t, reg, "ack", "OK"); n != 1 {
		t.Errorf("ack counted OK %v times, want 1 (a write runs to its end)", n)
	}
}

// requests reads readmark_requests_total{type, code}.
func requests(t *testing.T, reg *prometheus.Registry, typ, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "readmark_requests_total" {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "type" && l.GetValue() != typ) || (l.GetName() == "code" && l.GetValue() != code) {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// onlineDispatcher holds requests until released and tells, for each,
// whether its user was still online (in the Hub) when it ended.
type onlineDispatcher struct {
	hub     *Hub
	started chan struct{}
	release chan struct{}
	online  chan bool
}

func (d *onlineDispatcher) Do(_ context.Context, c dispatch.Caller, _ *pb.ClientFrame) (*pb.ServerFrame, error) {
	d.started <- struct{}{}
	<-d.release
	d.online <- d.hub.Online(c.UserID)
	return &pb.ServerFrame{Body: &pb.ServerFrame_Ok{Ok: &pb.Empty{}}}, nil
}

func (d *onlineDispatcher) SessionEnded(dispatch.Caller) {}

// dialOnline serves a Gateway with an onlineDispatcher, metrics in reg, and
// dials it; the server stops with the test.
func dialOnline(t *testing.T, reg *prometheus.Registry) (*Gateway, *onlineDispatcher, *websocket.Conn) {
	t.Helper()
	hub := NewHub(membus.New(), HubConfig{})
	d := &onlineDispatcher{hub: hub, started: make(chan struct{}, 1), release: make(chan struct{}), online: make(chan bool, 1)}
	g := New(Config{
		Authenticate: func(string) (string, error) { return "u1", nil },
		Hub:          hub,
		Dispatcher:   d,
		Metrics:      NewMetrics(reg),
	})
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	conn, _, err := websocket.Dial(t.Context(), srv.URL, &websocket.DialOptions{Subprotocols: []string{SubprotocolProto}})
	if err != nil {
		t.Fatal(err)
	}
	return g, d, conn
}

// TestNoReplyAckEndsBeforeCloseAnswer: the server applies a no_reply ack
// before it reads the next frame, so a client that sends one and closes
// hears its close answered only once the ack has ended (the Go SDK's Close
// relies on it: the device's next login syncs after the ack), and the ack
// ends while the user still counts as online (offline users' cursors are
// evicted).
func TestNoReplyAckEndsBeforeCloseAnswer(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, d, conn := dialOnline(t, reg)
	sendFrame(t, conn, loginFrame("u1"))
	sendFrame(t, conn, &pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{NoReply: true}}})
	if resp := readFrame(t, conn); resp.GetLogin() == nil {
		t.Fatalf("login answered %v", resp)
	}
	<-d.started
	closed := make(chan error, 1)
	go func() { closed <- conn.Close(websocket.StatusNormalClosure, "") }()
	// A server reading on while the ack runs answers the close at once:
	// give it the time to, then let the ack end.
	select {
	case <-closed:
		t.Fatal("the close was answered while the no_reply ack still ran")
	case <-time.After(200 * time.Millisecond):
	}
	close(d.release)
	if !<-d.online {
		t.Error("the session left the Hub before its ack ended")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if n := requests(t, reg, "ack", "OK"); n != 1 {
		t.Errorf("ack counted OK %v times, want 1", n)
	}
}

// TestDrainAnswersLoginFirst: a login still running when the server starts
// shutting down is answered before the session is told to go (Kickoff), as
// a request in flight is: a client must not hear Kickoff before it is
// logged in.
func TestDrainAnswersLoginFirst(t *testing.T) {
	g, d, conn := dialOnline(t, prometheus.NewRegistry())
	ctx := t.Context()
	data, err := proto.Marshal(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		ProtocolVersion: 1, UserId: "u1", Token: "t", Sync: &pb.SyncRequest{},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Write(ctx, websocket.MessageBinary, data); err != nil {
		t.Fatal(err)
	}
	frames := make(chan *pb.ServerFrame, 2)
	go func() {
		defer close(frames)
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			f := &pb.ServerFrame{}
			if proto.Unmarshal(data, f) != nil {
				return
			}
			frames <- f
		}
	}()
	<-d.started // the login's first sync page is being built
	shutdown := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- g.Shutdown(sctx)
	}()
	for !g.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	// Nothing may come while the login runs. Waiting for something that
	// must not happen has no condition to wait on: a short wait gives a
	// wrong Kickoff the time to arrive.
	select {
	case f := <-frames:
		t.Fatalf("while the login ran, the client got %v", f)
	case <-time.After(100 * time.Millisecond):
	}
	close(d.release)
	<-d.online
	if f := <-frames; f.GetLogin() == nil {
		t.Fatalf("first frame %v, want the login response", f)
	}
	if f := <-frames; f.GetKickoff() == nil {
		t.Fatalf("second frame %v, want Kickoff", f)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
}

// TestSessionOutlivesHandler: a session runs on a goroutine of its own, so
// the HTTP handler returns once the WebSocket is upgraded (net/http lets
// go of the request and response it kept for it), and the session serves
// on until it is closed.
func TestSessionOutlivesHandler(t *testing.T) {
	hub := NewHub(membus.New(), HubConfig{})
	d := &onlineDispatcher{hub: hub, started: make(chan struct{}, 1), release: make(chan struct{}), online: make(chan bool, 1)}
	close(d.release)
	g := New(Config{
		Authenticate: func(string) (string, error) { return "u1", nil },
		Hub:          hub,
		Dispatcher:   d,
	})
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.ServeHTTP(w, r)
		returned <- struct{}{}
	}))
	defer srv.Close()
	ctx := t.Context()
	conn, _, err := websocket.Dial(ctx, srv.URL, &websocket.DialOptions{Subprotocols: []string{SubprotocolProto}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still runs after the upgrade")
	}
	logIn(t, conn, "u1")
	sendFrame(t, conn, &pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	if resp := readFrame(t, conn); resp.GetOk() == nil || resp.Id != 2 {
		t.Fatalf("request answered %v", resp)
	}
	if !<-d.online {
		t.Error("the session was not online while it served a request")
	}
	if err := conn.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
}

// TestIdleSessionOneGoroutine: a logged-in session with nothing to write
// holds one goroutine, its reader: its writer, started by a push, retires
// once it has waited through a sweep.
func TestIdleSessionOneGoroutine(t *testing.T) {
	const sessions = 20
	hub := NewHub(membus.New(), HubConfig{})
	d := &onlineDispatcher{hub: hub, started: make(chan struct{}, sessions), release: make(chan struct{}), online: make(chan bool, sessions)}
	close(d.release)
	g := New(Config{Authenticate: func(token string) (string, error) { return token, nil }, Hub: hub, Dispatcher: d})
	g.writerIdle = 10 * time.Millisecond
	srv := httptest.NewServer(g)
	defer srv.Close()
	ctx := t.Context()
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for i := range sessions {
		conn, _, err := websocket.Dial(ctx, srv.URL, &websocket.DialOptions{Subprotocols: []string{SubprotocolProto}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		logIn(t, conn, fmt.Sprintf("u%d", i))
	}
	for _, s := range g.all() {
		s.push(&push{bin: []byte{1}})
	}
	for _, c := range conns {
		if _, data, err := c.Read(ctx); err != nil || len(data) != 1 {
			t.Fatalf("read %q, %v; want the push", data, err)
		}
	}
	// Goroutines running a session's code; a worker that answered a login
	// may still be on its way back to the pool, a writer not yet retired.
	inSessions := func() int {
		buf := make([]byte, 1<<20)
		for runtime.Stack(buf, true) == len(buf) {
			buf = make([]byte, 2*len(buf))
		}
		buf = buf[:runtime.Stack(buf, true)]
		n := 0
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "internal/gateway.(*session).") {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := inSessions(); n != sessions; n = inSessions() {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle sessions run on %d goroutines, want %d", sessions, n, sessions)
		}
		runtime.Gosched()
	}
	for _, c := range conns {
		c.CloseNow()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
}

// loginFrame is the login request of user, whose token is its ID (as the
// tests' Authenticate funcs take it).
func loginFrame(user string) *pb.ClientFrame {
	return &pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{ProtocolVersion: 1, UserId: user, Token: user}}}
}

// logIn logs conn in as user and fails the test unless it is answered as a
// login.
func logIn(t *testing.T, conn *websocket.Conn, user string) {
	t.Helper()
	sendFrame(t, conn, loginFrame(user))
	if resp := readFrame(t, conn); resp.GetLogin() == nil {
		t.Fatalf("login answered %v", resp)
	}
}

// sendFrame writes f to the server.
func sendFrame(t *testing.T, conn *websocket.Conn, f *pb.ClientFrame) {
	t.Helper()
	data, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Write(t.Context(), websocket.MessageBinary, data); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads the server's next frame.
func readFrame(t *testing.T, conn *websocket.Conn) *pb.ServerFrame {
	t.Helper()
	_, data, err := conn.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f := &pb.ServerFrame{}
	if err := proto.Unmarshal(data, f); err != nil {
		t.Fatal(err)
	}
	return f
}
