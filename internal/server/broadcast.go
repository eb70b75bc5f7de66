package server

import (
	"context"

	"github.com/readmark/readmark/internal/users"
)

// Subjects of the broadcasts that keep every node's caches of shared data
// (admin settings, profiles) current after a change on any node.
const (
	settingsSubject = "rm.cast.settings"
	profileSubject  = "rm.cast.profile"
)

// shareCaches makes a change of the settings or of a profile on one node
// reach the caches of every node, over the bus (on the embedded default
// the node hears its own broadcasts, which changes nothing). The bus is
// best effort: a node that misses a broadcast serves the old value until
// the next change or its restart.
func (s *Server) shareCaches(profiles *users.Service) error {
	publish := func(subject string, data []byte) {
		if err := s.bus.Publish(context.Background(), subject, data); err != nil {
			s.cfg.Logger.Warn("broadcasting a cache change", "subject", subject, "err", err)
		}
	}
	s.settings.Changed = func(raw []byte) { publish(settingsSubject, raw) }
	profiles.Changed = func(user string) { publish(profileSubject, []byte(user)) }
	if _, err := s.bus.Subscribe(settingsSubject, func(data []byte) {
		if err := s.settings.Apply(data); err != nil {
			s.cfg.Logger.Warn("applying broadcast settings", "err", err)
		}
	}); err != nil {
		return err
	}
	_, err := s.bus.Subscribe(profileSubject, func(data []byte) { profiles.Forget(string(data)) })
	return err
}
