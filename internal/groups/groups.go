// Package groups owns groups and their membership: creation, invite, join,
// quit, kick, the membership ordinals (join sequence numbers) that read
// receipts are counted over, and each group's message sequence, so that a
// message's seq and its membership watermark are taken atomically with
// respect to membership changes.
//
// A group is loaded on first use by the node owning its partition (see
// package cluster) and written through the storage.Committer; each
// membership change also maintains the stored index of a user's groups
// (ug/<user>/<group>), which sync reads on any node. Lock order: group.mu,
// then part.mu (a leaf); no other lock is taken while holding either, and
// callbacks run with group.mu held must not call back into the Service.
package groups

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/storage"
)

// Limits.
const (
	MaxMembers        = 100_000 // members of one group
	MaxMembersPerCall = 1_000   // user IDs in one create / invite / kick
	MaxNameLen        = 128
)

// Pusher reaches users' sessions.
type Pusher interface {
	Push(userID string, frame *pb.ServerFrame)
	PushEach(users iter.Seq[string], frame *pb.ServerFrame)
}

// Service manages groups. A group's state (metadata, roster, head seq) is
// loaded on first use and kept in its partition's map until the partition
// is dropped (DropPartition, when this node stops owning it).
type Service struct {
	store  storage.Store
	commit *storage.Committer
	push   Pusher
	now    func() time.Time

	parts [cluster.Partitions]part
}

// part holds the loaded groups of one partition.
type part struct {
	mu     sync.RWMutex
	groups map[string]*group
}

type group struct {
	id      string
	typ     pb.GroupType
	name    string
	owner   string
	created int64

	ready   chan struct{} // closed once loaded (or failed)
	loadErr error         // set before ready is closed

	// mu is read-locked by the lookups every receipt and delivery makes
	// (Member, Snapshot), which must not queue behind one another.
	mu         sync.RWMutex
	nextOrd    uint32
	headSeq    uint64
	members    map[string]*member
	users      []string        // ordinal → user, append-only
	present    *roaring.Bitmap // replaced, never modified, once published
	departures uint64
}

type member struct {
	ord       uint32
	joinedSeq uint64 // the group's head seq when the member joined
	joinedAt  int64  // unix ms
}

// Membership is a user's membership of a group.
type Membership struct {
	Ordinal   uint32
	JoinedSeq uint64 // messages with seq > JoinedSeq are visible to the member
}

// New returns a Service on store. It loads no group (they load on first
// use) but builds the stored user → groups index once if an older data
// directory lacks it, fenced by the lease epochs that epochs reads (nil on
// a single node; see migrateUserIndex).
func New(ctx context.Context, store storage.Store, commit *storage.Committer, push Pusher, epochs Epochs) (*Service, error) {
	s := &Service{store: store, commit: commit, push: push, now: time.Now}
	for i := range s.parts {
		s.parts[i].groups = make(map[string]*group)
	}
	if err := migrateUserIndex(ctx, store, epochs); err != nil {
		return nil, fmt.Errorf("groups: building the user index: %w", err)
	}
	return s, nil
}

// DropPartition forgets the loaded groups of partition p, so that they are
// reloaded from storage if p is owned here again. Call it once no
// operation on p is in flight.
func (s *Service) DropPartition(p uint32) {
	pt := &s.parts[p]
	pt.mu.Lock()
	pt.groups = make(map[string]*group)
	pt.mu.Unlock()
}

func (s *Service) partOf(groupID string) *part { return &s.parts[cluster.Of(conv.Group(groupID))] }

