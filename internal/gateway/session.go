package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/dispatch"
	"github.com/readmark/readmark/internal/page"
)

// session is one client connection. Goroutines: run (the reader, which owns
// the session), writer, and one per request in flight; all end before run
// returns.
type session struct {
	g      *Gateway
	conn   *websocket.Conn
	json   bool
	id     uint64
	user   string
	device string // login's device_id

	ctx    context.Context
	cancel context.CancelFunc
	// idle closes the connection when no frame arrived in time. Reads and
	// writes use watchdog timers instead of per-call deadline contexts,
	// which would allocate a context and a callback for every frame.
	idle  *time.Timer
	wake  chan struct{} // signals the writer that out has frames (capacity 1)
	slots chan struct{}
	limit *rate.Limiter
	reqs  sync.WaitGroup

	mu       sync.Mutex
	inflight map[uint64]struct{}
	out      [][]byte // encoded frames waiting for the writer, in the session's encoding
	closed   bool     // no more frames: the writer ends once out is written
	draining bool     // the writer closes the connection after the last frame
}

func newSession(parent context.Context, g *Gateway, conn *websocket.Conn, json bool) *session {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &session{
		ctx:      ctx,
		cancel:   cancel,
		g:        g,
		conn:     conn,
		json:     json,
		id:       g.nextID.Add(1),
		wake:     make(chan struct{}, 1),
		slots:    make(chan struct{}, g.cfg.MaxInFlight),
		limit:    rate.NewLimiter(g.cfg.RateLimit, g.cfg.RateBurst),
		inflight: make(map[uint64]struct{}),
	}
}

func (s *session) run() {
	defer s.cancel()
	s.idle = time.AfterFunc(loginTimeout, func() { s.conn.CloseNow() })
	defer s.idle.Stop()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writer()
	}()
	defer func() {
		s.reqs.Wait()
		s.closeOut()
		<-writerDone
		s.conn.CloseNow()
	}()

	if !s.login() {
		return
	}
	defer s.g.cfg.Dispatcher.SessionEnded(s.caller())
	defer s.g.cfg.Hub.remove(s)
	s.g.cfg.Metrics.sessionOpened()
	defer s.g.cfg.Metrics.sessionClosed()
	for {
		frame, err := s.read(2 * s.g.cfg.Heartbeat)
		if err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) {
				// A frame that cannot be decoded fails alone.
				s.respond(0, nil, ae)
				continue
			}
			return
		}
		s.dispatch(frame)
	}
}

// login reads and answers the first frame, which must be a LoginRequest,
// and on success registers the session with the Hub.
func (s *session) login() bool {
	frame, err := s.read(loginTimeout)
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) {
			s.respond(0, nil, ae)
		}
		return false
	}
	req := frame.GetLogin()
	var fail *apierr.Error
	switch {
	case req == nil:
		fail = apierr.New(pb.CodeProtocol, "the first frame must be a login request")
	case req.ProtocolVersion != 1:
		fail = apierr.New(pb.CodeProtocol, "protocol version %d not supported; this server speaks 1", req.ProtocolVersion)
	case !conv.ValidID(req.UserId):
		fail = apierr.New(pb.CodeUnauthenticated, "invalid user ID %q", req.UserId)
	case req.DeviceId != "" && !conv.ValidID(req.DeviceId):
		fail = apierr.From(conv.CheckID("device ID", req.DeviceId))
	default:
		user, err := s.g.cfg.Authenticate(req.Token)
		if err != nil {
			fail = apierr.New(pb.CodeUnauthenticated, "token rejected: %v", err)
		} else if user != req.UserId {
			fail = apierr.New(pb.CodeUnauthenticated, "token was minted for another user")
		}
	}
	if fail != nil {
		s.g.cfg.Metrics.request("login", fail.Code, 0)
		s.respond(frame.Id, nil, fail)
		return false
	}
	if s.g.draining.Load() {
		s.respond(frame.Id, nil, apierr.New(pb.CodeUnavailable, "server shutting down"))
		return false
	}
	s.user, s.device = req.UserId, req.DeviceId
	// Register before answering: once the client hears "logged in", every
	// push for the user reaches this session (online-only messages included).
	if err := s.g.cfg.Hub.add(s); err != nil {
		s.g.cfg.Logger.Error("registering session", "user", s.user, "err", err)
		s.respond(frame.Id, nil, apierr.New(pb.CodeUnavailable, "cannot register the session"))
		return false
	}
	s.respond(frame.Id, &pb.ServerFrame{Body: &pb.ServerFrame_Login{Login: &pb.LoginResponse{
		ServerTimeMs:    time.Now().UnixMilli(),
		SessionId:       fmt.Sprintf("%x", s.id),
		ProtocolVersion: 1,
		Limits:          limits(s.g.cfg.Heartbeat),
	}}}, nil)
	s.g.cfg.Metrics.request("login", 0, 0)
	return true
}

