package messages

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/readmark/readmark/internal/storage"
)

// cursors are the delivery cursors: per (user, device, conversation) the
// highest seq the device acknowledged (SyncRequest cursors, AckRequest),
// where its sync starts. Nothing else moves them, so a sync page or a push
// that never reached the device is delivered again. Per user and
// conversation, the baseline is the highest seq any device of the user
// acknowledged: a device the server has never seen starts there, so a new
// installation does not get the whole history as new messages.
//
// Stored: curd/<user>/<device>/<conv> and dev/<user>/<device> (the device is
// known), and cur/<user>/<conv>, the baseline where no device's cursor holds
// it: most baselines equal the cursor of the device that moved them (a user
// with one device always), so the flush leaves them out, halving its
// writes, and a load takes the larger of cur and every device's cursor
// (loadUser). Kept in memory and written
// every CursorFlush; a crash may lose the last interval, which makes sync
// repeat (never skip) messages. A device registered in that interval starts
// again from the baseline. Not fenced (users are not partitioned: the node
// serving a device writes its cursors): a late write from a node the device
// left moves a cursor back, again a repeat, never a skip. After a flush, offline users' cursors leave
// memory (they reload from the store), so memory follows the online users.
//
// The device record's value is when the device was last seen (uvarint Unix
// seconds; empty in data written before it existed). A device not seen for
// Config.DeviceTTL is deleted with its cursors by sweep; if it comes back it
// is a new device, starting at the baseline.
//
// Ephemeral devices (a session without device_id) are kept in memory only,
// under the key "~<session>" (never a valid device ID), until the session
// ends.
//
// Every operation but the flush concerns one user, so the cursors are
// split into shards by user: sessions of different users ack without
// waiting on one another (one mutex over all of them was the worst lock
// convoy of the steady benchmark).
type cursors struct {
	seed   maphash.Seed
	now    func() time.Time
	ttl    time.Duration // 0 = device records never expire
	shards [cursorShards]cursorShard
}

const cursorShards = 64

// cursorShard holds the cursors of the users hashed to it.
type cursorShard struct {
	mu    sync.RWMutex // read-locked by get and state
	users map[string]*userCursors
	// dirty are the cursors changed since the last flush took them, each
	// once (cursor.dirty): a flag and an append per ack, where a set keyed
	// by three strings cost two of an ack's nine map operations.
	dirty []dirtyCursor
	devs  map[deviceKey]struct{} // device records to write
	// spare is the dirty set the last successful flush wrote, emptied:
	// the next takeDirty swaps it in, so it keeps its size instead of
	// growing anew from empty every flush (recycle).
	spare struct {
		dirty []dirtyCursor
		devs  map[deviceKey]struct{}
	}
	_ [64]byte // keeps neighbouring shards' locks off one cache line
}

// userCursors are one user's cursors in memory. base is nil until loaded;
// each device's map is complete once present. The maps hold pointers so
// that an ack moves a cursor it has looked up without a second lookup.
type userCursors struct {
	base    map[string]*cursor
	devices map[string]map[string]*cursor
}

// cursor is a seq in memory; dirty while it is in its shard's dirty list.
type cursor struct {
	seq   uint64
	dirty bool
}

// dirtyCursor is a changed cursor and where it is stored (device "": the
// baseline).
type dirtyCursor struct {
	user, device, conv string
	c                  *cursor
}

// value is c's seq, 0 if there is no cursor.
func (c *cursor) value() uint64 {
	if c == nil {
		return 0
	}
	return c.seq
}

// inMemory makes cursors of stored seqs, in one allocation.
func inMemory(seqs map[string]uint64) map[string]*cursor {
	m := make(map[string]*cursor, len(seqs))
	block := make([]cursor, len(seqs))
	i := 0
	for conv, seq := range seqs {
		block[i].seq = seq
		m[conv] = &block[i]
		i++
	}
	return m
}

// markLocked puts c, user's cursor for conv on device, in the dirty list
// unless it is there. Lock sh.mu.
func (sh *cursorShard) markLocked(user, device, conv string, c *cursor) {
	if !c.dirty {
		c.dirty = true
		sh.dirty = append(sh.dirty, dirtyCursor{user, device, conv, c})
	}
}

type deviceKey struct{ user, device string }

