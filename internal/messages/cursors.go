package messages

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/readmark/readmark/internal/storage"
)

// cursors are the per-user, per-conversation seqs delivered to any of the
// user's sessions: where sync starts for a client that brings no cursor of
// its own. They are kept in memory and written every CursorFlush; a crash
// may lose the last interval, which makes sync repeat (never skip) messages.
// After a flush, offline users' cursors leave memory (they reload from the
// store), so memory follows the online users, not all users ever seen.
type cursors struct {
	mu    sync.Mutex
	m     map[string]map[string]uint64 // user → conversation → seq
	dirty map[cursorKey]struct{}
}

type cursorKey struct{ user, conv string }

func cursorStoreKey(user, conv string) []byte { return storage.Key("cur", user, conv) }

func (c *cursors) advance(user, conv string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byConv := c.m[user]
	if byConv == nil {
		byConv = make(map[string]uint64)
		c.m[user] = byConv
	}
	if seq > byConv[conv] {
		byConv[conv] = seq
		c.dirty[cursorKey{user, conv}] = struct{}{}
	}
}

// get returns the cursor, loading it from the store on first use.
func (c *cursors) get(ctx context.Context, s storage.Store, user, conv string) uint64 {
	c.mu.Lock()
	seq, ok := c.m[user][conv]
	c.mu.Unlock()
	if ok {
		return seq
	}
	v, err := s.Get(ctx, cursorStoreKey(user, conv))
	if err != nil {
		return 0
	}
	stored, _ := binary.Uvarint(v)
	c.advance(user, conv, stored)
	c.mu.Lock()
	delete(c.dirty, cursorKey{user, conv})
	seq = c.m[user][conv]
	c.mu.Unlock()
	return seq
}

// takeDirty returns the writes of every cursor changed since the last call.
func (c *cursors) takeDirty() []storage.Op {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := make([]storage.Op, 0, len(c.dirty))
	for k := range c.dirty {
		ops = append(ops, storage.Op{Key: cursorStoreKey(k.user, k.conv), Value: binary.AppendUvarint(nil, c.m[k.user][k.conv])})
	}
	clear(c.dirty)
	return ops
}

func (s *Service) flushLoop() {
	defer s.done.Done()
	t := time.NewTicker(s.cfg.CursorFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.flushCursors()
		case <-s.stop:
			// deliverLoop may still be advancing cursors; flush after it ends.
			return
		}
	}
}

func (s *Service) flushCursors() {
	ops := s.cursors.takeDirty()
	if len(ops) > 0 {
		if err := s.cfg.Store.Apply(context.Background(), &storage.Batch{Ops: ops}, false); err != nil {
			s.cfg.Logger.Warn("writing delivery cursors", "err", err)
			return // keep them in memory; they are still the newest
		}
	}
	s.cursors.evictOffline(s.cfg.Online)
}

// evictOffline drops the cursors of users not online that have nothing
// unwritten.
func (c *cursors) evictOffline(online func(string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for user, byConv := range c.m {
		if online(user) {
			continue
		}
		dirty := false
		for conv := range byConv {
			if _, ok := c.dirty[cursorKey{user, conv}]; ok {
				dirty = true
				break
			}
		}
		if !dirty {
			delete(c.m, user)
		}
	}
}
