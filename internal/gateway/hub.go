package gateway

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/bus"
)

// HubConfig holds the per-user limits a Hub enforces on this node.
type HubConfig struct {
	Logger *slog.Logger
	// MaxSessionsPerUser bounds a user's sessions on this node (0 = 16);
	// one more login is refused with CodeSessionLimit.
	MaxSessionsPerUser int
	// RateLimit and RateBurst bound the requests per second of each user,
	// shared by all of the user's sessions on this node (0 = 2,000/s with
	// bursts of 4,000), so that more sessions do not buy more requests.
	RateLimit rate.Limit
	RateBurst int
}

// Hub tracks which users have sessions on this node, subscribes to their
// push subjects and to bus.FanSubject on the bus, hands pushes to their
// sessions, and holds the per-user limits (sessions, request rate).
type Hub struct {
	bus bus.Bus
	cfg HubConfig

	mu    sync.RWMutex
	users map[string]*userSessions
	// resting keeps the rate limiter of a user whose last session closed
	// before the bucket refilled, so that reconnecting does not refill it;
	// restingQ drops each once it must be full again, in closing order.
	resting  map[string]*rate.Limiter
	restingQ []restingLimit
	// fan is the subscription to bus.FanSubject, from the first session on
	// (kept until the bus closes: one subscription, whatever the churn).
	fan bus.Subscription
}

type restingLimit struct {
	user  string
	limit *rate.Limiter
	full  time.Time // by then the bucket has refilled, whatever it held
}

type userSessions struct {
	// A slice, not a set: a user has a few sessions (MaxSessionsPerUser),
	// and every push ranges over them; ranging over a map costs more than
	// the push itself when the user has one.
	sessions []*session
	sub      bus.Subscription
	limit    *rate.Limiter // shared by the sessions
	// subscribed is closed once the add that created the entry has
	// subscribed to the user's subject (subErr: it failed). It does so
	// without the hub's lock, which must not wait for the bus (on NATS a
	// round trip: every login and push of the node would queue behind
	// it); the user's other adds wait for it instead.
	subscribed chan struct{}
	subErr     error
}

// NewHub returns an empty hub on b.
func NewHub(b bus.Bus, cfg HubConfig) *Hub {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxSessionsPerUser <= 0 {
		cfg.MaxSessionsPerUser = 16
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 2000
	}
	if cfg.RateBurst == 0 {
		cfg.RateBurst = 4000
	}
	return &Hub{bus: b, cfg: cfg, users: make(map[string]*userSessions), resting: make(map[string]*rate.Limiter)}
}

// Online reports whether user has a session on this node.
func (h *Hub) Online(user string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.users[user] != nil
}

// Reaches reports whether user has a session on this node other than
// except (a session ID; 0 = none): see bus.Pusher.Reaches.
func (h *Hub) Reaches(user string, except uint64) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	us := h.users[user]
	if us == nil {
		return false
	}
	for _, s := range us.sessions {
		if s.id != except {
			return true
		}
	}
	return false
}

// add registers s and returns the user's rate limiter; an *apierr.Error
// with CodeSessionLimit when the user has the most sessions allowed. It
// returns once the user's subject is subscribed to.
func (h *Hub) add(s *session) (*rate.Limiter, error) {
	user := s.user
	h.mu.Lock()
	if h.fan == nil { // once per hub
		sub, err := h.bus.Subscribe(bus.FanSubject, h.deliverFan)
		if err != nil {
			h.mu.Unlock()
			return nil, err
		}
		h.fan = sub
	}
	us := h.users[user]
	first := us == nil
	if first {
		h.pruneResting(time.Now())
		limit := h.resting[user]
		if limit == nil {
			limit = rate.NewLimiter(h.cfg.RateLimit, h.cfg.RateBurst)
		}
		delete(h.resting, user)
		us = &userSessions{limit: limit, subscribed: make(chan struct{})}
		h.users[user] = us
	}
	if len(us.sessions) >= h.cfg.MaxSessionsPerUser {
		h.mu.Unlock()
		return nil, apierr.New(pb.CodeSessionLimit, "user %q already has %d sessions on this server, the most allowed", user, len(us.sessions))
	}
	us.sessions = append(us.sessions, s)
	h.mu.Unlock()

	// The entry outlives the subscribing: s is removed only after add
	// returns (a session removes itself once logged in), and so are the
	// user's other sessions, whose adds wait for it.
	if first {
		sub, err := h.bus.Subscribe(bus.UserSubject(user), func(data []byte) { h.deliver(user, data) })
		h.mu.Lock()
		us.sub, us.subErr = sub, err
		h.mu.Unlock()
		close(us.subscribed)
	} else {
		<-us.subscribed
	}
	if us.subErr != nil {
		h.remove(s)
		return nil, us.subErr
	}
	return us.limit, nil
}

