package im

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/wsframe"
)

const (
	endpointPath     = "/v1/ws"
	subprotocolProto = "readmark.v1.proto"
	subprotocolJSON  = "readmark.v1.json"
	protocolVersion  = 1
	syncPageSize     = 200
	defaultHeartbeat = 30 * time.Second
	readLimit        = 16 << 20 // server frames (sync pages) may exceed the 64 KiB client frame limit
	writeTimeout     = 10 * time.Second
	loginTimeout     = 10 * time.Second
	closeAckTimeout  = time.Second
)

// Client is a connection to a Readmark server on behalf of one user. It
// reconnects by itself (see WithReconnect) and is safe for concurrent use.
//
// Locks: c.mu (connection state), s.mu (a session's pending requests),
// c.dmu (delivery state) then q.mu (event queue), c.acks.mu (what to
// acknowledge) — c.dmu may be held while taking q.mu, no other two are ever
// held together. Listener callbacks run on
// the dispatcher goroutine with no lock held.
type Client struct {
	userID string
	token  string
	urls   []string      // WebSocket endpoints, one per server address
	next   atomic.Uint32 // index into urls of the next connection attempt
	opts   options
	log    *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	nextID atomic.Uint64
	wg     sync.WaitGroup // run loop and session goroutines

	mu      sync.Mutex
	sess    *session      // the logged-in session; nil while disconnected
	ready   chan struct{} // closed when sess is set
	stopped chan struct{} // closed when no session will come any more
	stopErr error         // why stopped
	limits  *pb.Limits

	dmu       sync.Mutex
	delivered map[convKey]uint64 // highest seq delivered to listeners
	ownSent   map[convKey]map[uint64]bool
	sending   map[convKey]int       // SendMessage calls not resolved yet
	held      map[convKey]*heldMsgs // waiting for the sends to resolve (see deliverLocked)
	syncing   bool
	buffered  []*pb.Message // pushes received while syncing

	acks          *acks
	ls            listeners
	q             *queue
	dispatchDone  chan struct{}
	dispatcherGID atomic.Uint64
	closeOnce     sync.Once
}

// Dial connects to serverURL (e.g. "ws://127.0.0.1:7700"; http and https are
// accepted too), logs in as userID with token and syncs the messages stored
// while the user was away (reported to the listeners as new messages). ctx
// bounds the connection and login only. A rejected token fails with an *Error
// of code CodeUnauthenticated.
func Dial(ctx context.Context, serverURL, userID, token string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	var urls []string
	for _, a := range strings.Split(serverURL, ",") {
		u, err := endpoint(strings.TrimSpace(a))
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		userID:       userID,
		token:        token,
		urls:         urls,
		opts:         o,
		log:          log.With("user", userID),
		ready:        make(chan struct{}),
		stopped:      make(chan struct{}),
		delivered:    make(map[convKey]uint64),
		ownSent:      make(map[convKey]map[uint64]bool),
		sending:      make(map[convKey]int),
		held:         make(map[convKey]*heldMsgs),
		acks:         newAcks(),
		q:            newQueue(len(o.listeners) == 0),
		dispatchDone: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, l := range o.listeners {
		c.addAny(l)
	}
	go func() {
		defer close(c.dispatchDone)
		c.dispatch()
	}()

	// Start at a random address, so that clients spread over the nodes,
	// and try each once.
	c.next.Store(rand.Uint32N(uint32(len(urls))))
	var s *session
	var err error
	for range urls {
		if s, err = c.connect(ctx); err == nil || ctx.Err() != nil || isCode(err, CodeUnauthenticated) {
			break
		}
	}
	if err != nil {
		c.cancel()
		c.q.close()
		<-c.dispatchDone
		return nil, err
	}
	c.wg.Add(1)
	go c.run(s)
	return c, nil
}

// endpoint turns the server's base address into the WebSocket URL.
func endpoint(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("im: bad server URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("im: bad server URL %q: scheme must be ws, wss, http or https", serverURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + endpointPath
	return u.String(), nil
}

// UserID returns the user this client is logged in as.
func (c *Client) UserID() string { return c.userID }

// Close acknowledges the messages the listeners were handed (best effort,
// waiting a second at most), stops reconnecting, closes the connection,
// fails the requests in flight with CodeUnavailable and waits for the
// client's goroutines to end.
// It may be called from a listener callback, and more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		// Best effort: acknowledge what the application has seen, so that
		// the next login of this device does not report it again. The
		// server applies an ack with no_reply before it reads the next
		// frame, so it has this one when it answers the close below.
		ctx, cancel := context.WithTimeout(context.Background(), closeAckTimeout)
		if c.q.isHeld() {
			// No listener was ever added: the application takes no
			// events, and what was delivered counts as handed, or every
			// login of this device would sync it all again. (A client
			// that ends without Close acknowledges nothing: a repeat.)
			c.acks.handAll(c.syncCursors())
		}
		c.sendAcks(ctx, true)
		cancel()
		c.cancel()
		c.stopAcker()
		c.mu.Lock()
		s := c.sess
		c.mu.Unlock()
		if s != nil {
			s.close(errUnavailable("client closed"), true)
		}
		c.wg.Wait()
		c.q.close()
	})
	if !c.inCallback() {
		<-c.dispatchDone
	}
	return nil
}

