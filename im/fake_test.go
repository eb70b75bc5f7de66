package im

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// fakeServer speaks enough of the protocol to test the SDK's own logic. The
// token of user U is "tok-U". Frames after login go to handle (default:
// defaultHandle), which may answer later or out of order.
type fakeServer struct {
	t      testing.TB
	srv    *httptest.Server
	wg     sync.WaitGroup
	logins atomic.Int32
	refuse atomic.Bool // answer upgrades with 503
	hbSecs uint32

	mu       sync.Mutex
	sessions map[*fakeSess]bool
	handle   func(s *fakeSess, f *pb.ClientFrame)
	frames   chan *pb.ClientFrame // every frame after login, if not nil
	ready    chan *fakeSess       // each logged-in session
	// loginSync answers a login's sync request (nil: ignored, as by a
	// server without it); it may push before the login response.
	loginSync func(s *fakeSess, r *pb.SyncRequest) *pb.SyncResponse
	loginReqs chan *pb.LoginRequest // each login request
}

type fakeSess struct {
	fs     *fakeServer
	conn   *websocket.Conn
	json   bool
	user   string
	device string // login's device_id
	wmu    sync.Mutex
}

func newFake(t testing.TB) *fakeServer {
	fs := &fakeServer{
		t:         t,
		sessions:  make(map[*fakeSess]bool),
		frames:    make(chan *pb.ClientFrame, 1000),
		ready:     make(chan *fakeSess, 100),
		loginReqs: make(chan *pb.LoginRequest, 100),
	}
	fs.handle = fs.defaultHandle
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.close)
	return fs
}

func (fs *fakeServer) url() string { return fs.srv.URL } // http://, as a server prints its address

func (fs *fakeServer) close() {
	fs.dropAll()
	fs.wg.Wait()
	fs.srv.Close()
}

func (fs *fakeServer) setHandler(h func(s *fakeSess, f *pb.ClientFrame)) {
	fs.mu.Lock()
	fs.handle = h
	fs.mu.Unlock()
}

// dropAll closes every session's TCP connection without a close handshake.
func (fs *fakeServer) dropAll() {
	fs.mu.Lock()
	ss := make([]*fakeSess, 0, len(fs.sessions))
	for s := range fs.sessions {
		ss = append(ss, s)
	}
	fs.mu.Unlock()
	for _, s := range ss {
		s.conn.CloseNow()
	}
}

func (fs *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/ws" {
		http.NotFound(w, r)
		return
	}
	if fs.refuse.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	fs.wg.Add(1)
	defer fs.wg.Done()
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"readmark.v1.proto", "readmark.v1.json"}})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(65536) // the max_frame_bytes it announces
	if conn.Subprotocol() == "" {
		conn.Close(websocket.StatusPolicyViolation, "subprotocol required")
		return
	}
	s := &fakeSess{fs: fs, conn: conn, json: conn.Subprotocol() == "readmark.v1.json"}
	ctx := context.Background()
	login, err := s.read(ctx)
	if err != nil {
		return
	}
	fs.logins.Add(1)
	lr := login.GetLogin()
	if lr == nil || lr.GetProtocolVersion() != 1 || lr.GetToken() != "tok-"+lr.GetUserId() {
		s.send(&pb.ServerFrame{Id: login.GetId(), Error: &pb.Error{Code: pb.CodeUnauthenticated, Desc: "bad token"}})
		conn.Close(websocket.StatusPolicyViolation, "unauthenticated")
		return
	}
	s.user, s.device = lr.GetUserId(), lr.GetDeviceId()
	fs.mu.Lock()
	fs.sessions[s] = true
	fs.mu.Unlock()
	defer func() {
		fs.mu.Lock()
		delete(fs.sessions, s)
		fs.mu.Unlock()
	}()
	fs.loginReqs <- lr
	resp := &pb.LoginResponse{
		ServerTimeMs: time.Now().UnixMilli(), SessionId: "s1", ProtocolVersion: 1,
		Limits: &pb.Limits{MaxFrameBytes: 65536, MaxBatch: 100, HeartbeatSeconds: fs.hbSecs},
	}
	fs.mu.Lock()
	loginSync := fs.loginSync
	fs.mu.Unlock()
	if loginSync != nil && lr.GetSync() != nil {
		resp.Sync = loginSync(s, lr.GetSync())
	}
	s.send(&pb.ServerFrame{Id: login.GetId(), Body: &pb.ServerFrame_Login{Login: resp}})
	fs.ready <- s
	for {
		f, err := s.read(ctx)
		if err != nil {
			return
		}
		select {
		case fs.frames <- f:
		default:
		}
		fs.mu.Lock()
		h := fs.handle
		fs.mu.Unlock()
		h(s, f)
	}
}

