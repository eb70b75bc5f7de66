package test

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/im"
)

// rawConn is a hand-driven protocol client, for what the SDK never sends.
type rawConn struct {
	t    *testing.T
	c    *websocket.Conn
	json bool // readmark.v1.json: text frames in protojson
}

func rawDial(t *testing.T, ts *testServer, subprotocol string) *rawConn {
	t.Helper()
	c, _, err := websocket.Dial(ctxT(t), ts.url()+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &rawConn{t: t, c: c, json: subprotocol == "readmark.v1.json"}
}

func (r *rawConn) writeRaw(data []byte) {
	r.t.Helper()
	typ := websocket.MessageBinary
	if r.json {
		typ = websocket.MessageText
	}
	if err := r.c.Write(ctxT(r.t), typ, data); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) write(f *pb.ClientFrame) {
	r.t.Helper()
	marshal := proto.Marshal
	if r.json {
		marshal = protojson.Marshal
	}
	data, err := marshal(f)
	if err != nil {
		r.t.Fatal(err)
	}
	r.writeRaw(data)
}

// readResponse returns the next non-push frame.
func (r *rawConn) readResponse() *pb.ServerFrame {
	r.t.Helper()
	for {
		_, data, err := r.c.Read(ctxT(r.t))
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		f := &pb.ServerFrame{}
		unmarshal := proto.Unmarshal
		if r.json {
			unmarshal = protojson.Unmarshal
		}
		if err := unmarshal(data, f); err != nil {
			r.t.Fatal(err)
		}
		if f.Id != 0 || f.Error != nil {
			return f
		}
	}
}

func (r *rawConn) login(ts *testServer, user string) {
	r.t.Helper()
	r.write(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		ProtocolVersion: 1, UserId: user, Token: ts.token(user),
	}}})
	if f := r.readResponse(); f.GetLogin() == nil {
		r.t.Fatalf("login: %v", f)
	}
}

func TestBadFramesFailAlone(t *testing.T) {
	ts := startServer(t)
	r := rawDial(t, ts, "readmark.v1.proto")
	r.login(ts, "alice")
	ping := func(id uint64) {
		t.Helper()
		r.write(&pb.ClientFrame{Id: id, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
		if f := r.readResponse(); f.Id != id || f.GetPing() == nil {
			t.Fatalf("ping %d: %v", id, f)
		}
	}
	tests := []struct {
		name  string
		frame []byte
		code  int32
	}{
		{"undecodable", []byte{0xff, 0xff, 0xff}, pb.CodeProtocol},
		{"no body", mustMarshal(t, &pb.ClientFrame{Id: 7}), pb.CodeProtocol},
		{"zero id", mustMarshal(t, &pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}}), pb.CodeProtocol},
		{"second login", mustMarshal(t, &pb.ClientFrame{Id: 8, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{}}}), pb.CodeProtocol},
		{"bad group type", mustMarshal(t, &pb.ClientFrame{Id: 9, Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{Type: 99}}}), pb.CodeInvalidArgument},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.writeRaw(tt.frame)
			f := r.readResponse()
			if f.Error == nil || f.Error.Code != tt.code {
				t.Fatalf("got %v, want error %d", f, tt.code)
			}
			ping(uint64(100 + i)) // the connection is still up
		})
	}
}

func TestOversizedFrameClosesOnlyThatConnection(t *testing.T) {
	ts := startServer(t)
	r := rawDial(t, ts, "readmark.v1.proto")
	r.login(ts, "alice")
	big := &pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{
		Receiver: "bob", Text: string(bytes.Repeat([]byte("x"), 70*1024)),
	}}}
	r.write(big)
	if _, _, err := r.c.Read(ctxT(t)); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("read after oversized frame: %v", err)
	}
	// The server is fine.
	other, _ := ts.dial("carol")
	send(t, other, "still up", "dave", "", false)
}

func TestLoginRequiredFirst(t *testing.T) {
	ts := startServer(t)
	r := rawDial(t, ts, "readmark.v1.proto")
	r.write(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	if f := r.readResponse(); f.Error == nil || f.Error.Code != pb.CodeProtocol {
		t.Fatalf("got %v", f)
	}
	if _, _, err := r.c.Read(ctxT(t)); err == nil {
		t.Fatal("connection stayed open without a login")
	}
	// No subprotocol: refused.
	c, _, err := websocket.Dial(ctxT(t), ts.url()+"/v1/ws", nil)
	if err == nil {
		_, _, err = c.Read(ctxT(t))
		c.CloseNow()
	}
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("without subprotocol: %v", err)
	}
}

func mustMarshal(t *testing.T, f *pb.ClientFrame) []byte {
	t.Helper()
	b, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connCounter counts connection state changes.
type connCounter struct {
	mu           sync.Mutex
	disconnected int
}

func (c *connCounter) OnConnected()    {}
func (c *connCounter) OnReconnecting() {}
func (c *connCounter) OnDisconnected(error) {
	c.mu.Lock()
	c.disconnected++
	c.mu.Unlock()
}

func TestIdleTimeoutAndHeartbeat(t *testing.T) {
	ts := startServerWith(t, time.Second)
	counter := &connCounter{}
	sdk, _ := ts.dial("alice")
	sdk.AddConnListener(counter)
	r := rawDial(t, ts, "readmark.v1.proto")
	r.login(ts, "bob")
	// bob says nothing more: after twice the heartbeat the server closes him.
	if _, _, err := r.c.Read(ctxT(t)); err == nil {
		t.Fatal("silent connection was not closed")
	}
	// alice's SDK kept the heartbeat, so her connection is the same one.
	send(t, sdk, "still here", "bob", "", false)
	counter.mu.Lock()
	defer counter.mu.Unlock()
	if counter.disconnected != 0 {
		t.Fatalf("SDK connection dropped %d times", counter.disconnected)
	}
}

type disconnectRecorder struct {
	connCounter
	errs chan error
}

func (d *disconnectRecorder) OnDisconnected(err error) {
	select {
	case d.errs <- err:
	default:
	}
}

func TestGracefulShutdownKicksOff(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice", im.WithReconnect(false))
	rec := &disconnectRecorder{errs: make(chan error, 1)}
	alice.AddConnListener(rec)
	sent := send(t, alice, "before shutdown", "bob", "", false)
	ts.stop()
	select {
	case err := <-rec.errs:
		wantCode(t, err, im.CodeUnavailable)
	case <-time.After(15 * time.Second):
		t.Fatal("no disconnect after shutdown")
	}
	ts.start()
	bob, _ := ts.dial("bob")
	h := must[[]*im.Message](t)(bob.GetC2CHistoryMessageList(ctxT(t), "alice", 1, nil))
	if len(h) != 1 || h[0].MsgID != sent.MsgID {
		t.Fatalf("after restart: %+v", h)
	}
}

func TestRateLimited(t *testing.T) {
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", rateLimit: 5}
	ts.start()
	t.Cleanup(ts.stop)
	alice, _ := ts.dial("alice")
	ctx := ctxT(t)
	var limited int
	for range 20 {
		_, err := alice.GetC2CHistoryMessageList(ctx, "bob", 1, nil)
		var e *im.Error
		if errors.As(err, &e) && e.Code == im.CodeRateLimited {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 {
		t.Fatal("20 requests at once against 5/s were never limited")
	}
	// Limited requests failed alone: the session recovers as tokens refill.
	waitFor(t, "a request to pass again", func() bool {
		_, err := alice.GetC2CHistoryMessageList(ctx, "bob", 1, nil)
		return err == nil
	})
}