// session is one logged-in WebSocket connection.
type session struct {
	c         *Client
	conn      *websocket.Conn
	json      bool
	heartbeat time.Duration

	ctx    context.Context // canceled when the session ends
	cancel context.CancelFunc
	out    chan outFrame
	done   chan struct{} // closed when the session ends
	err    error         // why it ended; set before done is closed

	loginSync *pb.SyncResponse // the first sync page, if the login response carried it

	mu        sync.Mutex
	pending   map[uint64]chan *pb.ServerFrame
	lastWrite atomic.Int64
	endOnce   sync.Once
}

// outFrame is an encoded frame for the writer; written, if not nil, is
// closed once the frame is written to the connection, and the cursors in
// acked (riding on the frame) then count as acknowledged.
type outFrame struct {
	data    []byte
	written chan struct{}
	acked   []*pb.SyncCursor
}

// connect dials the next server address, logs in and starts the session's
// goroutines. It does not publish the session. Each call moves on to the
// next address, so a reconnection goes to another node of a cluster.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	url := c.urls[(c.next.Add(1)-1)%uint32(len(c.urls))]
	sp := subprotocolProto
	if c.opts.json {
		sp = subprotocolJSON
	}
	hc := c.opts.httpClient
	if hc == nil {
		hc = upgradeClient
	}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{sp},
		HTTPClient:   hc,
	})
	if err != nil {
		return nil, fmt.Errorf("im: dial %s: %w", url, err)
	}
	if conn.Subprotocol() != sp {
		conn.Close(websocket.StatusProtocolError, "subprotocol required")
		return nil, fmt.Errorf("im: server did not accept subprotocol %s", sp)
	}
	conn.SetReadLimit(readLimit)
	s := &session{
		c:         c,
		conn:      conn,
		json:      c.opts.json,
		heartbeat: defaultHeartbeat,
		out:       make(chan outFrame, 64),
		done:      make(chan struct{}),
		pending:   make(map[uint64]chan *pb.ServerFrame),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	id := c.nextID.Add(1)
	login := &pb.LoginRequest{
		ProtocolVersion: protocolVersion,
		UserId:          c.userID,
		Token:           c.token,
		Sdk:             c.opts.sdk,
		DeviceId:        c.opts.deviceID,
	}
	// The first sync page rides on the login, saving a round trip; with
	// more cursors than a frame takes, sync acknowledges them first and
	// requests the page itself.
	if cursors := c.syncCursors(); len(cursors) <= maxCursorsPerFrame {
		login.Sync = syncRequest(cursors)
	}
	b, err := s.encode(&pb.ClientFrame{Id: id, Body: &pb.ClientFrame_Login{Login: login}})
	if err == nil {
		err = conn.Write(ctx, s.msgType(), b)
	}
	// Pushes may come before the login response (the server registers the
	// session for them first): kept, for after the sync like the later ones.
	var resp *pb.ServerFrame
	var early []*pb.ServerFrame
	for err == nil {
		resp, err = s.readFrame(ctx)
		if err == nil && resp.GetId() == id {
			break
		}
		if err == nil && resp.GetId() == 0 {
			early = append(early, resp)
		}
	}
	if err != nil {
		conn.CloseNow()
		s.cancel()
		if ctx.Err() != nil && c.ctx.Err() == nil {
			return nil, fmt.Errorf("im: login: %w", ctx.Err())
		}
		return nil, fmt.Errorf("im: login: %w", err)
	}
	if e := resp.GetError(); e != nil {
		conn.Close(websocket.StatusNormalClosure, "")
		s.cancel()
		return nil, fromPB(e)
	}
	lr := resp.GetLogin()
	if lr == nil {
		conn.CloseNow()
		s.cancel()
		return nil, errorf(CodeProtocol, "unexpected login response")
	}
	if hb := lr.GetLimits().GetHeartbeatSeconds(); hb > 0 {
		s.heartbeat = time.Duration(hb) * time.Second
	}
	c.mu.Lock()
	c.limits = lr.GetLimits()
	c.mu.Unlock()
	c.log.Debug("im: logged in", "session", lr.GetSessionId())

	s.loginSync = lr.GetSync()
	c.acks.newSession()

	c.dmu.Lock()
	c.syncing = true
	c.buffered = nil
	c.dmu.Unlock()
	for _, f := range early {
		c.push(f)
	}

	s.lastWrite.Store(time.Now().UnixNano())
	c.wg.Add(3)
	go s.reader()
	go s.writer()
	go s.heartbeater()
	return s, nil
}