// get returns a group, loading it on first use (one load per group however
// many callers wait for it).
func (s *Service) get(ctx context.Context, groupID string) (*group, error) {
	pt := s.partOf(groupID)
	pt.mu.RLock()
	g := pt.groups[groupID]
	pt.mu.RUnlock()
	if g == nil {
		pt.mu.Lock()
		if g = pt.groups[groupID]; g == nil {
			g = &group{id: groupID, ready: make(chan struct{})}
			pt.groups[groupID] = g
			pt.mu.Unlock()
			g.loadErr = s.load(ctx, g)
			if g.loadErr != nil {
				pt.mu.Lock()
				if pt.groups[groupID] == g {
					delete(pt.groups, groupID)
				}
				pt.mu.Unlock()
			}
			close(g.ready)
		} else {
			pt.mu.Unlock()
		}
	}
	select {
	case <-g.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.loadErr != nil {
		return nil, g.loadErr
	}
	return g, nil
}

// load reads a group's metadata, roster and head seq. g is not yet
// published (its ready channel is open), so no lock is needed.
func (s *Service) load(ctx context.Context, g *group) error {
	v, err := s.store.Get(ctx, storage.Key("g", g.id))
	if errors.Is(err, storage.ErrNotFound) {
		return apierr.NotFound("group %q not found", g.id)
	}
	if err != nil {
		return err
	}
	meta, err := decodeMeta(g.id, v)
	if err != nil {
		return err
	}
	g.typ, g.name, g.owner, g.created = meta.typ, meta.name, meta.owner, meta.created
	g.members = make(map[string]*member)
	if err := s.loadMembers(ctx, g); err != nil {
		return err
	}
	g.headSeq, err = conv.HeadSeq(ctx, s.store, conv.Group(g.id))
	return err
}

func (s *Service) loadMembers(ctx context.Context, g *group) error {
	p := append(storage.Key("gm", g.id), '/')
	present := roaring.New()
	var decErr error
	err := s.store.Scan(ctx, p, storage.PrefixEnd(p), false, func(k, v []byte) bool {
		ord := storage.Uint32Suffix(k)
		user, m, left, err := decodeMember(v)
		if err != nil {
			decErr = err
			return false
		}
		m.ord = ord
		for uint32(len(g.users)) <= ord {
			g.users = append(g.users, "")
		}
		g.users[ord] = user
		if left {
			g.departures++
			return true
		}
		g.members[user] = m
		present.Add(ord)
		return true
	})
	if err != nil {
		return err
	}
	if decErr != nil {
		return decErr
	}
	present.RunOptimize()
	g.present = present
	if n := uint32(len(g.users)); n > g.nextOrd {
		g.nextOrd = n
	}
	return nil
}

// Create creates a group owned by owner with the given members, and returns
// its ID (server-chosen when groupID is "").
func (s *Service) Create(ctx context.Context, owner string, typ pb.GroupType, groupID, name string, memberIDs []string) (string, error) {
	if _, ok := pb.GroupType_name[int32(typ)]; !ok || typ == pb.GroupType_GROUP_TYPE_UNSPECIFIED {
		return "", apierr.InvalidArgument("unknown group type %d", typ)
	}
	if groupID == "" {
		groupID = NewGroupID()
	} else if err := conv.CheckID("group ID", groupID); err != nil {
		return "", err
	}
	if len(name) > MaxNameLen {
		return "", apierr.InvalidArgument("group name over %d bytes", MaxNameLen)
	}
	users, err := checkUsers(memberIDs, owner)
	if err != nil {
		return "", err
	}
	now := s.now().UnixMilli()
	g := &group{
		id: groupID, typ: typ, name: name, owner: owner, created: now,
		members: make(map[string]*member),
		present: roaring.New(),
		ready:   make(chan struct{}),
	}
	close(g.ready)
	g.mu.Lock()
	g.addLocked(append([]string{owner}, users...), now)
	writes := []storage.Op{{Key: storage.Key("g", g.id), Value: encodeMeta(g)}}
	for _, u := range g.users {
		writes = append(writes, g.memberOps(u, g.members[u], false)...)
	}
	// Queue the group's records before anyone can see it, so that no message
	// or membership change of the group commits ahead of them.
	if err := s.publish(ctx, g); err != nil {
		g.mu.Unlock()
		return "", err
	}
	if err := s.commitUnlock(ctx, g, writes); err != nil {
		pt := s.partOf(groupID)
		pt.mu.Lock()
		if pt.groups[groupID] == g {
			delete(pt.groups, groupID)
		}
		pt.mu.Unlock()
		return "", err
	}
	s.pushEvent(ctx, g, pb.GroupEventKind_GROUP_EVENT_CREATED, owner, g.users, "", nil)
	return groupID, nil
}

// publish makes a new group visible in its partition's map unless a group
// of that ID exists (loaded, or in storage).
func (s *Service) publish(ctx context.Context, g *group) error {
	pt := s.partOf(g.id)
	for {
		pt.mu.Lock()
		old := pt.groups[g.id]
		if old == nil {
			// Not loaded: it may still be stored. A load in progress
			// publishes a placeholder first, so checking storage outside
			// the lock and retrying on a placeholder is race-free.
			pt.mu.Unlock()
			_, err := s.store.Get(ctx, storage.Key("g", g.id))
			if err == nil {
				return apierr.New(pb.CodeAlreadyExists, "group %q already exists", g.id)
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			pt.mu.Lock()
			if pt.groups[g.id] == nil {
				pt.groups[g.id] = g
				pt.mu.Unlock()
				return nil
			}
			pt.mu.Unlock()
			continue
		}
		pt.mu.Unlock()
		select {
		case <-old.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if old.loadErr == nil {
			return apierr.New(pb.CodeAlreadyExists, "group %q already exists", g.id)
		}
		if !apierr.Is(old.loadErr, pb.CodeNotFound) {
			return old.loadErr
		}
		// The failed load removed its placeholder: look again.
	}
}

// Invite adds users to a group. In a Work group any member may invite; in
// the other types only the owner.
func (s *Service) Invite(ctx context.Context, op, groupID string, userIDs []string) error {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return err
	}
	users, err := checkUsers(userIDs, "")
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return apierr.InvalidArgument("no users to invite")
	}
	g.mu.RLock()
	isMember := g.members[op] != nil
	g.mu.RUnlock()
	if !isMember {
		return apierr.PermissionDenied("not a member of group %q", groupID)
	}
	if g.typ != pb.GroupType_GROUP_TYPE_WORK && op != g.owner {
		return apierr.PermissionDenied("only the owner may invite to a %s group", typeName(g.typ))
	}
	return s.add(ctx, g, op, users)
}

// Join adds user to a group that admits members without invitation (all
// types but Work).
func (s *Service) Join(ctx context.Context, user, groupID string) error {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return err
	}
	if g.typ == pb.GroupType_GROUP_TYPE_WORK {
		return apierr.PermissionDenied("work group %q is invite-only", groupID)
	}
	return s.add(ctx, g, user, []string{user})
}