// read returns the next frame; an *apierr.Error for a frame that could not
// be decoded (the connection stays up), any other error ends the session.
func (s *session) read(timeout time.Duration) (*pb.ClientFrame, error) {
	s.idle.Reset(timeout)
	typ, data, err := s.conn.Read(context.Background())
	if err != nil {
		return nil, err
	}
	frame := &pb.ClientFrame{}
	switch {
	case typ == websocket.MessageBinary && !s.json:
		err = proto.Unmarshal(data, frame)
	case typ == websocket.MessageText && s.json:
		err = protojson.Unmarshal(data, frame)
	default:
		return nil, apierr.New(pb.CodeProtocol, "wrong frame type for subprotocol")
	}
	if err != nil {
		return nil, apierr.New(pb.CodeProtocol, "undecodable frame: %v", err)
	}
	return frame, nil
}

func (s *session) dispatch(frame *pb.ClientFrame) {
	if frame.Id == 0 {
		s.respond(0, nil, apierr.New(pb.CodeProtocol, "request id must be non-zero"))
		return
	}
	s.mu.Lock()
	_, dup := s.inflight[frame.Id]
	if !dup {
		s.inflight[frame.Id] = struct{}{}
	}
	s.mu.Unlock()
	if dup {
		s.respond(frame.Id, nil, apierr.New(pb.CodeProtocol, "request id %d is already in flight", frame.Id))
		return
	}
	if !s.limit.Allow() {
		s.finish(frame.Id, nil, apierr.New(pb.CodeRateLimited, "over %v requests/s", s.g.cfg.RateLimit), "rate_limited", time.Now())
		return
	}
	s.slots <- struct{}{}
	s.reqs.Add(1)
	go func() {
		defer func() {
			<-s.slots
			s.reqs.Done()
		}()
		start := time.Now()
		name := dispatch.RequestName(frame)
		resp, err := s.g.cfg.Dispatcher.Do(s.ctx, s.caller(), frame)
		s.finish(frame.Id, resp, err, name, start)
	}()
}

func (s *session) caller() dispatch.Caller {
	return dispatch.Caller{UserID: s.user, SessionID: s.id, DeviceID: s.device, JSON: s.json}
}

func (s *session) finish(id uint64, resp *pb.ServerFrame, err error, name string, start time.Time) {
	var ae *apierr.Error
	if err != nil {
		ae = apierr.From(err)
		if ae.Code == pb.CodeInternal {
			s.g.cfg.Logger.Error("request failed", "user", s.user, "request", name, "err", err)
		}
	}
	s.mu.Lock()
	delete(s.inflight, id)
	s.mu.Unlock()
	code := int32(0)
	if ae != nil {
		code = ae.Code
	}
	s.g.cfg.Metrics.request(name, code, time.Since(start))
	s.respond(id, resp, ae)
}

// respond sends a response (or error) to request id.
func (s *session) respond(id uint64, resp *pb.ServerFrame, e *apierr.Error) {
	if resp == nil {
		resp = &pb.ServerFrame{}
	}
	resp.Id = id
	if e != nil {
		resp.Body = nil
		resp.Error = &pb.Error{Code: e.Code, Desc: e.Desc}
	}
	data, err := s.encode(resp)
	if err != nil {
		s.g.cfg.Logger.Error("encoding response", "err", err)
		return
	}
	s.enqueue(data, true)
}

