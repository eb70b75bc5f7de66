// Package groups owns groups and their membership: creation, invite, join,
// quit, kick, the membership ordinals (join sequence numbers) that read
// receipts are counted over, and each group's message sequence, so that a
// message's seq and its membership watermark are taken atomically with
// respect to membership changes.
//
// Every group is held in memory (loaded at start) and written through the
// storage.Committer. Lock order: Service.mu, then group.mu; no other lock is
// taken while holding either, and callbacks run with group.mu held must not
// call back into the Service.
package groups

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
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

// Service manages all groups.
type Service struct {
	store  storage.Store
	commit *storage.Committer
	push   Pusher
	now    func() time.Time

	mu     sync.RWMutex
	groups map[string]*group
	byUser map[string]map[string]struct{} // user → IDs of groups it is in
}

type group struct {
	id      string
	typ     pb.GroupType
	name    string
	owner   string
	created int64

	mu         sync.Mutex
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

// New loads every group from the store.
func New(ctx context.Context, store storage.Store, commit *storage.Committer, push Pusher) (*Service, error) {
	s := &Service{
		store:  store,
		commit: commit,
		push:   push,
		now:    time.Now,
		groups: make(map[string]*group),
		byUser: make(map[string]map[string]struct{}),
	}
	if err := s.load(ctx); err != nil {
		return nil, fmt.Errorf("groups: load: %w", err)
	}
	return s, nil
}

func (s *Service) load(ctx context.Context) error {
	p := []byte("g/")
	var scanErr error
	err := s.store.Scan(ctx, p, storage.PrefixEnd(p), false, func(k, v []byte) bool {
		g, err := decodeMeta(string(k[len(p):]), v)
		if err != nil {
			scanErr = err
			return false
		}
		s.groups[g.id] = g
		return true
	})
	if err != nil {
		return err
	}
	if scanErr != nil {
		return scanErr
	}
	for _, g := range s.groups {
		if err := s.loadMembers(ctx, g); err != nil {
			return err
		}
		head, err := conv.HeadSeq(ctx, s.store, conv.Group(g.id))
		if err != nil {
			return err
		}
		g.headSeq = head
	}
	return nil
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
		s.indexUser(user, g.id)
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

func (s *Service) indexUser(user, groupID string) {
	set := s.byUser[user]
	if set == nil {
		set = make(map[string]struct{})
		s.byUser[user] = set
	}
	set[groupID] = struct{}{}
}

func (s *Service) unindexUser(user, groupID string) {
	if set := s.byUser[user]; set != nil {
		delete(set, groupID)
		if len(set) == 0 {
			delete(s.byUser, user)
		}
	}
}

func (s *Service) get(groupID string) (*group, error) {
	s.mu.RLock()
	g := s.groups[groupID]
	s.mu.RUnlock()
	if g == nil {
		return nil, apierr.NotFound("group %q not found", groupID)
	}
	return g, nil
}

// Create creates a group owned by owner with the given members, and returns
// its ID (server-chosen when groupID is "").
func (s *Service) Create(ctx context.Context, owner string, typ pb.GroupType, groupID, name string, memberIDs []string) (string, error) {
	if _, ok := pb.GroupType_name[int32(typ)]; !ok || typ == pb.GroupType_GROUP_TYPE_UNSPECIFIED {
		return "", apierr.InvalidArgument("unknown group type %d", typ)
	}
	if groupID == "" {
		groupID = newGroupID()
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
	}
	g.mu.Lock()
	g.addLocked(append([]string{owner}, users...), now)
	g.mu.Unlock()

	writes := []storage.Op{{Key: storage.Key("g", g.id), Value: encodeMeta(g)}}
	for _, u := range g.users {
		writes = append(writes, g.memberOp(u, g.members[u], false))
	}
	// Queue the group's records before anyone can see it, so that no message
	// or membership change of the group commits ahead of them.
	g.mu.Lock()
	s.mu.Lock()
	if s.groups[groupID] != nil {
		s.mu.Unlock()
		g.mu.Unlock()
		return "", apierr.New(pb.CodeAlreadyExists, "group %q already exists", groupID)
	}
	s.groups[groupID] = g
	s.mu.Unlock()
	err = s.commitUnlock(ctx, g, writes)
	if err != nil {
		s.mu.Lock()
		delete(s.groups, groupID)
		s.mu.Unlock()
		return "", err
	}
	s.mu.Lock()
	for u := range g.members {
		s.indexUser(u, groupID)
	}
	s.mu.Unlock()
	s.pushEvent(g, pb.GroupEventKind_GROUP_EVENT_CREATED, owner, g.users, "", nil)
	return groupID, nil
}

// Invite adds users to a group. In a Work group any member may invite; in
// the other types only the owner.
func (s *Service) Invite(ctx context.Context, op, groupID string, userIDs []string) error {
	g, err := s.get(groupID)
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
	g.mu.Lock()
	if g.members[op] == nil {
		g.mu.Unlock()
		return apierr.PermissionDenied("not a member of group %q", groupID)
	}
	if g.typ != pb.GroupType_GROUP_TYPE_WORK && op != g.owner {
		g.mu.Unlock()
		return apierr.PermissionDenied("only the owner may invite to a %s group", typeName(g.typ))
	}
	g.mu.Unlock()
	return s.add(ctx, g, op, users)
}

// Join adds user to a group that admits members without invitation (all
// types but Work).
func (s *Service) Join(ctx context.Context, user, groupID string) error {
	g, err := s.get(groupID)
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
		writes = append(writes, g.memberOp(u, g.members[u], false))
	}
	if err := s.commitUnlock(ctx, g, writes); err != nil {
		return err
	}
	s.mu.Lock()
	for _, u := range added {
		s.indexUser(u, g.id)
	}
	s.mu.Unlock()
	s.pushEvent(g, pb.GroupEventKind_GROUP_EVENT_JOINED, op, added, "", nil)
	return nil
}

// Quit removes user from a group. The owner cannot quit.
func (s *Service) Quit(ctx context.Context, user, groupID string) error {
	g, err := s.get(groupID)
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
	g, err := s.get(groupID)
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
		writes = append(writes, g.memberOp(u, gm[u], true))
	}
	if err := s.commitUnlock(ctx, g, writes); err != nil {
		return err
	}
	s.mu.Lock()
	for _, u := range gone {
		s.unindexUser(u, g.id)
	}
	s.mu.Unlock()
	s.pushEvent(g, kind, op, gone, reason, gone)
	return nil
}