func (s *Service) add(ctx context.Context, g *group, op string, users []string) error {
	now := s.now().UnixMilli()
	g.mu.Lock()
	var added []string
	for _, u := range users {
		if g.members[u] == nil {
			added = append(added, u)
		}
	}
	if len(added) == 0 {
		g.mu.Unlock()
		return apierr.New(pb.CodeAlreadyExists, "already members of group %q", g.id)
	}
	if len(g.members)+len(added) > MaxMembers {
		g.mu.Unlock()
		return apierr.TooMany("group %q would exceed %d members", g.id, MaxMembers)
	}
	g.addLocked(added, now)
	writes := make([]storage.Op, 0, len(added))
	for _, u := range added {
		writes = append(writes, g.memberOps(u, g.members[u], false)...)
	}
	if err := s.commitUnlock(ctx, g, writes); err != nil {
		return err
	}
	s.pushEvent(ctx, g, pb.GroupEventKind_GROUP_EVENT_JOINED, op, added, "", nil)
	return nil
}

// Quit removes user from a group. The owner cannot quit.
func (s *Service) Quit(ctx context.Context, user, groupID string) error {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return err
	}
	if user == g.owner {
		return apierr.PermissionDenied("the owner cannot quit group %q", groupID)
	}
	return s.remove(ctx, g, user, []string{user}, pb.GroupEventKind_GROUP_EVENT_QUIT, "")
}

// Kick removes members from a group; only the owner may.
func (s *Service) Kick(ctx context.Context, op, groupID string, userIDs []string, reason string) error {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return err
	}
	if op != g.owner {
		return apierr.PermissionDenied("only the owner may kick from group %q", groupID)
	}
	users, err := checkUsers(userIDs, op)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return apierr.InvalidArgument("no users to kick (the owner cannot kick itself)")
	}
	return s.remove(ctx, g, op, users, pb.GroupEventKind_GROUP_EVENT_KICKED, reason)
}