func newCursors() *cursors {
	c := &cursors{seed: maphash.MakeSeed(), now: time.Now}
	for i := range c.shards {
		c.shards[i] = cursorShard{
			users: make(map[string]*userCursors),
			devs:  make(map[deviceKey]struct{}),
		}
	}
	return c
}

func (c *cursors) shard(user string) *cursorShard {
	return &c.shards[maphash.String(c.seed, user)%cursorShards]
}

func baseStoreKey(user, conv string) []byte { return storage.Key("cur", user, conv) }
func deviceCursorPrefix(user, device string) []byte {
	return append(storage.Key("curd", user, device), '/')
}
func deviceRecordKey(user, device string) []byte { return storage.Key("dev", user, device) }

// deviceSeenRefresh is how stale a device record's last-seen time may get
// before it is rewritten. Refreshing at every load would add a write per
// login (and loads repeat whenever an offline user's cursors left memory);
// once a day adds at most one small write per device and day, riding on the
// cursor flush that batches it anyway, and is precise enough against a TTL
// counted in days (a device may expire up to a day early of its TTL counted
// from its last use).
const deviceSeenRefresh = 24 * time.Hour

// deviceSeen decodes a device record: when the device was last seen, false
// if the record has no time (written before records carried one).
func deviceSeen(v []byte) (time.Time, bool) {
	sec, n := binary.Uvarint(v)
	if n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(sec), 0), true
}

func deviceRecordValue(seen time.Time) []byte {
	return binary.AppendUvarint(nil, uint64(seen.Unix()))
}

// ephemeralDevice names the in-memory device of a session without device_id.
func ephemeralDevice(session uint64) string { return "~" + strconv.FormatUint(session, 16) }

func isEphemeral(device string) bool { return device != "" && device[0] == '~' }

// userLocked returns user's cursors, creating them. Lock sh.mu.
func (sh *cursorShard) userLocked(user string) *userCursors {
	u := sh.users[user]
	if u == nil {
		u = &userCursors{devices: make(map[string]map[string]*cursor)}
		sh.users[user] = u
	}
	return u
}

// load makes sure user's baseline and device's cursors are in memory,
// registering a device the server has not seen (its cursors start at the
// baseline).
func (c *cursors) load(ctx context.Context, s storage.Store, user, device string) error {
	return c.loadWith(ctx, s, user, device, nil)
}

// needsUser reports whether load would read user's stored cursors
// (loadUser): a caller reading other ranges of the user may read them in
// the same lookup and pass them to loadWith.
func (c *cursors) needsUser(user, device string) bool {
	sh := c.shard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	u := sh.users[user]
	return u == nil || u.base == nil && u.devices[device] == nil
}