// commitUnlock queues ops while g.mu is held — the Committer applies
// submissions in order, so this keeps the group's changes in the order they
// were made — then unlocks g.mu and waits until the ops are durable.
func (s *Service) commitUnlock(ctx context.Context, g *group, ops []storage.Op) error {
	wait, err := s.commit.Enqueue(ctx, setAll(ops))
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

// memberOp is the write of u's membership record. The record is kept after a
// departure (left=true) so that ordinals are never reused.
func (g *group) memberOp(u string, m *member, left bool) storage.Op {
	return storage.Op{Key: storage.AppendUint32(storage.Key("gm", g.id), m.ord), Value: encodeMember(u, m, left)}
}

// setAll returns a Committer prepare function that writes ops, encoded
// beforehand so that the commit goroutine takes no group lock.
func setAll(ops []storage.Op) func(*storage.Batch) {
	return func(b *storage.Batch) { b.Ops = append(b.Ops, ops...) }
}

func (s *Service) pushEvent(g *group, kind pb.GroupEventKind, op string, users []string, reason string, alsoTo []string) {
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_GroupEvent{GroupEvent: &pb.GroupEvent{
		GroupId: g.id, Kind: kind, UserIds: users, OpUserId: op,
		GroupType: g.typ, Reason: reason, TimeMs: s.now().UnixMilli(),
	}}}
	snap, _ := s.Snapshot(g.id)
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
func (s *Service) Sequence(groupID, sender string, fn func(seq uint64, watermark uint32, members receipts.RosterSnapshot) error) error {
	g, err := s.get(groupID)
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

// Member returns user's membership of a group.
func (s *Service) Member(groupID, user string) (Membership, bool) {
	g, err := s.get(groupID)
	if err != nil {
		return Membership{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[user]
	if m == nil {
		return Membership{}, false
	}
	return Membership{Ordinal: m.ord, JoinedSeq: m.joinedSeq}, true
}

// Ordinal implements receipts.Roster.
func (s *Service) Ordinal(groupID, user string) (uint32, bool) {
	m, ok := s.Member(groupID, user)
	return m.Ordinal, ok
}

// Snapshot implements receipts.Roster.
func (s *Service) Snapshot(groupID string) (receipts.RosterSnapshot, bool) {
	g, err := s.get(groupID)
	if err != nil {
		return receipts.RosterSnapshot{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.snapshotLocked(), true
}

// snapshotLocked returns an immutable view of the membership: present is
// never modified once published, and users is append-only. Lock g.mu.
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

// Head returns the highest seq assigned in a group.
func (s *Service) Head(groupID string) (uint64, bool) {
	g, err := s.get(groupID)
	if err != nil {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.headSeq, true
}

// Type returns a group's type.
func (s *Service) Type(groupID string) (pb.GroupType, bool) {
	g, err := s.get(groupID)
	if err != nil {
		return 0, false
	}
	return g.typ, true
}

// GroupHead is one of a user's groups, for sync.
type GroupHead struct {
	GroupID   string
	JoinedSeq uint64
	HeadSeq   uint64
}

// UserGroups lists the groups user is a member of, with their head seqs.
func (s *Service) UserGroups(user string) []GroupHead {
	s.mu.RLock()
	ids := make([]string, 0, len(s.byUser[user]))
	for id := range s.byUser[user] {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	out := make([]GroupHead, 0, len(ids))
	for _, id := range ids {
		g, err := s.get(id)
		if err != nil {
			continue
		}
		g.mu.Lock()
		if m := g.members[user]; m != nil {
			out = append(out, GroupHead{GroupID: id, JoinedSeq: m.joinedSeq, HeadSeq: g.headSeq})
		}
		g.mu.Unlock()
	}
	return out
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

func newGroupID() string {
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

// Info returns a group's description.
func (s *Service) Info(groupID string) (Info, error) {
	g, err := s.get(groupID)
	if err != nil {
		return Info{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return Info{GroupID: g.id, Type: g.typ, Name: g.name, Owner: g.owner, CreatedMs: g.created, Members: len(g.members)}, nil
}

// MemberInfo is one member of a group in a page of Members.
type MemberInfo struct {
	UserID   string
	JoinedMs int64
}

// Members pages a group's current members by ordinal (join order): up to
// count members with ordinal >= from. next is the ordinal to continue
// from; finished reports that no member follows.
func (s *Service) Members(groupID string, from uint32, count int) (page []MemberInfo, next uint32, finished bool, err error) {
	g, err := s.get(groupID)
	if err != nil {
		return nil, 0, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	it := g.present.Iterator()
	it.AdvanceIfNeeded(from)
	next = from
	for it.HasNext() {
		if len(page) == count {
			return page, next, false, nil
		}
		o := it.Next()
		u := g.users[o]
		page = append(page, MemberInfo{UserID: u, JoinedMs: g.members[u].joinedAt})
		next = o + 1
	}
	return page, next, true, nil
}
