// Package natsbus is the bus.Bus on core NATS, for the cluster path: every
// node connects to the same NATS server (or cluster), subscribes to the
// subjects of the users it has sessions for, and publishes pushes to the
// users' subjects, reaching their sessions on whatever node.
//
// Delivery is core NATS: at most once, no persistence (JetStream is not
// used). That matches bus.Bus, which is best effort: a session that misses a
// push recovers by sync or pull. A publisher's messages on one subject arrive
// in order, as core NATS keeps the order of one connection's publishes.
//
// Handlers run on nats.go's goroutine for the subscription, one message at a
// time, as bus.Bus requires; a slow handler makes the subscription's pending
// queue grow and NATS drops messages beyond its limits (a slow consumer),
// reported to nats.ErrorHandler if one is set in the options.
//
// Subjects. bus.UserSubject gives "rm.u.<userID>". User IDs are validated to
// [A-Za-z0-9_.@-], so they never contain what NATS forbids or interprets in a
// subject (space, '*', '>'); a '.' in an ID only splits it into more NATS
// tokens, harmless for the exact subjects used here. Any subject that is not
// a plain literal NATS subject (empty token, wildcard, whitespace, control or
// non-ASCII bytes) is still carried safely: it is mapped to
// "_RMX.x<hex of subject>", and subjects that begin with "_RMX." are mapped
// too, so the mapping is one-to-one and a wildcard is never interpreted.
//
// Lock order: Bus.mu before sub.mu. A handler runs holding its sub.mu, so it
// must not call Unsubscribe on its own subscription (nor Close).
package natsbus

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/readmark/readmark/internal/bus"
)

// Bus is a bus.Bus on one NATS connection.
type Bus struct {
	nc       *nats.Conn
	prefix   string        // "" or "<cluster>."
	closedCh chan struct{} // closed by the connection's ClosedCB
	waitCB   bool          // ClosedCB will run on Close

	mu     sync.Mutex
	closed bool
	subs   map[*sub]struct{}
}

type sub struct {
	b       *Bus
	ns      *nats.Subscription
	handler func([]byte)
	// mu serialises handler calls with Unsubscribe and Close, so that no call
	// runs after they return.
	mu   sync.Mutex
	dead bool
}

var _ bus.Bus = (*Bus)(nil)

// closeWait bounds how long Close waits for nats.go to report the
// connection closed.
const closeWait = 5 * time.Second

// Open connects to the NATS server(s) at url (comma-separated for several).
// opts are nats.go options (credentials, TLS, reconnect policy, handlers).
// By default nats.go reconnects up to 60 times, 2 s apart, buffering
// publishes meanwhile; nats.MaxReconnects(-1) retries forever.
func Open(url string, opts ...nats.Option) (*Bus, error) { return OpenPrefixed(url, "", opts...) }

// OpenPrefixed is Open with every subject put under prefix (a literal
// subject such as a cluster name): buses with different prefixes on one
// NATS server never see each other's messages.
func OpenPrefixed(url, prefix string, opts ...nats.Option) (*Bus, error) {
	if prefix != "" && !literal(prefix) {
		return nil, errors.New("natsbus: prefix is not a literal NATS subject: " + prefix)
	}
	o := nats.GetDefaultOptions()
	o.Url = url
	o.Name = "readmark"
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	b := &Bus{closedCh: make(chan struct{}), subs: make(map[*sub]struct{})}
	if prefix != "" {
		b.prefix = prefix + "."
	}
	userCB := o.ClosedCB
	o.ClosedCB = func(nc *nats.Conn) {
		if userCB != nil {
			userCB(nc)
		}
		close(b.closedCh)
	}
	b.waitCB = !o.NoCallbacksAfterClientClose
	nc, err := o.Connect()
	if err != nil {
		return nil, err
	}
	b.nc = nc
	return b, nil
}

// Conn exposes the NATS connection, for metrics and health checks.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Publish implements bus.Bus. nats.go copies data into its write buffer before
// returning. While reconnecting, publishes are buffered (up to nats.go's
// ReconnectBufSize) and fail beyond that.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return bus.ErrClosed
	}
	err := b.nc.Publish(b.prefix+natsSubject(subject), data)
	if errors.Is(err, nats.ErrConnectionClosed) {
		return bus.ErrClosed
	}
	return err
}

// Subscribe implements bus.Bus. It returns once the server has the
// subscription (a flush round trip), so a message another node publishes
// after Subscribe returns is delivered. If the connection is down, the
// subscription is kept and made on reconnect.
func (b *Bus) Subscribe(subject string, handler func(data []byte)) (bus.Subscription, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, bus.ErrClosed
	}
	s := &sub{b: b, handler: handler}
	ns, err := b.nc.Subscribe(b.prefix+natsSubject(subject), s.deliver)
	if err != nil {
		b.mu.Unlock()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil, bus.ErrClosed
		}
		return nil, err
	}
	s.ns = ns
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	// Best effort: on a failure the subscription is still registered
	// locally and nats.go sends it again on reconnect.
	_ = b.nc.FlushTimeout(closeWait)
	return s, nil
}

func (s *sub) deliver(m *nats.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dead {
		// nats.go gives each message its own Data: the handler may keep it.
		s.handler(m.Data)
	}
}

// kill stops handler calls, waiting for one in progress to return.
func (s *sub) kill() {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
}

// Unsubscribe implements bus.Subscription. It is idempotent, and a no-op
// after the bus is closed.
func (s *sub) Unsubscribe() error {
	b := s.b
	b.mu.Lock()
	_, live := b.subs[s]
	delete(b.subs, s)
	b.mu.Unlock()
	if !live {
		// Already unsubscribed, or dropped (and killed) by Close.
		s.kill()
		return nil
	}
	err := s.ns.Unsubscribe()
	s.kill()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		return nil
	}
	return err
}

// Close implements bus.Bus: no handler runs after it returns. Messages
// already published are flushed to the server before the connection closes.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = make(map[*sub]struct{})
	b.mu.Unlock()
	for s := range subs {
		s.kill()
	}
	b.nc.Close()
	if b.waitCB {
		// ClosedCB runs on nats.go's callback goroutine, which exits right
		// after: waiting for it leaves no work of this Bus running.
		select {
		case <-b.closedCh:
		case <-time.After(closeWait):
		}
	}
	return nil
}

// escPrefix starts the NATS subject of a bus subject that is not a plain
// literal NATS subject.
const escPrefix = "_RMX."

// natsSubject maps a bus subject to a NATS subject, one-to-one: a plain
// literal subject is itself; any other, and any beginning with escPrefix, is
// escPrefix, "x" and the subject in hex (never an empty token).
func natsSubject(s string) string {
	if literal(s) && !strings.HasPrefix(s, escPrefix) {
		return s
	}
	return escPrefix + "x" + hex.EncodeToString([]byte(s))
}

// literal reports whether s is a NATS subject that matches only itself:
// non-empty dot-separated tokens of printable ASCII, without the wildcards
// '*' and '>'.
func literal(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c >= 0x7f, c == '*', c == '>':
			return false
		case c == '.' && s[i+1] == '.':
			return false
		}
	}
	return true
}