// loadWith is load with st, user's stored cursors if the caller read them
// (else nil).
func (c *cursors) loadWith(ctx context.Context, s storage.Store, user, device string, st *storedUser) error {
	sh := c.shard(user)
	sh.mu.RLock()
	u := sh.users[user]
	baseLoaded := u != nil && u.base != nil
	devLoaded := u != nil && u.devices[device] != nil
	sh.mu.RUnlock()
	if devLoaded {
		return nil
	}
	if !baseLoaded && st == nil {
		var err error
		if st, err = loadUser(ctx, s, user); err != nil {
			return err
		}
	}
	var stored map[string]uint64 // the device's cursors in the store
	known := false
	var seen time.Time
	hasSeen := false
	if !isEphemeral(device) {
		var record []byte
		if st != nil {
			record, known = st.records[device]
			stored = st.devices[device]
		} else {
			var err error
			record, err = s.Get(ctx, deviceRecordKey(user, device))
			switch {
			case err == nil:
				known = true
				if stored, err = scanCursors(ctx, s, deviceCursorPrefix(user, device)); err != nil {
					return err
				}
			case !errors.Is(err, storage.ErrNotFound):
				return err
			}
		}
		if known {
			seen, hasSeen = deviceSeen(record)
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u = sh.userLocked(user)
	if u.base == nil && st != nil {
		u.base = inMemory(st.base)
	}
	if u.devices[device] != nil {
		return nil // loaded meanwhile
	}
	var dev map[string]*cursor
	if known {
		dev = inMemory(stored)
		now := c.now()
		if !hasSeen || now.Sub(seen) >= deviceSeenRefresh {
			sh.devs[deviceKey{user, device}] = struct{}{}
		}
		// A sweep may delete a record this old after this load read it
		// (but before the device was in memory, where the sweep would have
		// kept it): writing all its cursors again with the record restores
		// them. Rare, so cheap. Had the sweep deleted the cursors between
		// the record's Get and the cursors' scan above (a user whose
		// baseline was in memory; loadUser reads one snapshot), the device
		// syncs from the beginning: a repeat, never a skip.
		if c.ttl > 0 && hasSeen && now.Sub(seen) > c.ttl/2 {
			for conv, cur := range dev {
				sh.markLocked(user, device, conv, cur)
			}
		}
	} else {
		dev = make(map[string]*cursor, len(u.base))
		for conv, b := range u.base {
			cur := &cursor{seq: b.seq}
			dev[conv] = cur
			if !isEphemeral(device) {
				sh.markLocked(user, device, conv, cur)
			}
		}
		if !isEphemeral(device) {
			sh.devs[deviceKey{user, device}] = struct{}{}
		}
	}
	u.devices[device] = dev
	return nil
}

// storedUser is what the store holds of a user's cursors.
type storedUser struct {
	base    map[string]uint64            // the baseline, see loadUser
	records map[string][]byte            // device records, by device
	devices map[string]map[string]uint64 // device cursors, by device and conversation
}

// userCursorPrefixes are the prefixes of a user's device records, device
// cursors and baseline: storedUser.add takes their rows by index.
func userCursorPrefixes(user string) [][]byte {
	return [][]byte{
		append(storage.Key("dev", user), '/'),
		append(storage.Key("curd", user), '/'),
		append(storage.Key("cur", user), '/'),
	}
}

func newStoredUser() *storedUser {
	return &storedUser{
		base:    make(map[string]uint64),
		records: make(map[string][]byte),
		devices: make(map[string]map[string]uint64),
	}
}

// add takes a row of userCursorPrefixes()[which], rest being its key after
// the prefix.
func (st *storedUser) add(which int, rest, v []byte) {
	switch which {
	case 0:
		st.records[string(rest)] = slices.Clone(v)
	case 1:
		device, conv, ok := strings.Cut(string(rest), "/")
		if !ok {
			return
		}
		if st.devices[device] == nil {
			st.devices[device] = make(map[string]uint64)
		}
		st.devices[device][conv], _ = binary.Uvarint(v)
	case 2:
		st.base[string(rest)], _ = binary.Uvarint(v)
	}
}

// merge makes the baseline what loadUser says, once every row is added.
func (st *storedUser) merge() {
	for _, dev := range st.devices {
		for conv, seq := range dev {
			st.base[conv] = max(st.base[conv], seq)
		}
	}
}

// loadUser reads user's device records and cursors and its baseline: per
// conversation the larger of the stored baseline and every device's
// cursor. One lookup, one snapshot: a sweep writes the baseline an expiring
// device holds before it deletes the device's cursors, so no snapshot
// misses a cursor that is in neither. Sync reads the same prefixes with
// others (see Service.userReads).
func loadUser(ctx context.Context, s storage.Store, user string) (*storedUser, error) {
	st := newStoredUser()
	prefixes := userCursorPrefixes(user)
	err := s.ScanPrefixes(ctx, prefixes, func(i int, k, v []byte) bool {
		st.add(i, k[len(prefixes[i]):], v)
		return true
	})
	if err != nil {
		return nil, err
	}
	st.merge()
	return st, nil
}

// scanCursors reads the cursors stored under prefix, by conversation.
func scanCursors(ctx context.Context, s storage.Store, prefix []byte) (map[string]uint64, error) {
	out := make(map[string]uint64)
	err := s.Scan(ctx, prefix, storage.PrefixEnd(prefix), false, func(k, v []byte) bool {
		seq, _ := binary.Uvarint(v)
		out[string(k[len(prefix):])] = seq
		return true
	})
	return out, err
}

// get returns device's cursor for conv (0 if none). load must have run.
func (c *cursors) get(user, device, conv string) uint64 {
	sh := c.shard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if u := sh.users[user]; u != nil {
		return u.devices[device][conv].value()
	}
	return 0
}

// cursorState is what an ack to a seq would do to a device's cursor.
type cursorState int

const (
	cursorUnloaded cursorState = iota // the device's cursors are not in memory
	cursorNew                         // no cursor for the conversation yet
	cursorMoves                       // an existing cursor would move forward
	cursorCovered                     // nothing would move
)

// state tells what ack(user, device, conv, seq) would do, from memory
// alone.
func (c *cursors) state(user, device, conv string, seq uint64) cursorState {
	sh := c.shard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	st, _, _, _, _ := sh.stateLocked(user, device, conv, seq)
	return st
}

// stateLocked is state with sh.mu held. It also returns, where loaded, the
// user's cursors, the device's, the device's cursor for conv and the
// baseline's (nil if none yet), so that move looks none of them up again.
func (sh *cursorShard) stateLocked(user, device, conv string, seq uint64) (st cursorState, u *userCursors, dev map[string]*cursor, cur, base *cursor) {
	u = sh.users[user]
	if u == nil {
		return cursorUnloaded, nil, nil, nil, nil
	}
	dev = u.devices[device]
	if dev == nil {
		return cursorUnloaded, u, nil, nil, nil
	}
	cur, base = dev[conv], u.base[conv]
	switch {
	case cur == nil:
		return cursorNew, u, dev, nil, base
	case seq <= cur.seq && seq <= base.value():
		return cursorCovered, u, dev, cur, base
	}
	return cursorMoves, u, dev, cur, base
}

// ack moves device's cursor for conv, and the user's baseline, forward to
// seq. load must have run; if the user was evicted since (its last session
// ended meanwhile), the ack is dropped: a repeat, never a skip.
func (c *cursors) ack(user, device, conv string, seq uint64) {
	c.move(user, device, conv, seq, true)
}

// advance is ack for a cursor the device has already, in one locked step
// with the check state makes: it moves nothing if the device's cursors are
// not in memory or hold none for conv, and returns what state would have.
func (c *cursors) advance(user, device, conv string, seq uint64) cursorState {
	return c.move(user, device, conv, seq, false)
}

// move is ack (create: a cursor new to the device is made) and advance.
func (c *cursors) move(user, device, conv string, seq uint64, create bool) cursorState {
	sh := c.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, u, dev, cur, base := sh.stateLocked(user, device, conv, seq)
	if st == cursorUnloaded || st == cursorCovered || (st == cursorNew && !create) {
		return st
	}
	if seq > cur.value() {
		if cur == nil {
			cur = new(cursor)
			dev[conv] = cur
		}
		cur.seq = seq
		if !isEphemeral(device) {
			sh.markLocked(user, device, conv, cur)
		}
	}
	if seq > base.value() {
		if base == nil {
			base = new(cursor)
			u.base[conv] = base
		}
		base.seq = seq
		sh.markLocked(user, "", conv, base)
	}
	return st
}

// forget drops an ephemeral device.
func (c *cursors) forget(user, device string) {
	sh := c.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if u := sh.users[user]; u != nil {
		delete(u.devices, device)
	}
}

// dirtySet is what changed since the last write, by shard.
type dirtySet [cursorShards]struct {
	cursors []dirtyCursor
	devs    map[deviceKey]struct{}
}

// takeDirty returns the writes of every cursor and device record changed
// since the last call, and what they cover (for restore). It locks one
// shard at a time.
func (c *cursors) takeDirty() ([]storage.Op, *dirtySet) {
	taken := new(dirtySet)
	var ops []storage.Op
	now := c.now()
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		if len(sh.dirty) > 0 || len(sh.devs) > 0 {
			taken[i].cursors, taken[i].devs = sh.dirty, sh.devs
			sh.dirty, sh.devs = sh.spare.dirty, sh.spare.devs
			sh.spare.dirty, sh.spare.devs = nil, nil
			if sh.devs == nil {
				sh.devs = make(map[deviceKey]struct{})
			}
			ops = sh.appendWritesLocked(ops, taken[i].cursors, taken[i].devs, now)
		}
		sh.mu.Unlock()
	}
	return ops, taken
}

// appendWritesLocked appends the writes of the given cursors, taken off
// the dirty list, and device records (seen at now), with their values in
// memory now. Lock sh.mu.
func (sh *cursorShard) appendWritesLocked(ops []storage.Op, cursors []dirtyCursor, devs map[deviceKey]struct{}, now time.Time) []storage.Op {
	ops = slices.Grow(ops, len(devs)+len(cursors))
	for k := range devs {
		ops = append(ops, storage.Op{Key: deviceRecordKey(k.user, k.device), Value: deviceRecordValue(now)})
	}
	for _, d := range cursors {
		d.c.dirty = false
		if d.device == "" {
			if !sh.users[d.user].deviceHolds(d.conv) {
				ops = append(ops, storage.Op{Key: baseStoreKey(d.user, d.conv), Value: binary.AppendUvarint(nil, d.c.seq)})
			}
			continue
		}
		key := append(deviceCursorPrefix(d.user, d.device), d.conv...)
		ops = append(ops, storage.Op{Key: key, Value: binary.AppendUvarint(nil, d.c.seq)})
	}
	return ops
}

// deviceHolds reports whether the cursor of one of u's stored devices
// equals its baseline for conv: that cursor is stored, or written in the
// same flush (a device's cursors move only by ack, which marks them), so a
// load finds the baseline without cur. A write that fails marks both dirty
// again (restore), and this is asked anew.
func (u *userCursors) deviceHolds(conv string) bool {
	base := u.base[conv].value()
	for device, dev := range u.devices {
		if !isEphemeral(device) && dev[conv].value() == base {
			return true
		}
	}
	return false
}

// restore marks writes that failed dirty again: the values in memory are
// still the newest, and go out with the next flush.
func (c *cursors) restore(d *dirtySet) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, k := range d[i].cursors {
			sh.markLocked(k.user, k.device, k.conv, k.c)
		}
		for k := range d[i].devs {
			sh.devs[k] = struct{}{}
		}
		sh.mu.Unlock()
	}
}

