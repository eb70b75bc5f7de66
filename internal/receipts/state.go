package receipts

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/readmark/readmark/internal/storage"
)

type msgKey struct {
	conv string
	seq  uint64
}

// readState is the in-memory read state of one message.
type readState struct {
	key msgKey
	msg Msg // immutable after creation

	loaded  chan struct{} // closed once the state is loaded (or failed)
	loadErr error         // set before loaded is closed

	mu sync.RWMutex
	// Group messages.
	read     *roaring.Bitmap // ordinals of members who read it
	count    uint64          // |read ∩ present| as of countDep, if countOK
	countDep uint64          // RosterSnapshot.Departures the count was computed under
	countOK  bool
	// unsettled holds the ordinals in read set by Send calls whose commit
	// has not ended yet (nil: none): read minus unsettled is durable.
	unsettled *roaring.Bitmap
	// C2C messages: when the receiver's receipt was recorded (ms); 0 = none.
	readAt int64
	// dirty: changed since last serialized into a batch. Set by prepare,
	// cleared by the batch's seal (commit goroutine).
	dirty bool

	shard *cacheShard // immutable
	// Guarded by the shard's mu.
	pins int
	elem *list.Element
}

func (st *readState) isGroup() bool { return st.msg.GroupID != "" }

// unsettle removes ord from st.unsettled. st.mu must be held.
func (st *readState) unsettle(ord uint32) {
	if st.unsettled == nil {
		return
	}
	st.unsettled.Remove(ord)
	if st.unsettled.IsEmpty() {
		st.unsettled = nil
	}
}

// counts returns (read, unread) for a group message under snap. senderOrd
// is the sender's current ordinal, if a member. The caller must not hold
// st.mu.
func (st *readState) counts(snap RosterSnapshot, senderOrd uint32, senderOK bool) (uint64, uint64) {
	st.mu.RLock()
	ok := st.countOK && st.countDep == snap.Departures
	read := st.count
	st.mu.RUnlock()
	if !ok {
		st.mu.Lock()
		if !st.countOK || st.countDep != snap.Departures {
			st.count = st.read.AndCardinality(snap.Present)
			st.countDep = snap.Departures
			st.countOK = true
		}
		read = st.count
		st.mu.Unlock()
	}
	w := st.msg.Watermark
	var addressed uint64
	if w > 0 {
		addressed = snap.Present.Rank(w - 1)
	}
	if senderOK && senderOrd < w && addressed > 0 {
		addressed--
	}
	if read > addressed { // only if the roster is inconsistent
		return read, 0
	}
	return read, addressed - read
}

const cacheShards = 16

// stateCache is a sharded LRU of read states.
type stateCache struct {
	store  storage.Store
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	m   map[msgKey]*readState
	lru list.List // front = most recent
	cap int
}

func newStateCache(store storage.Store, capacity int) *stateCache {
	c := &stateCache{store: store, seed: maphash.MakeSeed()}
	per := (capacity + cacheShards - 1) / cacheShards
	for i := range c.shards {
		c.shards[i].m = make(map[msgKey]*readState)
		c.shards[i].cap = max(per, 1)
	}
	return c
}

func (c *stateCache) shard(k msgKey) *cacheShard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.conv)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], k.seq)
	h.Write(b[:])
	return &c.shards[h.Sum64()%cacheShards]
}

// acquire returns the pinned state of m, loading it from the Store on a
// miss. Every successful acquire must be paired with release.
func (c *stateCache) acquire(ctx context.Context, m Msg) (*readState, error) {
	st, fresh := c.pin(m)
	if fresh {
		v, err := c.store.Get(ctx, stateKey(m))
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
		c.finishLoad(st, v, err)
	}
	if err := c.wait(st); err != nil {
		return nil, err
	}
	return st, nil
}

// acquireAll is acquire for each of msgs, in order, reading the states it
// misses with one GetMany: one round trip whatever their number. On
// success every returned state must be released.
func (c *stateCache) acquireAll(ctx context.Context, msgs []Msg) ([]*readState, error) {
	sts := make([]*readState, len(msgs))
	var (
		fresh []*readState
		keys  [][]byte
	)
	for i, m := range msgs {
		var isNew bool
		if sts[i], isNew = c.pin(m); isNew {
			fresh = append(fresh, sts[i])
			keys = append(keys, stateKey(m))
		}
	}
	// Load what this call added before waiting for anything: a state
	// another call is loading never waits for this one.
	if len(fresh) > 0 {
		vs, err := c.store.GetMany(ctx, keys)
		for j, st := range fresh {
			var v []byte
			if err == nil {
				v = vs[j]
			}
			c.finishLoad(st, v, err)
		}
	}
	var failed error
	for i, st := range sts {
		if err := c.wait(st); err != nil {
			failed, sts[i] = err, nil
		}
	}
	if failed != nil {
		c.releaseAll(slices.DeleteFunc(sts, func(st *readState) bool { return st == nil }))
		return nil, failed
	}
	return sts, nil
}