func (h *Hub) remove(s *session) {
	h.mu.Lock()
	us := h.users[s.user]
	if us == nil {
		h.mu.Unlock()
		return
	}
	if i := slices.Index(us.sessions, s); i >= 0 {
		us.sessions = slices.Delete(us.sessions, i, i+1)
	}
	var sub bus.Subscription
	if len(us.sessions) == 0 {
		delete(h.users, s.user)
		sub = us.sub // nil if subscribing failed
		h.rest(s.user, us.limit, time.Now())
	}
	h.mu.Unlock()
	if sub != nil {
		if err := sub.Unsubscribe(); err != nil {
			h.cfg.Logger.Warn("unsubscribing", "user", s.user, "err", err)
		}
	}
}

// rest keeps the limiter of a user who has no session left until its
// bucket must have refilled. Lock must be held.
func (h *Hub) rest(user string, limit *rate.Limiter, now time.Time) {
	h.pruneResting(now)
	if limit.Limit() == rate.Inf || limit.TokensAt(now) >= float64(limit.Burst()) {
		return
	}
	refill := time.Duration(float64(limit.Burst()) / float64(limit.Limit()) * float64(time.Second))
	h.resting[user] = limit
	h.restingQ = append(h.restingQ, restingLimit{user: user, limit: limit, full: now.Add(refill)})
}

// pruneResting forgets the limiters that have refilled. Every entry waits
// the same refill time, so the queue is in order of full. Lock must be
// held.
func (h *Hub) pruneResting(now time.Time) {
	n := 0
	for ; n < len(h.restingQ) && !h.restingQ[n].full.After(now); n++ {
		if r := h.restingQ[n]; h.resting[r.user] == r.limit {
			delete(h.resting, r.user)
		}
	}
	clear(h.restingQ[:n]) // let the popped limiters go
	h.restingQ = h.restingQ[n:]
}

// deliver runs on the bus's goroutine, which other users' pushes share: it
// only queues one shared push to each session. Encoding for JSON sessions
// happens later, on those sessions' writers.
func (h *Hub) deliver(user string, data []byte) {
	except, frame, err := bus.OpenEnvelope(data)
	if err != nil {
		h.cfg.Logger.Warn("dropping push", "err", err)
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if us := h.users[user]; us != nil {
		us.push(newPush(frame), except)
	}
}

// deliverFan is deliver for a push to several users: one push, shared by
// the sessions of all of them on this node.
func (h *Hub) deliverFan(data []byte) {
	except, frame, users, err := bus.OpenFan(data)
	if err != nil {
		h.cfg.Logger.Warn("dropping push", "err", err)
		return
	}
	var p *push
	h.mu.RLock()
	defer h.mu.RUnlock()
	for u := range users.All() {
		us := h.users[string(u)]
		if us == nil {
			continue
		}
		if p == nil {
			p = newPush(frame)
		}
		us.push(p, except)
	}
}

// push queues p to each session but except. Hub.mu must be held.
func (us *userSessions) push(p *push, except uint64) {
	for _, s := range us.sessions {
		if s.id != except {
			s.push(p)
		}
	}
}

// push is one push frame as every session of this node gets it: the binary
// encoding from the bus, and the JSON encoding, made once by the first JSON
// session's writer that needs it and shared with the others.
type push struct {
	bin  []byte
	at   time.Time        // when it reached this node's hub
	kind protowire.Number // the ServerFrame body field it carries

	once    sync.Once
	json    []byte
	err     error
	jsonLen atomic.Int64 // len(json), readable without the Once
}

// newPush wraps an encoded push frame that has just come from the bus. A
// push has neither id nor error, so its first field is its body.
func newPush(frame []byte) *push {
	kind, _, _ := protowire.ConsumeTag(frame)
	return &push{bin: frame, at: time.Now(), kind: kind}
}

// encoded returns the push in the binary or the JSON encoding.
func (p *push) encoded(json bool, m *Metrics) ([]byte, error) {
	if !json {
		return p.bin, nil
	}
	p.once.Do(func() {
		m.jsonEncoded()
		f := &pb.ServerFrame{}
		if p.err = proto.Unmarshal(p.bin, f); p.err == nil {
			p.json, p.err = protojson.Marshal(f)
		}
		p.jsonLen.Store(int64(len(p.json)))
	})
	return p.json, p.err
}

// size is what the push costs the queue of a session of the given
// encoding: the JSON size once a writer has made it, else the binary size.
func (p *push) size(json bool) int {
	if n := p.jsonLen.Load(); json && n > 0 {
		return int(n)
	}
	return len(p.bin)
}
