package receipts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"go.uber.org/goleak"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRoster keeps groups in memory; Present is replaced copy-on-write.
type fakeRoster struct {
	mu     sync.RWMutex
	groups map[string]*fakeGroup
}

type fakeGroup struct {
	ords       map[string]uint32
	users      []string // by ordinal; append-only
	present    *roaring.Bitmap
	departures uint64
}

func newFakeRoster() *fakeRoster { return &fakeRoster{groups: make(map[string]*fakeGroup)} }

func (r *fakeRoster) join(group string, users ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[group]
	if g == nil {
		g = &fakeGroup{ords: make(map[string]uint32), present: roaring.New()}
		r.groups[group] = g
	}
	p := g.present.Clone()
	for _, u := range users {
		if _, ok := g.ords[u]; ok {
			continue
		}
		ord := uint32(len(g.users))
		g.users = append(g.users, u)
		g.ords[u] = ord
		p.Add(ord)
	}
	g.present = p
}

func (r *fakeRoster) leave(group string, users ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[group]
	p := g.present.Clone()
	for _, u := range users {
		if ord, ok := g.ords[u]; ok {
			delete(g.ords, u)
			p.Remove(ord)
		}
	}
	g.present = p
	g.departures++
}

func (r *fakeRoster) watermark(group string) uint32 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return uint32(len(r.groups[group].users))
}

func (r *fakeRoster) Ordinal(_ context.Context, group, user string) (uint32, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	g := r.groups[group]
	if g == nil {
		return 0, false
	}
	o, ok := g.ords[user]
	return o, ok
}

func (r *fakeRoster) Snapshot(_ context.Context, group string) (RosterSnapshot, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	g := r.groups[group]
	if g == nil {
		return RosterSnapshot{}, false
	}
	users := g.users
	return RosterSnapshot{
		Present:    g.present,
		Departures: g.departures,
		User: func(ord uint32) (string, bool) {
			if int(ord) < len(users) {
				return users[ord], true
			}
			return "", false
		},
	}, true
}

// fakeMessages stores messages by (conv, seq). Resolve checks existence and
// msg_id only, so that the engine's own permission checks are exercised.
type fakeMessages struct {
	mu     sync.RWMutex
	msgs   map[msgKey]Msg
	seqs   map[string]uint64
	roster *fakeRoster
	now    func() time.Time
}

func c2cConv(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "c:" + a + ":" + b
}

func groupConv(g string) string { return "g:" + g }

func (f *fakeMessages) send(from, to, group string, need bool) Msg {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := Msg{Sender: from, Receiver: to, GroupID: group, NeedReadReceipt: need, Time: f.now()}
	if group != "" {
		m.Conv = groupConv(group)
		m.Watermark = f.roster.watermark(group)
	} else {
		m.Conv = c2cConv(from, to)
	}
	f.seqs[m.Conv]++
	m.Seq = f.seqs[m.Conv]
	m.ID = fmt.Sprintf("%s-%d", m.Conv, m.Seq)
	f.msgs[msgKey{m.Conv, m.Seq}] = m
	return m
}

func (f *fakeMessages) Resolve(_ context.Context, user string, refs []*pb.MessageRef) ([]Msg, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Msg, len(refs))
	for i, r := range refs {
		var conv string
		if g := r.GetConversation().GetGroupId(); g != "" {
			conv = groupConv(g)
		} else {
			conv = c2cConv(user, r.GetConversation().GetPeerId())
		}
		m, ok := f.msgs[msgKey{conv, r.GetSeq()}]
		if !ok || m.ID != r.GetMsgId() {
			return nil, apierr.NotFound("no message %s", r.GetMsgId())
		}
		out[i] = m
	}
	return out, nil
}

// refFor returns the ref to m as seen by user.
func refFor(user string, m Msg) *pb.MessageRef {
	c := &pb.Conversation{GroupId: m.GroupID}
	if m.GroupID == "" {
		c.PeerId = m.Sender
		if m.Sender == user {
			c.PeerId = m.Receiver
		}
	}
	return &pb.MessageRef{Conversation: c, Seq: m.Seq, MsgId: m.ID}
}

// fakePusher records every frame. Users in alone have no session but the
// one a push skips (MayReach), and PushExcept must not be called for them.
type fakePusher struct {
	mu     sync.Mutex
	frames map[string][]*pb.ServerFrame
	alone  map[string]bool
	t      testing.TB
}

func (p *fakePusher) MayReach(user string, except uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return except == 0 || !p.alone[user]
}

func (p *fakePusher) PushExcept(user string, except uint64, f *pb.ServerFrame) {
	if !p.MayReach(user, except) {
		p.t.Errorf("a push to %s that reaches nobody was built: %v", user, f)
	}
	p.Push(user, f)
}

func (p *fakePusher) Push(user string, f *pb.ServerFrame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frames == nil {
		p.frames = make(map[string][]*pb.ServerFrame)
	}
	p.frames[user] = append(p.frames[user], f)
}

// receipts returns the receipt pushes to user for msgID, in push order.
func (p *fakePusher) receipts(user, msgID string) []*pb.MessageReceipt {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*pb.MessageReceipt
	for _, f := range p.frames[user] {
		for _, r := range f.GetReceipts_().GetReceipts() {
			if r.GetMsgId() == msgID {
				out = append(out, r)
			}
		}
	}
	return out
}

func (p *fakePusher) selfRefs(user string) []*pb.MessageRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*pb.MessageRef
	for _, f := range p.frames[user] {
		out = append(out, f.GetSelfReceipts().GetMessages()...)
	}
	return out
}

func (p *fakePusher) c2cRead(user string) []*pb.MessageReceipt {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*pb.MessageReceipt
	for _, f := range p.frames[user] {
		out = append(out, f.GetC2CRead().GetReceipts()...)
	}
	return out
}

// env is an engine on a real Pebble store and Committer.
type env struct {
	t      testing.TB
	dir    string
	clock  atomic.Int64 // ms
	store  *pebblestore.Store
	com    *storage.Committer
	eng    *Engine
	roster *fakeRoster
	msgs   *fakeMessages
	push   *fakePusher
	cfg    func(*Config)
	closed bool
}

func newEnv(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	v := &env{t: t, dir: t.TempDir(), roster: newFakeRoster(), push: &fakePusher{t: t}, cfg: tweak}
	v.clock.Store(1_000_000)
	v.msgs = &fakeMessages{msgs: make(map[msgKey]Msg), seqs: make(map[string]uint64), roster: v.roster, now: v.now}
	v.open()
	t.Cleanup(v.close)
	return v
}

func (v *env) now() time.Time { return time.UnixMilli(v.clock.Load()) }

func (v *env) open() {
	v.t.Helper()
	s, err := pebblestore.Open(v.dir)
	if err != nil {
		v.t.Fatal(err)
	}
	v.store = s
	v.com = storage.NewCommitter(s, 0)
	cfg := Config{
		Store: s, Committer: v.com, Messages: v.msgs, Roster: v.roster, Pusher: v.push,
		Now: v.now,
	}
	if v.cfg != nil {
		v.cfg(&cfg)
	}
	if v.eng, err = New(cfg); err != nil {
		v.t.Fatal(err)
	}
	v.closed = false
}

func (v *env) close() {
	if v.closed {
		return
	}
	v.closed = true
	v.eng.Close()
	v.com.Close()
	if err := v.store.Close(); err != nil {
		v.t.Error(err)
	}
}

// restart closes everything and reopens the store with a new engine.
func (v *env) restart() {
	v.close()
	v.open()
}

func codeOf(err error) int32 {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return 0
	}
	return -1
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