// run owns the connection life cycle: sync after each login, then wait for
// the session to end and reconnect with backoff.
func (c *Client) run(s *session) {
	defer c.wg.Done()
	backoff := c.opts.backoffMin
	for {
		c.mu.Lock()
		if c.ctx.Err() != nil { // Close ran before s could be published
			c.mu.Unlock()
			s.close(errUnavailable("client closed"), true)
			c.stop(errUnavailable("client closed"))
			return
		}
		select {
		case <-s.done: // ended before it could be published
		default:
			c.sess = s
			close(c.ready)
		}
		c.mu.Unlock()
		c.emitConn(ConnListener.OnConnected)
		c.sync(s)

		<-s.done
		err := s.err
		c.emitConn(func(l ConnListener) { l.OnDisconnected(err) })
		c.log.Info("im: disconnected", "err", err)

		var ie *Error
		switch {
		case c.ctx.Err() != nil:
			c.stop(errUnavailable("client closed"))
			return
		case errors.As(err, &ie) && ie.Code == CodeUnauthenticated:
			c.stop(ie)
			return
		case !c.opts.reconnect:
			c.stop(errUnavailable("connection lost: " + err.Error()))
			return
		}
		for s = nil; s == nil; {
			d := jitter(backoff)
			backoff = min(backoff*2, c.opts.backoffMax)
			t := time.NewTimer(d)
			select {
			case <-c.ctx.Done():
				t.Stop()
				c.stop(errUnavailable("client closed"))
				return
			case <-t.C:
			}
			c.emitConn(ConnListener.OnReconnecting)
			s, err = c.connect(c.ctx)
			if err != nil {
				c.log.Info("im: reconnect failed", "err", err)
				if errors.As(err, &ie) && ie.Code == CodeUnauthenticated {
					c.emitConn(func(l ConnListener) { l.OnDisconnected(err) })
					c.stop(ie)
					return
				}
			}
		}
		backoff = c.opts.backoffMin
	}
}

// jitter returns d randomized to [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// stop records that no more sessions will come; waiting requests fail.
func (c *Client) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stopped:
	default:
		c.stopErr = err
		close(c.stopped)
	}
}

// session returns the current session, waiting for one while disconnected.
func (c *Client) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ready, stopped, stopErr := c.sess, c.ready, c.stopped, c.stopErr
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-stopped:
			if stopErr == nil {
				stopErr = errUnavailable("client closed")
			}
			return nil, stopErr
		default:
		}
		select {
		case <-ready:
		case <-stopped:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// call sends a request and waits for its response. A server error is
// returned as *Error; a lost connection after sending as CodeUnavailable.
// An idempotent request (see retryable) cut off by a lost connection, or
// answered CodeUnavailable (a node shutting down), is sent again on the
// next connection, at most maxRetries times and while ctx lasts.
func (c *Client) call(ctx context.Context, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	retry := c.opts.reconnect && pb.Idempotent(f)
	for attempt := 0; ; {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		resp, err, sent := s.roundTrip(ctx, f)
		if !sent && err == nil {
			continue // the session ended before the request left: wait for the next one
		}
		if err == nil || !retry || attempt == maxRetries || ctx.Err() != nil || !isCode(err, CodeUnavailable) {
			return resp, err
		}
		attempt++
		c.log.Info("im: retrying", "request", f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("body")).Name(), "err", err)
		select {
		case <-s.done: // the next session is what we wait for
		default:
			// Answered Unavailable on a live connection: give the cluster
			// a moment (the partition is moving, the node is draining).
			t := time.NewTimer(jitter(c.opts.backoffMin * time.Duration(attempt)))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, err
			}
		}
	}
}

