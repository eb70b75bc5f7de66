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
	"github.com/readmark/readmark/internal/wsframe"
)

// session is one client connection. Goroutines: run (the reader, which owns
// the session), the writer while the session is busy (it retires when
// idle, see writer), and one job per request in flight on a kept worker;
// all end before run returns.
type session struct {
	g      *Gateway
	conn   *websocket.Conn
	cork   *corkConn // conn's connection, to batch the writer's frames
	json   bool
	id     uint64
	user   string
	device string // login's device_id

	ctx    context.Context
	cancel context.CancelFunc
	// idle closes the connection when no frame arrived in time. Reads and
	// writes use watchdog timers instead of per-call deadline contexts,
	// which would allocate a context and a callback for every frame.
	idle *time.Timer
	// stuck closes the connection when a write takes longer than
	// writeTimeout (the client stopped reading), or at once for a slow
	// consumer. A watchdog, not a timer reset per write.
	stuck *watchdog
	wake  chan struct{} // signals a running writer that out has frames (capacity 1)
	done  chan struct{} // closed once the writer has ended the session (finish)
	// slots bounds the requests whose response is not yet written: the
	// reader takes one per request, the writer gives it back after writing
	// the response. A client that does not read stalls its own reader.
	slots chan struct{}
	limit *rate.Limiter // the user's, shared with the user's other sessions
	reqs  sync.WaitGroup
	// onWorkerDone tells the reader that what it ran on a worker ended
	// (onWorker); the reader's own, so one channel serves every call.
	onWorkerDone chan struct{}

	mu       sync.Mutex
	inflight map[uint64]struct{}
	out      []outFrame // frames waiting for the writer, from out[head]
	head     int
	queued   int  // bytes of out plus the batch the writer is writing
	closed   bool // no more frames: the writer ends once out is written
	slow     bool // closed as a slow consumer: the writer drops out and ends
	draining bool // the writer closes the connection after the last frame
	// writing: a batch is being written, by the writer or by a request's
	// worker writing its own response (see enqueue); frames are written by
	// one at a time, in queue order. failed: such a write failed, and the
	// writer ends the session.
	writing bool
	failed  bool
	// hasWriter: the writer runs (or the session is not yet running, or
	// has ended): nobody starts another; wake it instead.
	hasWriter bool
}

// outFrame is one frame for the writer: a response encoded in the
// session's encoding, or a push shared with other sessions.
type outFrame struct {
	data []byte
	buf  *[]byte // the pooled buffer data is in, given back once written
	push *push
	size int  // bytes charged to the session's queue
	slot bool // a response holding a request slot, given back once written
}

// frameBufs holds buffers for encoding responses: one allocation per
// buffer, not per frame. Like the buffers frames are read into, one over
// wsframe.MaxPooled (a history page) is not kept.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

func newSession(parent context.Context, g *Gateway, conn *websocket.Conn, json bool) *session {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &session{
		ctx:       ctx,
		cancel:    cancel,
		g:         g,
		conn:      conn,
		json:      json,
		id:        g.nextID.Add(1),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		hasWriter: true, // until run
		slots:     make(chan struct{}, g.cfg.MaxInFlight),
		inflight:  make(map[uint64]struct{}),
	}
}