func (s *fakeSess) read(ctx context.Context) (*pb.ClientFrame, error) {
	typ, b, err := s.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	f := new(pb.ClientFrame)
	if s.json {
		if typ != websocket.MessageText {
			s.fs.t.Errorf("json subprotocol: got %v frame", typ)
		}
		err = protojson.Unmarshal(b, f)
	} else {
		if typ != websocket.MessageBinary {
			s.fs.t.Errorf("proto subprotocol: got %v frame", typ)
		}
		err = proto.Unmarshal(b, f)
	}
	if err != nil {
		s.fs.t.Errorf("fake: bad client frame: %v", err)
	}
	return f, err
}

func (s *fakeSess) send(f *pb.ServerFrame) {
	var b []byte
	var err error
	typ := websocket.MessageBinary
	if s.json {
		typ = websocket.MessageText
		b, err = protojson.Marshal(f)
	} else {
		b, err = proto.Marshal(f)
	}
	if err != nil {
		s.fs.t.Errorf("fake: marshal: %v", err)
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.conn.Write(ctx, typ, b) // errors: the client went away
}

func (s *fakeSess) push(f *pb.ServerFrame) { f.Id = 0; s.send(f) }

func (s *fakeSess) ok(id uint64) {
	s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_Ok{Ok: &pb.Empty{}}})
}

func (s *fakeSess) fail(id uint64, code int32, desc string) {
	s.send(&pb.ServerFrame{Id: id, Error: &pb.Error{Code: code, Desc: desc}})
}

// defaultHandle answers every request trivially.
func (fs *fakeServer) defaultHandle(s *fakeSess, f *pb.ClientFrame) {
	id := f.GetId()
	switch b := f.GetBody().(type) {
	case *pb.ClientFrame_Ping:
		s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_Ping{Ping: &pb.PingResponse{ServerTimeMs: 1}}})
	case *pb.ClientFrame_Sync:
		s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_Sync{Sync: &pb.SyncResponse{}}})
	case *pb.ClientFrame_CreateGroup:
		gid := b.CreateGroup.GetGroupId()
		if gid == "" {
			gid = "@auto"
		}
		s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_CreateGroup{CreateGroup: &pb.CreateGroupResponse{GroupId: gid}}})
	case *pb.ClientFrame_SendMessage:
		r := b.SendMessage
		s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_SendMessage{SendMessage: &pb.SendMessageResponse{Message: &pb.Message{
			MsgId: "m1", Seq: 7, Sender: s.user, Receiver: r.GetReceiver(), GroupId: r.GetGroupId(), TimeMs: 1700000000000,
			NeedReadReceipt: r.GetNeedReadReceipt(), ElemType: r.GetElemType(), Text: r.GetText(), CustomData: r.GetCustomData(),
			Priority: r.GetPriority(), OnlineUserOnly: r.GetOnlineUserOnly(),
		}}}})
	case *pb.ClientFrame_Ack:
		if !b.Ack.GetNoReply() { // as the server: no answer at all
			s.ok(id)
		}
	case *pb.ClientFrame_JoinGroup:
		if strings.HasPrefix(b.JoinGroup.GetGroupId(), "work") {
			s.fail(id, pb.CodePermissionDenied, "not invited")
			return
		}
		s.ok(id)
	default:
		s.ok(id)
	}
}

// waitSession returns the next session that logged in.
func (fs *fakeServer) waitSession(t *testing.T) *fakeSess {
	t.Helper()
	select {
	case s := <-fs.ready:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no session logged in")
		return nil
	}
}

// waitFrame returns the next client frame for which match is true.
func (fs *fakeServer) waitFrame(t *testing.T, match func(*pb.ClientFrame) bool) *pb.ClientFrame {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-fs.frames:
			if match(f) {
				return f
			}
		case <-deadline:
			t.Fatal("expected frame not received")
			return nil
		}
	}
}

// checkFor polls f until it returns nil or the time is up.
func checkFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