// maxRetries bounds how often call sends one request again.
const maxRetries = 5

// roundTrip sends f on s. sent is false (with a nil error) if s ended before
// f could be handed to the writer.
func (s *session) roundTrip(ctx context.Context, f *pb.ClientFrame) (resp *pb.ServerFrame, err error, sent bool) {
	select {
	case <-s.done:
		return nil, nil, false
	default:
	}
	b, err := s.prepare(f)
	if err != nil {
		return nil, err, true
	}
	ch := make(chan *pb.ServerFrame, 1)
	s.mu.Lock()
	s.pending[f.Id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, f.Id)
		s.mu.Unlock()
	}()
	if sent, err := s.queue(ctx, outFrame{data: b, acked: f.Acked}); err != nil || !sent {
		s.c.acks.unsent(f.Acked)
		return nil, err, sent
	}
	select {
	case resp = <-ch:
	case <-s.done:
		return nil, s.endErr(), true
	case <-ctx.Done():
		return nil, ctx.Err(), true
	}
	if e := resp.GetError(); e != nil {
		return nil, fromPB(e), true
	}
	return resp, nil, true
}

// send writes f on s without waiting for a response, for a request the
// server does not answer (AckRequest.no_reply). It returns once f is written
// to the connection; CodeUnavailable if s ended before.
func (s *session) send(ctx context.Context, f *pb.ClientFrame) error {
	b, err := s.prepare(f)
	if err != nil {
		return err
	}
	written := make(chan struct{})
	if sent, err := s.queue(ctx, outFrame{data: b, written: written, acked: f.Acked}); err != nil || !sent {
		s.c.acks.unsent(f.Acked)
		if err == nil {
			err = errUnavailable("connection lost")
		}
		return err
	}
	select {
	case <-written:
		return nil
	case <-s.done:
		select {
		case <-written: // written just before the end
			return nil
		default:
			return errUnavailable("connection lost")
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// prepare gives f a new request id and encodes it within the frame limit.
// Unless f is an AckRequest itself, the acknowledgements due ride on it
// (f.Acked), sparing the server an AckRequest frame: they count as sent once
// the writer has written f (outFrame.acked), and are due again if f is not
// queued. If f would not fit with them, it goes alone.
func (s *session) prepare(f *pb.ClientFrame) ([]byte, error) {
	f.Id = s.c.nextID.Add(1)
	f.Acked = nil
	if f.GetAck() == nil {
		f.Acked = s.c.acks.take(anyDue, maxCursorsPerFrame)
	}
	b, err := s.encodeChecked(f)
	if err != nil && len(f.Acked) > 0 {
		s.c.acks.unsent(f.Acked)
		f.Acked = nil
		b, err = s.encodeChecked(f)
	}
	return b, err
}

// encodeChecked encodes f within the frame limit.
func (s *session) encodeChecked(f *pb.ClientFrame) ([]byte, error) {
	b, err := s.encode(f)
	if err != nil {
		return nil, errorf(CodeInvalidArgument, "encode: %v", err)
	}
	if err := s.c.checkFrame(b); err != nil {
		return nil, err
	}
	return b, nil
}

// queue hands o to the writer. sent is false (with a nil error) if s ended
// first.
func (s *session) queue(ctx context.Context, o outFrame) (sent bool, err error) {
	select {
	case s.out <- o:
		return true, nil
	case <-s.done:
		return false, nil
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// endErr is the error of a request cut off by the end of s: the server's
// kickoff reason if there was one, else CodeUnavailable.
func (s *session) endErr() error {
	var ie *Error
	if errors.As(s.err, &ie) { // kickoff reason, or Close
		return ie
	}
	return errUnavailable("connection lost")
}

func (s *session) msgType() websocket.MessageType {
	if s.json {
		return websocket.MessageText
	}
	return websocket.MessageBinary
}

func (s *session) encode(f *pb.ClientFrame) ([]byte, error) {
	if s.json {
		return protojson.Marshal(f)
	}
	return proto.Marshal(f)
}

// badFrameError is a frame that was read whole but could not be decoded.
type badFrameError struct{ err error }

func (e *badFrameError) Error() string { return e.err.Error() }
func (e *badFrameError) Unwrap() error { return e.err }

// readFrame reads and decodes the next frame; a *badFrameError when it
// was read but is not a ServerFrame.
func (s *session) readFrame(ctx context.Context) (*pb.ServerFrame, error) {
	_, r, err := s.conn.Reader(ctx)
	if err != nil {
		return nil, err
	}
	// Read into a pooled buffer: a client of many sessions (a load tool, a
	// backend acting for many users) shares a few instead of allocating
	// each frame.
	f := new(pb.ServerFrame)
	err = wsframe.Read(r, func(msg []byte) error {
		var err error
		if s.json {
			err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(msg, f)
		} else {
			err = proto.Unmarshal(msg, f)
		}
		if err != nil {
			return &badFrameError{err}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// close ends the session with err (first call wins): in-flight requests fail
// and the reader, writer and heartbeat goroutines end. graceful sends a
// WebSocket close frame first.
func (s *session) close(err error, graceful bool) {
	s.endOnce.Do(func() {
		s.err = err
		c := s.c
		c.mu.Lock()
		if c.sess == s {
			c.sess = nil
			c.ready = make(chan struct{})
		}
		close(s.done) // under c.mu: run publishes s only if not done
		c.mu.Unlock()
	})
	if graceful {
		s.conn.Close(websocket.StatusNormalClosure, "")
	} else {
		s.conn.CloseNow()
	}
	s.cancel()
}

func (s *session) reader() {
	defer s.c.wg.Done()
	for {
		// Not s.ctx: the WebSocket library arms a context.AfterFunc per
		// frame read with a cancellable context. close closes the
		// connection, which ends the Read.
		f, err := s.readFrame(context.Background())
		if err != nil {
			var bad *badFrameError
			switch {
			case errors.As(err, &bad):
				s.c.log.Warn("im: bad frame from server", "err", err)
				err = fmt.Errorf("bad frame from server: %w", err)
			case errors.Is(err, io.EOF) || websocket.CloseStatus(err) != -1:
				err = fmt.Errorf("connection closed: %w", err)
			}
			s.close(err, false)
			return
		}
		if f.GetId() != 0 {
			s.mu.Lock()
			ch := s.pending[f.GetId()]
			delete(s.pending, f.GetId())
			s.mu.Unlock()
			if ch != nil {
				ch <- f
			}
			continue
		}
		if k := f.GetKickoff(); k != nil {
			err := error(fromPB(k.GetReason()))
			if k.GetReason() == nil {
				err = errUnavailable("kicked off")
			}
			s.c.log.Info("im: kicked off", "reason", err)
			s.close(err, false)
			return
		}
		s.c.push(f)
	}
}

// writer sends the queued frames. A write that takes longer than
// writeTimeout ends the session; one timer, re-armed per frame, enforces it
// rather than a context with deadline per frame (a timer, a context and the
// WebSocket library's AfterFunc, each allocated per frame). close ends a
// blocked write by closing the connection.
func (s *session) writer() {
	defer s.c.wg.Done()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		select {
		case <-s.done:
			return
		case o := <-s.out:
			if t == nil {
				t = time.AfterFunc(writeTimeout, func() {
					s.close(fmt.Errorf("write: %w", context.DeadlineExceeded), false)
				})
			} else {
				t.Reset(writeTimeout)
			}
			err := s.conn.Write(context.Background(), s.msgType(), o.data)
			t.Stop()
			if err != nil {
				s.close(fmt.Errorf("write: %w", err), false)
				return
			}
			s.lastWrite.Store(time.Now().UnixNano())
			s.c.acks.sent(o.acked)
			if o.written != nil {
				close(o.written)
			}
		}
	}
}

// heartbeater sends a ping when nothing was written for half the heartbeat
// interval, and drops the connection if the ping is not answered in time.
func (s *session) heartbeater() {
	defer s.c.wg.Done()
	tick := max(s.heartbeat/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.lastWrite.Load())) < s.heartbeat/2 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.heartbeat)
		_, err, _ := s.roundTrip(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
		timedOut := ctx.Err() != nil && s.ctx.Err() == nil
		cancel()
		if timedOut {
			s.close(errUnavailable("heartbeat timeout"), false)
			return
		}
		_ = err // a server error still proves the connection alive
	}
}