// push queues an encoded push (binary protobuf from the bus) without
// blocking. A session too slow to take its pushes is closed: its client
// reconnects and syncs.
func (s *session) push(frame []byte) {
	if s.json {
		f := &pb.ServerFrame{}
		if err := proto.Unmarshal(frame, f); err != nil {
			return
		}
		var err error
		if frame, err = protojson.Marshal(f); err != nil {
			return
		}
	}
	s.g.cfg.Metrics.pushed()
	if !s.enqueue(frame, false) {
		s.g.cfg.Metrics.slowConsumer()
		s.close(websocket.StatusPolicyViolation, "too slow to receive pushes")
	}
}

// enqueue hands a frame to the writer. Responses are always taken (a
// session has at most MaxInFlight requests, so at most that many responses
// wait); a push is refused when outQueue frames already wait.
func (s *session) enqueue(data []byte, response bool) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return true
	}
	if !response && len(s.out) >= outQueue {
		s.mu.Unlock()
		return false
	}
	s.out = append(s.out, data)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// closeOut tells the writer to end once what is queued is written.
func (s *session) closeOut() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the queued frames and whether the writer should end after
// writing them.
func (s *session) take(buf [][]byte) ([][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf = append(buf[:0], s.out...)
	clear(s.out)
	s.out = s.out[:0]
	return buf, s.closed
}

func (s *session) encode(f *pb.ServerFrame) ([]byte, error) {
	if s.json {
		return protojson.Marshal(f)
	}
	return proto.Marshal(f)
}

func (s *session) writer() {
	typ := websocket.MessageBinary
	if s.json {
		typ = websocket.MessageText
	}
	// A write stuck for writeTimeout (the client stopped reading) closes
	// the connection.
	stuck := time.AfterFunc(writeTimeout, func() { s.conn.CloseNow() })
	stuck.Stop()
	defer func() {
		stuck.Stop()
		s.mu.Lock()
		draining := s.draining
		s.mu.Unlock()
		if draining {
			s.conn.Close(websocket.StatusGoingAway, "server shutting down")
		} else {
			// The reader waits on the connection, not on ctx: close it.
			s.conn.CloseNow()
		}
		s.cancel()
	}()
	var batch [][]byte
	for {
		var last bool
		batch, last = s.take(batch)
		if len(batch) > 0 {
			stuck.Reset(writeTimeout)
			for _, data := range batch {
				if err := s.conn.Write(context.Background(), typ, data); err != nil {
					return
				}
			}
			stuck.Stop()
		}
		clear(batch)
		if last {
			return
		}
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
	}
}

// drain lets in-flight requests finish, sends a Kickoff and closes.
func (s *session) drain() {
	s.reqs.Wait()
	data, err := s.encode(&pb.ServerFrame{Body: &pb.ServerFrame_Kickoff{Kickoff: &pb.Kickoff{
		Reason: &pb.Error{Code: pb.CodeUnavailable, Desc: "server shutting down"},
	}}})
	if err == nil {
		s.enqueue(data, true)
	}
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.closeOut()
}

// close ends the session: the reader's Read fails and run cleans up.
func (s *session) close(code websocket.StatusCode, reason string) {
	go func() {
		// Close waits for the peer's close frame; never from a bus handler.
		s.conn.Close(code, reason)
		s.cancel()
	}()
}

func limits(heartbeat time.Duration) *pb.Limits {
	return &pb.Limits{
		MaxFrameBytes:       MaxFrameBytes,
		MaxTextBytes:        12 * 1024,
		MaxCustomDataBytes:  8 * 1024,
		MaxBatch:            100,
		MaxGroupMembers:     100_000,
		MaxMembersPerCall:   1_000,
		HeartbeatSeconds:    uint32(heartbeat / time.Second),
		MaxServerFrameBytes: page.MaxFrameBytes,
	}
}
