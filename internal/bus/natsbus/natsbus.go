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
// Subscribers on the publishing node are called directly, on the
// publisher's goroutine as membus does, and the connection is opened with
// NoEcho, so NATS carries a message only to the other nodes. Most pushes
// are for sessions on the node that publishes them (every receipt call
// pushes self_receipts to its reader, whose only session is usually the
// one that called), and a round trip through the NATS server and back
// cost both of them CPU for nothing. NoEcho applies to the whole
// connection: whoever shares it (the cluster's request forwarding) never
// receives what it publishes itself.
//
// Handlers of messages from other nodes run on nats.go's goroutine for the
// subscription; either way one message at a time per subscription, as
// bus.Bus requires. A slow handler makes the subscription's pending queue
// grow and NATS drops messages beyond its limits (a slow consumer),
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
// Lock order: Bus.mu before sub.mu; Publish releases Bus.mu before it calls
// handlers. A handler runs holding its sub.mu, so it must not call
// Unsubscribe on its own subscription (nor Close).
package natsbus

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
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

	mu     sync.RWMutex
	closed bool
	subs   map[*sub]struct{}
	// local holds the subscriptions of each bus subject, copied on write:
	// Publish calls those of its subject after reading the slice under mu.
	local map[string][]*sub
}

type sub struct {
	b       *Bus
	subject string // as given to Subscribe
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
	// Local subscribers are called by Publish itself (see the package doc).
	o.NoEcho = true
	b := &Bus{closedCh: make(chan struct{}), subs: make(map[*sub]struct{}), local: make(map[string][]*sub)}
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

// Publish implements bus.Bus: it hands data to the other nodes through
// NATS, then calls this node's subscribers of subject. nats.go copies data
// into its write buffer before returning. While reconnecting, publishes
// are buffered (up to nats.go's ReconnectBufSize) and fail beyond that; a
// publish that fails reaches no subscriber here either, as it would not
// have come back through NATS.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	closed, local := b.closed, b.local[subject]
	b.mu.RUnlock()
	if closed {
		return bus.ErrClosed
	}
	err := b.nc.Publish(b.prefix+natsSubject(subject), data)
	if errors.Is(err, nats.ErrConnectionClosed) {
		return bus.ErrClosed
	}
	if err != nil {
		return err
	}
	for _, s := range local {
		s.call(data)
	}
	return nil
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
	s := &sub{b: b, subject: subject, handler: handler}
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
	b.local[subject] = append(slices.Clip(b.local[subject]), s)
	b.mu.Unlock()
	// Best effort: on a failure the subscription is still registered
	// locally and nats.go sends it again on reconnect.
	_ = b.nc.FlushTimeout(closeWait)
	return s, nil
}

// deliver takes a message from another node. nats.go gives each message
// its own Data: the handler may keep it.
func (s *sub) deliver(m *nats.Msg) { s.call(m.Data) }

// call runs the handler unless the subscription has ended.
func (s *sub) call(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dead {
		s.handler(data)
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
	if live {
		b.dropLocal(s)
	}
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

// dropLocal removes s from the local subscriptions of its subject. b.mu
// must be held.
func (b *Bus) dropLocal(s *sub) {
	rest := slices.DeleteFunc(slices.Clone(b.local[s.subject]), func(x *sub) bool { return x == s })
	if len(rest) == 0 {
		delete(b.local, s.subject)
	} else {
		b.local[s.subject] = rest
	}
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
	b.subs, b.local = make(map[*sub]struct{}), make(map[string][]*sub)
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