func (s *session) run() {
	defer s.cancel()
	s.idle = time.AfterFunc(loginTimeout, func() { s.conn.CloseNow() })
	defer s.idle.Stop()
	s.stuck = newWatchdog(writeTimeout, func() { s.conn.CloseNow() })
	s.mu.Lock()
	s.hasWriter = false // started by the first frame
	s.mu.Unlock()
	defer func() {
		s.reqs.Wait()
		s.closeOut()
		<-s.done
		s.conn.CloseNow()
	}()
	if !s.login() {
		return
	}
	defer s.g.cfg.Dispatcher.SessionEnded(s.caller())
	defer s.g.cfg.Hub.remove(s)
	// The requests still running end before the session leaves the Hub and
	// the services: an ack riding on a request the client no longer waits
	// for moves its cursors while the user still counts as online, so the
	// cursor flush cannot evict them under it, and before an ephemeral
	// device's cursors are forgotten.
	defer s.reqs.Wait()
	s.g.cfg.Metrics.sessionOpened()
	defer s.g.cfg.Metrics.sessionClosed()
	for {
		frame, err := s.read(2 * s.g.cfg.Heartbeat)
		var ae *apierr.Error
		if err != nil && !errors.As(err, &ae) {
			// The connection is gone: nobody will read the answers of the
			// read-only requests still running, so stop them and give
			// their storage connections back. Writes run to their end.
			s.cancel()
			return
		}
		// Every frame counts against the user's rate, undecodable ones
		// too: a frame costs its decoding and an answer.
		if !s.limit.Allow() {
			s.g.cfg.Metrics.request("rate_limited", pb.CodeRateLimited, 0)
			s.answer(frame, nil, apierr.New(pb.CodeRateLimited, "over %v requests/s", s.limit.Limit()), false)
			continue
		}
		if ae != nil {
			// A frame that cannot be decoded fails alone.
			s.respond(0, nil, ae)
			continue
		}
		if frame.GetAck().GetNoReply() {
			// Applied before the next frame is read: an ack sent just
			// before a close frame has moved its cursors when the client
			// hears its close answered, so the device's next login syncs
			// after them (the Go SDK's Close relies on it). It needs no
			// slot, as the reader waits for it.
			s.onWorker(func() { s.serve(frame, false) })
			continue
		}
		if !s.dispatch(frame) {
			return
		}
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
	// On a kept worker: authentication, registration and the first sync
	// page grow a goroutine's stack to what Pebble and protobuf need, and
	// the connection's own goroutine is new (stack copying was 7 % of the
	// server's CPU in fanin).
	// Counted as a request in flight, so that a drain answers it before
	// its Kickoff: logIn checks for a drain only after this.
	var ok bool
	s.onWorker(func() { ok = s.logIn(frame) })
	return ok
}

// onWorker runs fn on a kept worker, counted as a request in flight, and
// waits for it: for what the reader must finish before it reads the next
// frame.
func (s *session) onWorker(fn func()) {
	if s.onWorkerDone == nil {
		s.onWorkerDone = make(chan struct{}, 1) // reused: one at a time
	}
	s.reqs.Add(1)
	s.g.workers.Run(func() {
		defer s.reqs.Done()
		defer func() { s.onWorkerDone <- struct{}{} }()
		fn()
	})
	<-s.onWorkerDone
}

// logIn answers login request frame; see login.
func (s *session) logIn(frame *pb.ClientFrame) bool {
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
	if fail == nil && s.g.draining.Load() {
		fail = apierr.New(pb.CodeUnavailable, "server shutting down")
	}
	if fail == nil {
		s.user, s.device = req.UserId, req.DeviceId
		// Register before answering: once the client hears "logged in",
		// every push for the user reaches this session (online-only
		// messages included).
		var err error
		if s.limit, err = s.g.cfg.Hub.add(s); err != nil {
			if fail = apierr.From(err); fail.Code == pb.CodeInternal {
				s.g.cfg.Logger.Error("registering session", "user", s.user, "err", err)
				fail = apierr.New(pb.CodeUnavailable, "cannot register the session")
			}
		}
	}
	if fail != nil {
		s.g.cfg.Metrics.request("login", fail.Code, 0)
		s.send(frame.Id, nil, fail, false, true)
		return false
	}
	resp := &pb.LoginResponse{
		ServerTimeMs:    time.Now().UnixMilli(),
		SessionId:       fmt.Sprintf("%x", s.id),
		ProtocolVersion: 1,
		Limits:          limits(s.g.cfg.Heartbeat),
	}
	s.ackCarried(frame)
	if req.Sync != nil {
		// The first sync page rides on the response, saving the client a
		// round trip. It runs after the Hub registration, as a SyncRequest
		// sent right after the login would: the pushes from then on
		// continue where it ends. Its page is cut to the frame budget,
		// whose reserve covers the login's own few fields. On failure the
		// login stands and the client syncs with a SyncRequest.
		if sr, ae := s.do(&pb.ClientFrame{Id: frame.Id, Body: &pb.ClientFrame_Sync{Sync: req.Sync}}); ae == nil {
			resp.Sync = sr.GetSync()
		}
	}
	s.send(frame.Id, &pb.ServerFrame{Body: &pb.ServerFrame_Login{Login: resp}}, nil, false, true)
	s.g.cfg.Metrics.request("login", 0, 0)
	return true
}

// jsonIn parses JSON frames leniently: fields from a later v1 schema are
// ignored, as binary protobuf ignores them (docs/protocol.md, Versioning).
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// read returns the next frame; an *apierr.Error for a frame that could not
// be decoded (the connection stays up), any other error ends the session.
func (s *session) read(timeout time.Duration) (*pb.ClientFrame, error) {
	s.idle.Reset(timeout)
	typ, r, err := s.conn.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	frame := &pb.ClientFrame{}
	err = wsframe.Read(r, func(msg []byte) error {
		var err error
		switch {
		case typ == websocket.MessageBinary && !s.json:
			err = proto.Unmarshal(msg, frame)
		case typ == websocket.MessageText && s.json:
			err = jsonIn.Unmarshal(msg, frame)
		default:
			return apierr.New(pb.CodeProtocol, "wrong frame type for subprotocol")
		}
		if err != nil {
			return apierr.New(pb.CodeProtocol, "undecodable frame: %v", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return frame, nil
}

// dispatch starts a request once it has a slot; false when the session
// ended while waiting for one.
func (s *session) dispatch(frame *pb.ClientFrame) bool {
	if frame.Id == 0 {
		s.answer(frame, nil, apierr.New(pb.CodeProtocol, "request id must be non-zero"), false)
		return true
	}
	s.mu.Lock()
	_, dup := s.inflight[frame.Id]
	if !dup {
		s.inflight[frame.Id] = struct{}{}
	}
	s.mu.Unlock()
	if dup {
		s.answer(frame, nil, apierr.New(pb.CodeProtocol, "request id %d is already in flight", frame.Id), false)
		return true
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	s.reqs.Add(1)
	s.g.workers.Run(func() {
		defer s.reqs.Done()
		s.serve(frame, true)
	})
	return true
}

// serve runs request frame with the ack it carries and answers it; slot
// says it holds a slot and an entry in inflight, given back as it ends.
func (s *session) serve(frame *pb.ClientFrame, slot bool) {
	s.ackCarried(frame)
	resp, ae := s.do(frame)
	if slot {
		s.mu.Lock()
		delete(s.inflight, frame.Id)
		s.mu.Unlock()
	}
	s.answer(frame, resp, ae, slot)
}

// do runs request frame, counts it in the metrics and logs an internal
// failure.
func (s *session) do(frame *pb.ClientFrame) (*pb.ServerFrame, *apierr.Error) {
	start := time.Now()
	name := dispatch.RequestName(frame)
	resp, err := s.g.cfg.Dispatcher.Do(s.ctx, s.caller(), frame)
	var ae *apierr.Error
	// Stopped because the connection is gone: not a fault.
	cancelled := err != nil && s.ctx.Err() != nil && pb.ReadOnly(frame)
	if err != nil {
		ae = apierr.From(err)
		if ae.Code == pb.CodeInternal && !cancelled {
			s.g.cfg.Logger.Error("request failed", "user", s.user, "request", name, "err", err)
		}
	}
	code := int32(0)
	if ae != nil {
		code = ae.Code
	}
	if cancelled {
		s.g.cfg.Metrics.cancelled(name)
	} else {
		s.g.cfg.Metrics.request(name, code, time.Since(start))
	}
	return resp, ae
}

// ackCarried applies the acknowledgement request f carries
// (ClientFrame.acked) before its body runs, as the AckRequest with no_reply
// it stands for: the same path, counted as an ack, a failure only logged.
// The request runs whatever the ack's outcome. acked is then cleared: it
// is not forwarded with the body to a partition's owner.
func (s *session) ackCarried(f *pb.ClientFrame) {
	if len(f.Acked) == 0 {
		return
	}
	ack := &pb.ClientFrame{Id: f.Id, Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{Cursors: f.Acked, NoReply: true}}}
	f.Acked = nil
	_, ae := s.do(ack)
	s.answer(ack, nil, ae, false)
}

func (s *session) caller() dispatch.Caller {
	return dispatch.Caller{UserID: s.user, SessionID: s.id, DeviceID: s.device, JSON: s.json}
}

// answer sends the response (or error) to request f, unless f asks for
// none (AckRequest.no_reply): then a failure is only logged, and the slot
// (if it holds one) is given back at once.
func (s *session) answer(f *pb.ClientFrame, resp *pb.ServerFrame, e *apierr.Error, slot bool) {
	if !f.GetAck().GetNoReply() {
		s.send(f.GetId(), resp, e, slot, slot)
		return
	}
	if e != nil {
		s.g.cfg.Logger.Debug("unanswered request failed", "user", s.user, "request", dispatch.RequestName(f), "code", e.Code, "err", e.Desc)
	}
	if slot {
		<-s.slots
	}
}

// respond sends a response (or error) to request id that holds no slot.
func (s *session) respond(id uint64, resp *pb.ServerFrame, e *apierr.Error) {
	s.send(id, resp, e, false, false)
}

// send queues a response (or error) to request id; slot says it holds a
// request slot, given back once the response is written. direct says the
// caller is a worker, which may write the response itself (writeNow).
func (s *session) send(id uint64, resp *pb.ServerFrame, e *apierr.Error, slot, direct bool) {
	if resp == nil {
		resp = &pb.ServerFrame{}
	}
	resp.Id = id
	if e != nil {
		resp.Body = nil
		resp.Error = &pb.Error{Code: e.Code, Desc: e.Desc}
	}
	f := outFrame{slot: slot, buf: frameBufs.Get().(*[]byte)}
	data, err := s.encode((*f.buf)[:0], resp)
	if err != nil {
		s.g.cfg.Logger.Error("encoding response", "err", err)
		s.giveBack(f)
		return
	}
	*f.buf = data
	f.data, f.size = data, len(data)
	if direct && s.writeNow(f) {
		return
	}
	s.enqueue(f)
}

// writeNow writes a request's response on the request's own goroutine when
// nothing is queued or being written before it, and reports whether it
// did. The response then need not wait for the writer to be scheduled:
// after a group message, the writers of a thousand sessions may
// be runnable ahead of it.
func (s *session) writeNow(f outFrame) bool {
	s.mu.Lock()
	if s.closed || s.writing || s.head < len(s.out) {
		s.mu.Unlock()
		return false
	}
	s.writing = true
	s.queued += f.size
	s.mu.Unlock()
	err := s.writeBatch([]outFrame{f}, s.opcode())
	s.mu.Lock()
	s.queued -= f.size
	if err != nil {
		s.failed = true // the writer ends the session
	}
	s.writing = false
	wake := s.failed || s.closed || s.head < len(s.out)
	start := wake && s.claimWriterLocked()
	s.mu.Unlock()
	s.giveBack(f)
	if wake {
		s.wakeWriter(start)
	}
	return true
}

// push queues a push without blocking; it runs on the bus's goroutine.
func (s *session) push(p *push) {
	s.g.cfg.Metrics.pushed()
	s.enqueue(outFrame{push: p, size: p.size(s.json)})
}

// enqueue hands a frame to the writer. Responses are always taken: at most
// MaxInFlight of them wait, bounded by the slots. A push that finds
// MaxQueueBytes or more waiting (responses and pushes together) makes the
// session a slow consumer: it is closed, once, and what it had queued and
// everything after is dropped; its client reconnects and syncs.
func (s *session) enqueue(f outFrame) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.giveBack(f)
		return
	}
	if f.push != nil && s.queued > 0 && s.queued+f.size > s.g.cfg.MaxQueueBytes {
		s.closed, s.slow = true, true
		dropped := s.out[s.head:]
		s.out, s.head = nil, 0
		queued := s.queued
		s.mu.Unlock()
		for _, d := range dropped {
			s.giveBack(d)
		}
		s.g.cfg.Metrics.slowConsumer()
		s.g.cfg.Logger.Warn("closing a slow consumer", "user", s.user, "session", s.id, "queued_bytes", queued)
		// Cut the connection now, without a close frame: the writer is
		// most likely blocked on a full socket that would not take one.
		s.stuck.now()
		return
	}
	s.out = append(s.out, f)
	s.queued += f.size
	start := s.claimWriterLocked()
	s.mu.Unlock()
	s.wakeWriter(start)
}

// giveBack returns the request slot and the buffer of a frame that has
// been written or will not be.
func (s *session) giveBack(f outFrame) {
	if f.slot {
		<-s.slots
	}
	if f.buf != nil && cap(*f.buf) <= wsframe.MaxPooled {
		frameBufs.Put(f.buf)
	}
}

// claimWriterLocked reports whether the caller is to start the writer (it
// does not run), and if so marks it running. s.mu is held.
func (s *session) claimWriterLocked() bool {
	if s.hasWriter {
		return false
	}
	s.hasWriter = true
	return true
}

// wakeWriter tells the writer that there is work for it; start (from
// claimWriterLocked) starts it instead.
func (s *session) wakeWriter(start bool) {
	if start {
		go s.writer()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// closeOut tells the writer to end the session once what is queued is
// written.
func (s *session) closeOut() {
	s.mu.Lock()
	s.closed = true
	start := s.claimWriterLocked()
	s.mu.Unlock()
	s.wakeWriter(start)
}

// take moves up to writeBatchBytes of queued frames (at least one) into
// buf and says whether the writer should end after writing them.
func (s *session) take(buf []outFrame) ([]outFrame, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf = buf[:0]
	if s.slow || s.failed {
		return buf, true
	}
	if s.writing {
		return buf, false // writeNow wakes the writer when it is done
	}
	n, bytes := s.head, 0
	for n < len(s.out) && (n == s.head || bytes+s.out[n].size <= writeBatchBytes) {
		bytes += s.out[n].size
		n++
	}
	buf = append(buf, s.out[s.head:n]...)
	clear(s.out[s.head:n])
	s.head = n
	s.writing = len(buf) > 0
	switch {
	case s.head == len(s.out):
		s.out, s.head = s.out[:0], 0
	case s.head > len(s.out)/2:
		// Compact, so that a queue that never empties does not grow.
		k := copy(s.out, s.out[s.head:])
		clear(s.out[k:])
		s.out, s.head = s.out[:k], 0
	}
	return buf, s.closed && len(s.out) == 0
}

// written accounts for a batch the writer has written.
func (s *session) written(batch []outFrame) {
	bytes := 0
	for _, f := range batch {
		bytes += f.size
		s.giveBack(f)
	}
	s.mu.Lock()
	s.queued -= bytes
	s.writing = false
	s.mu.Unlock()
}

// encode appends f in the session's encoding to b.
func (s *session) encode(b []byte, f *pb.ServerFrame) ([]byte, error) {
	if s.json {
		return protojson.MarshalOptions{}.MarshalAppend(b, f)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, f)
}

// writer writes the queued frames in batches. It ends the session once it
// is closed and everything is written, or at once when a write failed.
// Started by the first frame, it waits for the next while the session is
// busy, and retires at the second sweep (writerSweep) it waits through:
// most sessions are idle most of the time, and an idle one then keeps no
// writer's stack, while a session with a frame every few seconds keeps
// its writer rather than start one per frame.
func (s *session) writer() {
	if s.writeQueued() {
		s.finish()
	}
}

// writeQueued is the writer's loop: true when the session is to end, false
// when the writer retires.
func (s *session) writeQueued() bool {
	op := s.opcode()
	swept := false // a sweep came while waiting
	var batch []outFrame
	for {
		var last bool
		batch, last = s.take(batch)
		if len(batch) == 0 {
			if last {
				return true
			}
			select {
			case <-s.wake:
				swept = false
			case <-s.g.writerSweep():
				if swept && s.rest() {
					return false
				}
				swept = true
			}
			continue
		}
		swept = false
		if err := s.writeBatch(batch, op); err != nil {
			return true
		}
		s.g.cfg.Metrics.pushesWritten(batch)
		s.written(batch)
		clear(batch)
		if last {
			return true
		}
	}
}

// rest retires the writer when nothing is left for it: the queue is empty
// and the session open, or a request's worker is writing (which wakes the
// writer, starting it again, if it must). False if frames came since take.
func (s *session) rest() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.writing && (s.head < len(s.out) || s.closed || s.slow || s.failed) {
		return false
	}
	s.hasWriter = false
	return true
}

// finish ends the session from the writer. hasWriter stays set: no writer
// starts after it.
func (s *session) finish() {
	s.stuck.stop()
	s.cork.uncork() // after a failed write: a close frame must not stay corked
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
	close(s.done)
}

// opcode is the WebSocket opcode of the session's messages.
func (s *session) opcode() byte {
	if s.json {
		return opText
	}
	return opBinary
}

// writeBatch writes batch, with one write call if it holds several frames
// (corked). Its caller holds the writing token (take, writeNow).
func (s *session) writeBatch(batch []outFrame, op byte) error {
	s.stuck.begin()
	if len(batch) > 1 {
		s.cork.cork()
	}
	for _, f := range batch {
		data := f.data
		if f.push != nil {
			var err error
			if data, err = f.push.encoded(s.json, s.g.cfg.Metrics); err != nil {
				s.g.cfg.Logger.Error("encoding push", "err", err)
				continue
			}
		}
		if err := s.cork.writeMessage(op, data); err != nil {
			return err
		}
	}
	if err := s.cork.uncork(); err != nil {
		return err
	}
	s.stuck.end()
	return nil
}

// drain lets in-flight requests finish, sends a Kickoff and closes.
func (s *session) drain() {
	s.reqs.Wait()
	s.respond(0, &pb.ServerFrame{Body: &pb.ServerFrame_Kickoff{Kickoff: &pb.Kickoff{
		Reason: &pb.Error{Code: pb.CodeUnavailable, Desc: "server shutting down"},
	}}}, nil)
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