func (s *Service) remove(ctx context.Context, g *group, op string, users []string, kind pb.GroupEventKind, reason string) error {
	g.mu.Lock()
	var gone []string
	gm := make(map[string]*member)
	for _, u := range users {
		if m := g.members[u]; m != nil {
			gone = append(gone, u)
			gm[u] = m
		}
	}
	if len(gone) == 0 {
		g.mu.Unlock()
		if kind == pb.GroupEventKind_GROUP_EVENT_QUIT {
			return apierr.PermissionDenied("not a member of group %q", g.id)
		}
		return apierr.NotFound("none of those users is a member of group %q", g.id)
	}
	present := g.present.Clone()
	for _, u := range gone {
		present.Remove(gm[u].ord)
		delete(g.members, u)
	}
	g.present = present
	g.departures++
	writes := make([]storage.Op, 0, len(gone))
	for _, u := range gone {
		writes = append(writes, g.memberOps(u, gm[u], true)...)
	}
	if err := s.commitUnlock(ctx, g, writes); err != nil {
		return err
	}
	s.pushEvent(ctx, g, kind, op, gone, reason, gone)
	return nil
}

// commitUnlock queues ops while g.mu is held — the Committer applies
// submissions in order, so this keeps the group's changes in the order they
// were made — then unlocks g.mu and waits until the ops are durable.
func (s *Service) commitUnlock(ctx context.Context, g *group, ops []storage.Op) error {
	wait, err := s.commit.Enqueue(ctx, g.setAll(ops))
	g.mu.Unlock()
	if err != nil {
		return err
	}
	return wait()
}

// addLocked gives each user the next ordinal. Lock g.mu.
func (g *group) addLocked(users []string, now int64) {
	present := g.present.Clone()
	for _, u := range users {
		ord := g.nextOrd
		g.nextOrd++
		g.users = append(g.users, u)
		g.members[u] = &member{ord: ord, joinedSeq: g.headSeq, joinedAt: now}
		present.Add(ord)
	}
	present.RunOptimize()
	g.present = present
}

// memberOps are the writes of u's membership: its record, kept after a
// departure (left=true) so that ordinals are never reused, and its entry in
// the user's index of groups (ug/), removed on departure.
func (g *group) memberOps(u string, m *member, left bool) []storage.Op {
	rec := storage.Op{Key: storage.AppendUint32(storage.Key("gm", g.id), m.ord), Value: encodeMember(u, m, left)}
	if left {
		return []storage.Op{rec, {Key: userIndexKey(u, g.id), Delete: true}}
	}
	return []storage.Op{rec, {Key: userIndexKey(u, g.id), Value: encodeUserIndex(m)}}
}

// setAll returns a Committer prepare function that writes ops, encoded
// beforehand so that the commit goroutine takes no group lock, fenced by
// the group's partition.
func (g *group) setAll(ops []storage.Op) func(*storage.Batch) {
	part := cluster.Of(conv.Group(g.id))
	return func(b *storage.Batch) {
		b.Fence(part)
		b.Ops = append(b.Ops, ops...)
	}
}

func (s *Service) pushEvent(ctx context.Context, g *group, kind pb.GroupEventKind, op string, users []string, reason string, alsoTo []string) {
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_GroupEvent{GroupEvent: &pb.GroupEvent{
		GroupId: g.id, Kind: kind, UserIds: users, OpUserId: op,
		GroupType: g.typ, Reason: reason, TimeMs: s.now().UnixMilli(),
	}}}
	g.mu.RLock()
	snap := g.snapshotLocked()
	g.mu.RUnlock()
	s.push.PushEach(func(yield func(string) bool) {
		for u := range memberIDs(snap) {
			if !yield(u) {
				return
			}
		}
		for _, u := range alsoTo {
			if !yield(u) {
				return
			}
		}
	}, frame)
}

