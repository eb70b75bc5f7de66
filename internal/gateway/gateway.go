package gateway

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/dispatch"
	"github.com/readmark/readmark/internal/workers"
)

// Subprotocols: the major protocol version is part of the name.
const (
	SubprotocolProto = "readmark.v1.proto"
	SubprotocolJSON  = "readmark.v1.json"
	// Path is the WebSocket endpoint.
	Path = "/v1/ws"
)

// Limits of the transport.
const (
	MaxFrameBytes    = 64 * 1024
	DefaultHeartbeat = 30 * time.Second
	// DefaultMaxInFlight bounds a session's requests whose response is
	// not yet written: with responses of up to a few MiB, it is what bounds
	// the memory a client that does not read can make the server hold.
	DefaultMaxInFlight = 32
	// DefaultMaxQueueBytes is a session's default output queue bound.
	DefaultMaxQueueBytes = 4 << 20
	loginTimeout         = 10 * time.Second
	writeTimeout         = 10 * time.Second
	// writeBatchBytes bounds what the writer takes from the queue at once
	// (at least one frame), so that written bytes leave the queue's
	// account soon.
	writeBatchBytes = 256 << 10
	// writerIdle is how often idle session writers are swept: a writer
	// that waits through two sweeps for frames retires (session.writer).
	writerIdle = 5 * time.Second
)

// Config wires a Gateway.
type Config struct {
	// Authenticate checks a login token and returns the user it was minted for.
	Authenticate func(token string) (userID string, err error)
	// Hub holds the per-user limits (sessions per user, request rate).
	Hub        *Hub
	Dispatcher Dispatcher
	Metrics    *Metrics
	Logger     *slog.Logger
	// Heartbeat is what clients are told to keep to; a session silent for
	// twice as long is closed.
	Heartbeat time.Duration
	// MaxInFlight bounds a session's requests whose response is not yet
	// written to the socket; more wait, unread (0 = DefaultMaxInFlight).
	MaxInFlight int
	// MaxQueueBytes bounds a session's encoded output waiting to be written,
	// responses and pushes together (0 = DefaultMaxQueueBytes); a push over
	// it closes the session as a slow consumer.
	MaxQueueBytes int
	// MaxConnections bounds the WebSocket connections (logged in or not);
	// one more is refused before the upgrade with HTTP 503 and
	// CodeConnectionLimit (0 = no bound).
	MaxConnections int
}

// Dispatcher runs sessions' requests: package dispatch's, in the server.
type Dispatcher interface {
	// Do runs request f for caller. ctx is cancelled once the session's
	// connection is gone, for the read-only requests' sake
	// (pb.ReadOnly): Do must run a request that writes to its end anyway.
	Do(ctx context.Context, caller dispatch.Caller, f *pb.ClientFrame) (*pb.ServerFrame, error)
	// SessionEnded is told of every logged-in session that ended.
	SessionEnded(caller dispatch.Caller)
}

// Gateway serves the client WebSocket endpoint.
type Gateway struct {
	cfg      Config
	nextID   atomic.Uint64
	draining atomic.Bool
	conns    atomic.Int64   // WebSocket connections being served
	wg       sync.WaitGroup // one per session
	workers  workers.Pool   // run the sessions' requests

	// sweep is closed at the next sweep of idle writers; nil while none
	// waits for one. A writer waiting for frames reads it with one atomic
	// load; the first to find none arms a timer.
	sweep      atomic.Pointer[chan struct{}]
	sweepMu    sync.Mutex
	writerIdle time.Duration // writerIdle; shorter in tests

	mu       sync.Mutex
	sessions map[*session]struct{}
}

// New returns a Gateway.
func New(cfg Config) *Gateway {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gateway{cfg: cfg, sessions: make(map[*session]struct{}), writerIdle: writerIdle}
	// Session IDs must not repeat across nodes either: a request forwarded
	// to another node names its session, which pushes then skip.
	g.nextID.Store(rand.Uint64() &^ 0xffffffff)
	return g
}

// ServeHTTP accepts a WebSocket and starts its session. The session runs
// on a goroutine of its own and the handler returns: until it does,
// net/http keeps the upgrade's request, response and their buffers.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	if n := g.conns.Add(1); g.cfg.MaxConnections > 0 && n > int64(g.cfg.MaxConnections) {
		g.conns.Add(-1)
		w.Header().Set("Connection", "close") // give the descriptor back at once
		apierr.WriteHTTP(w, apierr.New(pb.CodeConnectionLimit, "the server has its most connections (%d); retry later", g.cfg.MaxConnections))
		return
	}
	s := g.accept(w, r)
	if s == nil {
		g.conns.Add(-1)
		return
	}
	g.wg.Add(1)
	g.track(s)
	go func() {
		defer g.wg.Done()
		defer g.conns.Add(-1)
		defer g.untrack(s)
		s.run()
	}()
}

// accept upgrades the connection and returns its session, not yet running;
// nil when the upgrade failed or no subprotocol was agreed.
func (g *Gateway) accept(w http.ResponseWriter, r *http.Request) *session {
	cw := &corkingWriter{ResponseWriter: w, m: g.cfg.Metrics}
	conn, err := websocket.Accept(cw, r, &websocket.AcceptOptions{
		Subprotocols:       []string{SubprotocolProto, SubprotocolJSON},
		InsecureSkipVerify: true, // clients are apps, not browsers of this origin; auth is the token
	})
	if err != nil {
		return nil
	}
	cw.readDirect()
	proto := conn.Subprotocol()
	if proto == "" {
		conn.Close(websocket.StatusPolicyViolation, "subprotocol "+SubprotocolProto+" or "+SubprotocolJSON+" required")
		return nil
	}
	conn.SetReadLimit(MaxFrameBytes)
	s := newSession(r.Context(), g, conn, proto == SubprotocolJSON)
	s.cork = cw.conn
	return s
}

// Shutdown stops accepting sessions, tells every session the server is
// going away (Kickoff with CodeUnavailable) once its in-flight requests are
// answered, and waits for the sessions to end or ctx to expire, when the
// remaining ones are cut.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	var drains sync.WaitGroup
	for _, s := range g.all() {
		drains.Go(s.drain)
	}
	done := make(chan struct{})
	go func() {
		drains.Wait()
		g.wg.Wait()
		g.workers.Stop() // the sessions have ended: no request starts any more
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range g.all() {
			s.close(websocket.StatusGoingAway, "server shutting down")
		}
		<-done
		return ctx.Err()
	}
}

// writerSweep returns a channel closed at the next sweep of idle writers,
// arming the sweep if none is due.
func (g *Gateway) writerSweep() <-chan struct{} {
	if ch := g.sweep.Load(); ch != nil {
		return *ch
	}
	g.sweepMu.Lock()
	defer g.sweepMu.Unlock()
	if ch := g.sweep.Load(); ch != nil {
		return *ch
	}
	ch := make(chan struct{})
	g.sweep.Store(&ch)
	time.AfterFunc(g.writerIdle, func() {
		g.sweep.Store(nil)
		close(ch)
	})
	return ch
}

func (g *Gateway) track(s *session) {
	g.mu.Lock()
	g.sessions[s] = struct{}{}
	g.mu.Unlock()
}

func (g *Gateway) untrack(s *session) {
	g.mu.Lock()
	delete(g.sessions, s)
	g.mu.Unlock()
}

// all returns every session, logged in or not.
func (g *Gateway) all() []*session {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*session, 0, len(g.sessions))
	for s := range g.sessions {
		out = append(out, s)
	}
	return out
}
