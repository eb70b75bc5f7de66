// Package membus is the in-process bus.Bus: Publish calls the subscribers'
// handlers directly on the publishing goroutine.
package membus

import (
	"context"
	"sync"

	"github.com/readmark/readmark/internal/bus"
)

// Bus is an in-process bus.Bus.
type Bus struct {
	mu     sync.RWMutex
	subs   map[string][]*sub
	closed bool
}

type sub struct {
	b       *Bus
	subject string
	handler func([]byte)
	// mu serialises handler calls with Unsubscribe, so that no call runs after
	// Unsubscribe returns.
	mu   sync.Mutex
	dead bool
}

var _ bus.Bus = (*Bus)(nil)

// New returns an empty bus.
func New() *Bus { return &Bus{subs: make(map[string][]*sub)} }

// Publish implements bus.Bus.
func (b *Bus) Publish(_ context.Context, subject string, data []byte) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return bus.ErrClosed
	}
	subs := b.subs[subject]
	b.mu.RUnlock()
	for _, s := range subs {
		s.mu.Lock()
		if !s.dead {
			s.handler(data)
		}
		s.mu.Unlock()
	}
	return nil
}

// Subscribe implements bus.Bus.
func (b *Bus) Subscribe(subject string, handler func([]byte)) (bus.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, bus.ErrClosed
	}
	s := &sub{b: b, subject: subject, handler: handler}
	// Copy on write: Publish iterates a slice it read under the read lock.
	old := b.subs[subject]
	subs := make([]*sub, len(old), len(old)+1)
	copy(subs, old)
	b.subs[subject] = append(subs, s)
	return s, nil
}

// Unsubscribe implements bus.Subscription.
func (s *sub) Unsubscribe() error {
	b := s.b
	b.mu.Lock()
	old := b.subs[s.subject]
	subs := make([]*sub, 0, len(old))
	for _, x := range old {
		if x != s {
			subs = append(subs, x)
		}
	}
	if len(subs) == 0 {
		delete(b.subs, s.subject)
	} else {
		b.subs[s.subject] = subs
	}
	b.mu.Unlock()
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
	return nil
}

// Close implements bus.Bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.subs = make(map[string][]*sub)
	return nil
}