// memberIDs yields the user of every present ordinal of a snapshot.
func memberIDs(snap receipts.RosterSnapshot) iter.Seq[string] {
	return func(yield func(string) bool) {
		if snap.Present == nil {
			return
		}
		it := snap.Present.Iterator()
		for it.HasNext() {
			if u, ok := snap.User(it.Next()); ok && !yield(u) {
				return
			}
		}
	}
}

// Sequence assigns the next message seq of a group to a message from sender,
// who must be a member, and calls fn with it, the membership watermark
// (ordinals below it are the members at this instant) and a snapshot of the
// membership, while membership cannot change. fn runs with the group's lock
// held: it must only queue work (e.g. Committer.Submit, which keeps seq
// order), not call the Service.
func (s *Service) Sequence(ctx context.Context, groupID, sender string, fn func(seq uint64, watermark uint32, members receipts.RosterSnapshot) error) error {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.members[sender] == nil {
		return apierr.PermissionDenied("not a member of group %q", groupID)
	}
	if err := fn(g.headSeq+1, g.nextOrd, g.snapshotLocked()); err != nil {
		return err
	}
	g.headSeq++
	return nil
}

// Member returns user's membership of a group: ok=false if not a member,
// an apierr NotFound error if the group does not exist.
func (s *Service) Member(ctx context.Context, groupID, user string) (m Membership, ok bool, err error) {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return Membership{}, false, err
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	gm := g.members[user]
	if gm == nil {
		return Membership{}, false, nil
	}
	return Membership{Ordinal: gm.ord, JoinedSeq: gm.joinedSeq}, true, nil
}

// Ordinal implements receipts.Roster.
func (s *Service) Ordinal(ctx context.Context, groupID, user string) (uint32, bool) {
	m, ok, _ := s.Member(ctx, groupID, user)
	return m.Ordinal, ok
}

// Snapshot implements receipts.Roster.
func (s *Service) Snapshot(ctx context.Context, groupID string) (receipts.RosterSnapshot, bool) {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return receipts.RosterSnapshot{}, false
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.snapshotLocked(), true
}

// snapshotLocked returns an immutable view of the membership: present is
// never modified once published, and users is append-only. Lock g.mu (a
// read lock suffices).
func (g *group) snapshotLocked() receipts.RosterSnapshot {
	users := g.users
	return receipts.RosterSnapshot{
		Present:    g.present,
		Departures: g.departures,
		User: func(ord uint32) (string, bool) {
			if int(ord) >= len(users) {
				return "", false
			}
			return users[ord], true
		},
	}
}

// Type returns a group's type, or an apierr NotFound error.
func (s *Service) Type(ctx context.Context, groupID string) (pb.GroupType, error) {
	g, err := s.get(ctx, groupID)
	if err != nil {
		return 0, err
	}
	return g.typ, nil
}

func checkUsers(ids []string, exclude string) ([]string, error) {
	if len(ids) > MaxMembersPerCall {
		return nil, apierr.TooMany("%d user IDs in one call; the limit is %d", len(ids), MaxMembersPerCall)
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if err := conv.CheckID("user ID", id); err != nil {
			return nil, err
		}
		if id == exclude || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	return out, nil
}

func typeName(t pb.GroupType) string {
	switch t {
	case pb.GroupType_GROUP_TYPE_WORK:
		return "Work"
	case pb.GroupType_GROUP_TYPE_PUBLIC:
		return "Public"
	case pb.GroupType_GROUP_TYPE_MEETING:
		return "Meeting"
	case pb.GroupType_GROUP_TYPE_COMMUNITY:
		return "Community"
	case pb.GroupType_GROUP_TYPE_AVCHATROOM:
		return "AVChatRoom"
	}
	return t.String()
}

// NewGroupID returns a fresh server-chosen group ID.
func NewGroupID() string {
	var b [8]byte
	rand.Read(b[:])
	return "@RM#" + hex.EncodeToString(b[:])
}

// Record encodings: compact binary, versioned by a leading byte.

func encodeMeta(g *group) []byte {
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(g.typ))
	b = binary.AppendVarint(b, g.created)
	b = appendString(b, g.owner)
	b = appendString(b, g.name)
	return b
}