// pin returns m's state, pinned, and whether this call added it: then the
// caller must load it (finishLoad), and everyone else waits for that.
func (c *stateCache) pin(m Msg) (*readState, bool) {
	k := msgKey{m.Conv, m.Seq}
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.m[k]; st != nil {
		st.pins++
		sh.lru.MoveToFront(st.elem)
		return st, false
	}
	st := &readState{key: k, msg: m, loaded: make(chan struct{}), pins: 1, shard: sh}
	st.elem = sh.lru.PushFront(st)
	sh.m[k] = st
	sh.evictLocked()
	return st, true
}

// peek returns m's state if it is cached and loaded, without pinning or
// loading it: a state evicted meanwhile still holds what it held.
func (c *stateCache) peek(m Msg) *readState {
	k := msgKey{m.Conv, m.Seq}
	sh := c.shard(k)
	sh.mu.Lock()
	st := sh.m[k]
	sh.mu.Unlock()
	if st == nil {
		return nil
	}
	select {
	case <-st.loaded:
		if st.loadErr != nil {
			return nil
		}
		return st
	default:
		return nil
	}
}

// finishLoad sets up a state added by pin from its stored value v (nil:
// none stored) or the failed read's err, and wakes those waiting for it. A
// failed state leaves the cache; its holders release it (wait does).
func (c *stateCache) finishLoad(st *readState, v []byte, err error) {
	if err != nil {
		err = fmt.Errorf("receipts: load read state: %w", err)
	} else {
		err = st.decode(v)
	}
	st.loadErr = err
	close(st.loaded)
	if err != nil {
		sh := st.shard
		sh.mu.Lock()
		if sh.m[st.key] == st {
			delete(sh.m, st.key)
			sh.lru.Remove(st.elem)
		}
		sh.mu.Unlock()
	}
}

// wait waits until the pinned st is loaded; if its load failed, it
// releases st and returns the error.
func (c *stateCache) wait(st *readState) error {
	<-st.loaded
	if st.loadErr != nil {
		c.release(st)
		return st.loadErr
	}
	return nil
}

func (c *stateCache) releaseAll(sts []*readState) {
	for _, st := range sts {
		c.release(st)
	}
}

func (c *stateCache) release(st *readState) {
	sh := st.shard
	sh.mu.Lock()
	st.pins--
	if st.pins == 0 && len(sh.m) > sh.cap {
		sh.evictLocked()
	}
	sh.mu.Unlock()
}

// evictLocked drops unpinned states from the cold end while over capacity.
// Pinned states are skipped (a bounded number of them), so the shard may
// briefly exceed its capacity. sh.mu must be held.
func (sh *cacheShard) evictLocked() {
	e := sh.lru.Back()
	for skipped := 0; len(sh.m) > sh.cap && e != nil && skipped < 64; {
		st := e.Value.(*readState)
		prev := e.Prev()
		if st.pins == 0 {
			sh.lru.Remove(e)
			delete(sh.m, st.key)
		} else {
			skipped++
		}
		e = prev
	}
}

// decode sets a new state from its stored value v (stateKey; nil if none).
func (st *readState) decode(v []byte) error {
	if st.isGroup() {
		if v == nil {
			st.read = roaring.New()
			return nil
		}
		rb, err := decodeReadSet(v)
		if err != nil {
			return err
		}
		st.read = rb
		return nil
	}
	if v == nil {
		return nil
	}
	t, n := binary.Uvarint(v)
	if n <= 0 {
		return fmt.Errorf("receipts: malformed c2c receipt")
	}
	st.readAt = max(int64(t), 1)
	return nil
}

// drop forgets the states of the conversations for which in is true. No
// operation on them may be in flight (their states would be unpinned
// later, harmlessly, but could be served stale afterwards).
func (c *stateCache) drop(in func(conv string) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, st := range sh.m {
			if in(k.conv) {
				sh.lru.Remove(st.elem)
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}
