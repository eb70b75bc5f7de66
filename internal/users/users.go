// Package users owns user profiles: the nickname and avatar URL a user sets
// for itself, shown to others in read-member lists. Profiles are stored at
// u/<user> and cached in memory once read (including "no profile"), so a
// member-list page costs map lookups. mu is a leaf lock.
package users

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/storage"
)

// Limits of profile fields.
const (
	MaxNickNameLen = 64
	MaxFaceURLLen  = 512
)

// Profile is a user's public profile.
type Profile struct {
	NickName string `json:"nick,omitempty"`
	FaceURL  string `json:"face,omitempty"`
}

// Service stores and serves profiles.
type Service struct {
	// Changed, if set before use, is told the user whose profile Set
	// changed: the server broadcasts it so that the other nodes of a
	// cluster drop their cached copy (Forget).
	Changed func(user string)

	store  storage.Store
	commit *storage.Committer

	mu    sync.RWMutex
	cache map[string]Profile
	gen   uint64 // counts Forget calls: a read that spans one is not cached
}

// New returns a Service on store.
func New(store storage.Store, commit *storage.Committer) *Service {
	return &Service{store: store, commit: commit, cache: make(map[string]Profile)}
}

func key(user string) []byte { return storage.Key("u", user) }

// Set durably replaces user's profile.
func (s *Service) Set(ctx context.Context, user string, p Profile) error {
	if len(p.NickName) > MaxNickNameLen {
		return apierr.InvalidArgument("nick name over %d bytes", MaxNickNameLen)
	}
	if len(p.FaceURL) > MaxFaceURLLen {
		return apierr.InvalidArgument("face URL over %d bytes", MaxFaceURLLen)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.commit.Commit(ctx, func(b *storage.Batch) { b.Set(key(user), raw) }); err != nil {
		return err
	}
	s.mu.Lock()
	s.cache[user] = p
	s.mu.Unlock()
	if s.Changed != nil {
		s.Changed(user)
	}
	return nil
}

// Forget drops user's cached profile (another node changed it); the next
// Get reads storage.
func (s *Service) Forget(user string) {
	s.mu.Lock()
	delete(s.cache, user)
	s.gen++
	s.mu.Unlock()
}

// Get returns user's profile (zero if it never set one). A storage error
// yields the zero profile: names are decoration, not worth failing a list.
func (s *Service) Get(ctx context.Context, user string) Profile {
	return s.GetMany(ctx, []string{user})[0]
}

// GetMany is Get for each of users, in order, reading the store once for
// all those not cached.
func (s *Service) GetMany(ctx context.Context, users []string) []Profile {
	out := make([]Profile, len(users))
	var miss []int // indexes of users not cached
	s.mu.RLock()
	gen := s.gen
	for i, u := range users {
		p, ok := s.cache[u]
		if !ok {
			miss = append(miss, i)
		}
		out[i] = p
	}
	s.mu.RUnlock()
	if len(miss) == 0 {
		return out
	}
	keys := make([][]byte, len(miss))
	for j, i := range miss {
		keys[j] = key(users[i])
	}
	raws, err := s.store.GetMany(ctx, keys)
	if err != nil {
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for j, i := range miss {
		var p Profile
		if raws[j] != nil && json.Unmarshal(raws[j], &p) != nil {
			continue
		}
		out[i] = p
		// A concurrent Set, or a Forget since the read began, wins over it.
		if _, ok := s.cache[users[i]]; !ok && s.gen == gen {
			s.cache[users[i]] = p
		}
	}
	return out
}

// Profiles implements receipts.Profiles.
func (s *Service) Profiles(ctx context.Context, users []string) (nickNames, faceURLs []string) {
	ps := s.GetMany(ctx, users)
	nickNames, faceURLs = make([]string, len(ps)), make([]string, len(ps))
	for i, p := range ps {
		nickNames[i], faceURLs[i] = p.NickName, p.FaceURL
	}
	return nickNames, faceURLs
}