// recycle keeps the maps of a dirty set that was written as the shards'
// spares.
func (c *cursors) recycle(d *dirtySet) {
	for i := range c.shards {
		if d[i].devs == nil {
			continue
		}
		clear(d[i].cursors) // drops the pointers
		clear(d[i].devs)
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.spare.dirty, sh.spare.devs = d[i].cursors[:0], d[i].devs
		sh.mu.Unlock()
	}
}

// flushLoop writes the cursors every CursorFlush and sweeps expired
// devices every deviceSweepEvery. Both in one goroutine: a sweep never runs
// between a load that read a record the sweep deletes and the flush that
// writes that record again (see load).
func (s *Service) flushLoop() {
	defer s.done.Done()
	t := time.NewTicker(s.cfg.CursorFlush)
	defer t.Stop()
	var sweep <-chan time.Time
	if s.cfg.DeviceTTL > 0 {
		st := time.NewTicker(deviceSweepEvery)
		defer st.Stop()
		sweep = st.C
	}
	for {
		select {
		case <-t.C:
			s.flushCursors()
		case <-sweep:
			s.sweepDevices()
		case <-s.stop:
			return // Close flushes once more
		}
	}
}

// cursorFlushChunk is the most writes one flush batch carries. The store
// publishes batches in order, so a synced receipt commit waits until an
// earlier batch is in the memtable: one batch of every online user's cursors
// (10,000 writes at 5,000 members) held the receipt commits 30-100 ms once a
// second, the steady benchmark's worst tail. Chunks are written in order, so
// a crash keeps a prefix: a device record before its cursors, and any lost
// cursor only repeats messages.
const cursorFlushChunk = 256