func decodeMeta(id string, v []byte) (*group, error) {
	r := reader{b: v}
	if r.byte() != 1 {
		return nil, fmt.Errorf("group %q: unknown record version", id)
	}
	g := &group{id: id, members: make(map[string]*member)}
	g.typ = pb.GroupType(r.uvarint())
	g.created = r.varint()
	g.owner = r.string()
	g.name = r.string()
	if r.err {
		return nil, fmt.Errorf("group %q: corrupt record", id)
	}
	return g, nil
}

func encodeMember(u string, m *member, left bool) []byte {
	flags := byte(0)
	if left {
		flags = 1
	}
	b := []byte{1, flags}
	b = binary.AppendUvarint(b, m.joinedSeq)
	b = binary.AppendVarint(b, m.joinedAt)
	return appendString(b, u)
}

func decodeMember(v []byte) (string, *member, bool, error) {
	r := reader{b: v}
	if r.byte() != 1 {
		return "", nil, false, fmt.Errorf("member record: unknown version")
	}
	left := r.byte() == 1
	m := &member{joinedSeq: r.uvarint(), joinedAt: r.varint()}
	u := r.string()
	if r.err {
		return "", nil, false, fmt.Errorf("member record: corrupt")
	}
	return u, m, left, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	return consumed(r, v, n)
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	return consumed(r, v, n)
}

// consumed moves r past a varint of n bytes (n <= 0: malformed) and returns
// its value.
func consumed[T uint64 | int64](r *reader, v T, n int) T {
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err || uint64(len(r.b)) < n {
		r.err = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Info describes a group, for the server API.
type Info struct {
	GroupID   string
	Type      pb.GroupType
	Name      string
	Owner     string
	CreatedMs int64
	Members   int
}

// Info returns a group's description. It reads storage (the member count
// is a scan of the membership records), so any node answers without
// loading the group.
func (s *Service) Info(ctx context.Context, groupID string) (Info, error) {
	v, err := s.store.Get(ctx, storage.Key("g", groupID))
	if errors.Is(err, storage.ErrNotFound) {
		return Info{}, apierr.NotFound("group %q not found", groupID)
	}
	if err != nil {
		return Info{}, err
	}
	g, err := decodeMeta(groupID, v)
	if err != nil {
		return Info{}, err
	}
	info := Info{GroupID: g.id, Type: g.typ, Name: g.name, Owner: g.owner, CreatedMs: g.created}
	err = s.scanMembers(ctx, groupID, 0, func(MemberInfo, uint32) bool {
		info.Members++
		return true
	})
	return info, err
}

// MemberInfo is one member of a group in a page of Members.
type MemberInfo struct {
	UserID   string
	JoinedMs int64
}

// Members pages a group's current members by ordinal (join order): up to
// count members with ordinal >= from. next is the ordinal to continue
// from; finished reports that no member follows. Like Info it reads
// storage.
func (s *Service) Members(ctx context.Context, groupID string, from uint32, count int) (page []MemberInfo, next uint32, finished bool, err error) {
	next, finished = from, true
	err = s.scanMembers(ctx, groupID, from, func(m MemberInfo, ord uint32) bool {
		if len(page) == count {
			finished = false
			return false
		}
		page = append(page, m)
		next = ord + 1
		return true
	})
	return page, next, finished, err
}

// scanMembers calls fn with the stored present members of a group from
// ordinal from on, in ordinal order, while it returns true.
func (s *Service) scanMembers(ctx context.Context, groupID string, from uint32, fn func(m MemberInfo, ord uint32) bool) error {
	p := append(storage.Key("gm", groupID), '/')
	var decErr error
	err := s.store.Scan(ctx, storage.AppendUint32(storage.Key("gm", groupID), from), storage.PrefixEnd(p), false, func(k, v []byte) bool {
		u, m, left, err := decodeMember(v)
		if err != nil {
			decErr = err
			return false
		}
		return left || fn(MemberInfo{UserID: u, JoinedMs: m.joinedAt}, storage.Uint32Suffix(k))
	})
	if err == nil {
		err = decErr
	}
	return err
}
