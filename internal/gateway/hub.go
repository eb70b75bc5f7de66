package gateway

import (
	"log/slog"
	"sync"

	"github.com/readmark/readmark/internal/bus"
)

// Hub tracks which users have sessions on this node, subscribes to their
// push subjects on the bus, and hands pushes to their sessions.
type Hub struct {
	bus    bus.Bus
	logger *slog.Logger

	mu    sync.RWMutex
	users map[string]*userSessions
}

type userSessions struct {
	sessions map[*session]struct{}
	sub      bus.Subscription
}

// NewHub returns an empty hub on b.
func NewHub(b bus.Bus, logger *slog.Logger) *Hub {
	return &Hub{bus: b, logger: logger, users: make(map[string]*userSessions)}
}

// Online reports whether user has a session on this node.
func (h *Hub) Online(user string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.users[user] != nil
}

func (h *Hub) add(s *session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	us := h.users[s.user]
	if us == nil {
		us = &userSessions{sessions: make(map[*session]struct{})}
		user := s.user
		sub, err := h.bus.Subscribe(bus.UserSubject(user), func(data []byte) { h.deliver(user, data) })
		if err != nil {
			return err
		}
		us.sub = sub
		h.users[user] = us
	}
	us.sessions[s] = struct{}{}
	return nil
}

func (h *Hub) remove(s *session) {
	h.mu.Lock()
	us := h.users[s.user]
	if us == nil {
		h.mu.Unlock()
		return
	}
	delete(us.sessions, s)
	var sub bus.Subscription
	if len(us.sessions) == 0 {
		delete(h.users, s.user)
		sub = us.sub
	}
	h.mu.Unlock()
	if sub != nil {
		if err := sub.Unsubscribe(); err != nil {
			h.logger.Warn("unsubscribing", "user", s.user, "err", err)
		}
	}
}

func (h *Hub) deliver(user string, data []byte) {
	except, frame, err := bus.OpenEnvelope(data)
	if err != nil {
		h.logger.Warn("dropping push", "err", err)
		return
	}
	h.mu.RLock()
	us := h.users[user]
	var targets []*session
	if us != nil {
		targets = make([]*session, 0, len(us.sessions))
		for s := range us.sessions {
			if s.id != except {
				targets = append(targets, s)
			}
		}
	}
	h.mu.RUnlock()
	for _, s := range targets {
		s.push(frame)
	}
}