func (s *Service) flushCursors() {
	ops, taken := s.cursors.takeDirty()
	for chunk := range slices.Chunk(ops, cursorFlushChunk) {
		if err := s.cfg.Store.Apply(context.Background(), &storage.Batch{Ops: chunk}, false); err != nil {
			s.cfg.Logger.Warn("writing delivery cursors", "err", err)
			s.cursors.restore(taken) // rewriting the chunks already written is harmless
			return
		}
	}
	s.cursors.recycle(taken)
	s.cursors.evictOffline(s.cfg.Online)
}

// evictOffline drops the cursors of users not online that have nothing
// unwritten.
func (c *cursors) evictOffline(online func(string) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		keep := make(map[string]bool)
		for _, k := range sh.dirty {
			keep[k.user] = true
		}
		for k := range sh.devs {
			keep[k.user] = true
		}
		for user := range sh.users {
			if !keep[user] && !online(user) {
				delete(sh.users, user)
			}
		}
		sh.mu.Unlock()
	}
}

// sweepDevices deletes the expired devices (cursors.sweep).
func (s *Service) sweepDevices() {
	if n, err := s.cursors.sweep(context.Background(), s.cfg.Store); err != nil {
		s.cfg.Logger.Warn("expiring device records", "err", err)
	} else if n > 0 {
		s.cfg.Logger.Info("expired device records", "devices", n)
	}
}

// deviceSweepEvery is how often expired devices are deleted: against a TTL
// of days, hourly costs one scan of the device records per hour.
const deviceSweepEvery = time.Hour

// deviceSweepMax bounds the records one sweep deletes or stamps (the rest
// go in the next: stamped records are skipped then): a sweep holds the
// flush loop while it runs, and its writes are held in memory.
const deviceSweepMax = 1024

// sweep deletes the devices not seen for c.ttl, with their cursors, and
// returns how many. Devices in memory are in use: it keeps them and makes
// the next flush refresh their last-seen time if it is stale (a device that
// stays online never reloads). A record without a time (older data) gets
// the time of this sweep, so it expires a TTL after the first sweep, never
// for want of data. The writes go in order, in chunks like the flush: the
// baselines the expired devices held, then each device's cursors and after
// them its record, so a sweep cut short leaves it expired for the next.
func (c *cursors) sweep(ctx context.Context, s storage.Store) (int, error) {
	if c.ttl <= 0 {
		return 0, nil
	}
	now := c.now()
	prefix := storage.Key("dev")
	prefix = append(prefix, '/')
	var stamp []storage.Op // records without a time
	var expired []deviceKey
	err := s.Scan(ctx, prefix, storage.PrefixEnd(prefix), false, func(k, v []byte) bool {
		user, device, ok := strings.Cut(string(k[len(prefix):]), "/")
		if !ok {
			return true
		}
		seen, hasSeen := deviceSeen(v)
		if c.inUse(user, device, seen, hasSeen, now) {
			return true
		}
		switch {
		case !hasSeen:
			stamp = append(stamp, storage.Op{Key: slices.Clone(k), Value: deviceRecordValue(now)})
		case now.Sub(seen) > c.ttl:
			expired = append(expired, deviceKey{user, device})
		}
		return len(expired)+len(stamp) < deviceSweepMax
	})
	if err != nil {
		return 0, err
	}
	// The baseline an expiring device's cursors hold goes to cur first
	// (where above it), as no device holds it any more (see loadUser).
	var deletes []storage.Op
	held := make(map[string]map[string]uint64) // by user and conversation
	for _, d := range expired {
		p := deviceCursorPrefix(d.user, d.device)
		if err := s.Scan(ctx, p, storage.PrefixEnd(p), false, func(k, v []byte) bool {
			deletes = append(deletes, storage.Op{Key: slices.Clone(k), Delete: true})
			if held[d.user] == nil {
				held[d.user] = make(map[string]uint64)
			}
			seq, _ := binary.Uvarint(v)
			conv := string(k[len(p):])
			held[d.user][conv] = max(held[d.user][conv], seq)
			return true
		}); err != nil {
			return 0, err
		}
		deletes = append(deletes, storage.Op{Key: deviceRecordKey(d.user, d.device), Delete: true})
	}
	ops := stamp
	for user, convs := range held {
		base, err := scanCursors(ctx, s, append(storage.Key("cur", user), '/'))
		if err != nil {
			return 0, err
		}
		for conv, seq := range convs {
			if seq > base[conv] {
				ops = append(ops, storage.Op{Key: baseStoreKey(user, conv), Value: binary.AppendUvarint(nil, seq)})
			}
		}
	}
	ops = append(ops, deletes...)
	for chunk := range slices.Chunk(ops, cursorFlushChunk) {
		if err := s.Apply(ctx, &storage.Batch{Ops: chunk}, false); err != nil {
			return 0, err
		}
	}
	return len(expired), nil
}

// inUse reports whether device's cursors are in memory, marking its record
// for the next flush if its last-seen time is stale.
func (c *cursors) inUse(user, device string, seen time.Time, hasSeen bool, now time.Time) bool {
	sh := c.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[user]
	if u == nil || u.devices[device] == nil {
		return false
	}
	if !hasSeen || now.Sub(seen) >= deviceSeenRefresh {
		sh.devs[deviceKey{user, device}] = struct{}{}
	}
	return true
}
