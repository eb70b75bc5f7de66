package messages

import (
	"context"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/groups"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/storagetest"
)

type nopPusher struct{}

func (nopPusher) Push(string, *pb.ServerFrame)                             {}
func (nopPusher) PushEach(iter.Seq[string], *pb.ServerFrame)               {}
func (nopPusher) PushEachExcept(iter.Seq[string], uint64, *pb.ServerFrame) {}

// newNode is a messages service with its own Committer on a shared store,
// as one cluster node sees it; tweak, if given, changes its Config.
func newNode(t testing.TB, st storage.Store, tweak ...func(*Config)) *Service {
	t.Helper()
	c := storage.NewCommitter(st, 0)
	g, err := groups.New(context.Background(), st, c, nopPusher{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store: st, Committer: c, Groups: g, Pusher: nopPusher{},
		ReceiptGroupTypes: func(pb.GroupType) bool { return true },
		Online:            func(string) bool { return false },
	}
	for _, f := range tweak {
		f(&cfg)
	}
	s := New(cfg)
	t.Cleanup(func() {
		s.Close()
		c.Close()
	})
	return s
}

func sendC2C(t *testing.T, s *Service, from, to, clientMsgID string) *pb.Message {
	t.Helper()
	m, err := s.Send(context.Background(), Caller{UserID: from}, &pb.SendMessageRequest{
		Receiver: to, Text: "hi", ClientMsgId: clientMsgID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSendOnce: a send repeated with its client_msg_id — at once, racing,
// or on another node after the conversation moved — returns the first
// send's message and stores nothing more.
func TestSendOnce(t *testing.T) {
	st := openStore(t)
	a := newNode(t, st)
	first := sendC2C(t, a, "alice", "bob", "k1")
	if again := sendC2C(t, a, "alice", "bob", "k1"); again.MsgId != first.MsgId || again.Seq != first.Seq {
		t.Fatalf("repeat got %s/%d, want %s/%d", again.MsgId, again.Seq, first.MsgId, first.Seq)
	}
	// Racing repeats of a new key: one message.
	var wg sync.WaitGroup
	got := make([]*pb.Message, 8)
	for i := range got {
		wg.Go(func() { got[i] = sendC2C(t, a, "alice", "bob", "k2") })
	}
	wg.Wait()
	for _, m := range got {
		if m.MsgId != got[0].MsgId || m.Seq != 2 {
			t.Fatalf("racing repeats: %s/%d and %s/%d", m.MsgId, m.Seq, got[0].MsgId, got[0].Seq)
		}
	}
	// The same key from the other party, or in another conversation, is
	// another message.
	if m := sendC2C(t, a, "bob", "alice", "k1"); m.Seq != 3 {
		t.Fatalf("bob's k1: seq %d, want 3", m.Seq)
	}
	if m := sendC2C(t, a, "alice", "carol", "k1"); m.Seq != 1 || m.MsgId == first.MsgId {
		t.Fatalf("alice→carol k1: %s/%d", m.MsgId, m.Seq)
	}
	// Another node (no memory of the send) finds it in storage.
	b := newNode(t, st)
	if again := sendC2C(t, b, "alice", "bob", "k1"); again.MsgId != first.MsgId || again.Seq != 1 || again.Text != "hi" {
		t.Fatalf("repeat on another node: %s/%d %q", again.MsgId, again.Seq, again.Text)
	}
	if m := sendC2C(t, b, "alice", "bob", ""); m.Seq != 4 {
		t.Fatalf("next send on the other node: seq %d, want 4", m.Seq)
	}
}

// TestDropPartitionReloadsHead: a node that gets a C2C conversation back
// after another node sent in it continues from the stored head, never
// handing out a seq twice.
func TestDropPartitionReloadsHead(t *testing.T) {
	st := openStore(t)
	a, b := newNode(t, st), newNode(t, st)
	sendC2C(t, a, "alice", "bob", "")
	sendC2C(t, a, "alice", "bob", "")
	// The partition moves to b, which sends, then back to a.
	if m := sendC2C(t, b, "bob", "alice", ""); m.Seq != 3 {
		t.Fatalf("b: seq %d, want 3", m.Seq)
	}
	a.DropPartition(cluster.Of(conv.C2C("alice", "bob")))
	if m := sendC2C(t, a, "alice", "bob", ""); m.Seq != 4 {
		t.Fatalf("a after the move back: seq %d, want 4", m.Seq)
	}
}

// TestStaleCursorWriteRepeats: delivery cursors are written without fences
// by whichever node serves the device (cursors.go), so a late write from a
// node the device left can move a cursor back. That makes sync deliver
// messages again, never skip one: every stored cursor is a seq the device
// (or, for the baseline, one of the user's devices) acknowledged.
func TestStaleCursorWriteRepeats(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	a, b := newNode(t, st), newNode(t, st)
	for range 6 {
		sendC2C(t, a, "alice", "bob", "")
	}
	phone := Caller{UserID: "bob", SessionID: 1, DeviceID: "phone"}
	ack := func(s *Service, seq uint64) {
		t.Helper()
		if err := s.Ack(ctx, phone, &pb.AckRequest{Cursors: []*pb.SyncCursor{
			{Conversation: &pb.Conversation{PeerId: "alice"}, Seq: seq},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	ack(a, 2) // on node a, not written yet
	ack(b, 5) // the phone moved to node b, which writes first
	b.flushCursors()
	a.flushCursors() // a's late write moves the phone's cursor and the baseline back to 2

	// On a third node: the phone, and a device never seen (baseline).
	c := newNode(t, st)
	for _, device := range []string{"phone", "laptop"} {
		resp, err := c.Sync(ctx, Caller{UserID: "bob", SessionID: 2, DeviceID: device}, &pb.SyncRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, m := range resp.Messages {
			seqs = append(seqs, m.Seq)
		}
		if !slices.Equal(seqs, []uint64{3, 4, 5, 6}) {
			t.Errorf("%s syncs seqs %v, want [3 4 5 6]: 3 to 5 again, nothing skipped", device, seqs)
		}
	}
}

// TestAckReads: with the device's cursors in memory (after its sync), an
// ack that moves nothing reads nothing, and one that moves an existing
// cursor reads at most the conversation's head, not the membership: nothing
// when the acked message is in the cache of recent messages, as one just
// delivered is.
func TestAckReads(t *testing.T) {
	ctx := context.Background()
	st := &storagetest.Counting{Store: openStore(t)}
	// Online: the flush keeps the cursors in memory, as it does for a
	// user with a session.
	s := newNode(t, st, func(c *Config) { c.Online = func(string) bool { return true } })
	for range 6 {
		sendC2C(t, s, "alice", "bob", "")
	}
	if _, err := s.cfg.Groups.Create(ctx, "alice", pb.GroupType_GROUP_TYPE_WORK, "team", "", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	phone := Caller{UserID: "bob", SessionID: 1, DeviceID: "phone"}
	if _, err := s.Sync(ctx, phone, &pb.SyncRequest{}); err != nil {
		t.Fatal(err)
	}
	peer, group := &pb.Conversation{PeerId: "alice"}, &pb.Conversation{GroupId: "team"}
	tests := []struct {
		name    string
		c       *pb.Conversation
		seq     uint64
		lookups int64
	}{
		{"a new cursor: membership (the message is cached)", peer, 3, 1},
		{"a new group cursor: membership and head", group, 1, 2},
		{"the same seq again: nothing", peer, 3, 0},
		{"an older seq: nothing", peer, 2, 0},
		{"an existing cursor moves to a cached message: nothing", peer, 5, 0},
		{"past the head, clamped: head only", peer, 99, 1},
		{"at the head now: nothing", peer, 6, 0},
	}
	for _, tt := range tests {
		st.Reset()
		if err := s.Ack(ctx, phone, &pb.AckRequest{Cursors: []*pb.SyncCursor{{Conversation: tt.c, Seq: tt.seq}}}); err != nil {
			t.Fatal(err)
		}
		if got := st.Lookups(); got != tt.lookups {
			t.Errorf("%s: %d lookups, want %d", tt.name, got, tt.lookups)
		}
	}
	if got := s.cursors.get("bob", "phone", conv.C2C("bob", "alice")); got != 6 {
		t.Fatalf("cursor %d, want 6 (the head)", got)
	}
}

// TestExpiredDeviceSyncsFromBaseline: a device back after its record
// expired syncs like a new device, from the user's baseline, not from its
// old cursor.
func TestExpiredDeviceSyncsFromBaseline(t *testing.T) {
	ctx := context.Background()
	const ttl = 90 * 24 * time.Hour
	clk := newClock()
	s := newNode(t, openStore(t), func(c *Config) { c.Now, c.DeviceTTL = clk.now, ttl })
	for range 6 {
		sendC2C(t, s, "alice", "bob", "")
	}
	ack := func(device string, seq uint64) {
		t.Helper()
		caller := Caller{UserID: "bob", SessionID: 1, DeviceID: device}
		if err := s.Ack(ctx, caller, &pb.AckRequest{Cursors: []*pb.SyncCursor{
			{Conversation: &pb.Conversation{PeerId: "alice"}, Seq: seq},
		}}); err != nil {
			t.Fatal(err)
		}
		s.flushCursors()
	}
	ack("tablet", 2)
	clk.add(ttl)
	ack("phone", 5)
	clk.add(2 * deviceSeenRefresh)
	s.sweepDevices()
	resp, err := s.Sync(ctx, Caller{UserID: "bob", SessionID: 2, DeviceID: "tablet"}, &pb.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, m := range resp.Messages {
		seqs = append(seqs, m.Seq)
	}
	if !slices.Equal(seqs, []uint64{6}) {
		t.Errorf("returning tablet syncs seqs %v, want [6] (after the baseline 5)", seqs)
	}
}

// TestSyncReadsHeadsOnce: a sync reads what it needs of the user in one
// lookup and every conversation's head in another, so a device with
// nothing new costs two reads however many conversations its user is in,
// even where its cursors are not in memory.
func TestSyncReadsHeadsOnce(t *testing.T) {
	ctx := context.Background()
	st := &storagetest.Counting{Store: openStore(t)}
	s := newNode(t, st, func(c *Config) { c.Online = func(string) bool { return true } })
	for _, peer := range []string{"alice", "carol"} {
		sendC2C(t, s, peer, "bob", "")
	}
	for _, g := range []string{"team", "ops", "all"} {
		if _, err := s.cfg.Groups.Create(ctx, "alice", pb.GroupType_GROUP_TYPE_WORK, g, "", []string{"bob"}); err != nil {
			t.Fatal(err)
		}
	}
	phone := Caller{UserID: "bob", SessionID: 1, DeviceID: "phone"}
	first, err := s.Sync(ctx, phone, &pb.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Each sync: nothing new, and 2 lookups: the user's groups and C2C
	// peers (and its cursors where they are not in memory) together, then
	// the five heads.
	for _, node := range []struct {
		name string
		s    *Service
	}{
		{"warm", s},
		// None of bob's cursors in memory: another node, a restart (a
		// login storm).
		{"cold", newNode(t, st, func(c *Config) { c.Online = func(string) bool { return true } })},
	} {
		st.Reset()
		again, err := node.s.Sync(ctx, phone, &pb.SyncRequest{Cursors: first.Cursors})
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Messages) != 0 {
			t.Fatalf("%s: nothing new, but the sync had %d messages", node.name, len(again.Messages))
		}
		if got := st.Lookups(); got != 2 {
			t.Errorf("%s: a sync over 5 conversations made %d lookups, want 2", node.name, got)
		}
	}
}

// TestAckReadsHeadsOnce: an ack moving cursors of several conversations to
// messages not in the cache (an older backlog, or after a restart) reads
// their heads in one lookup.
func TestAckReadsHeadsOnce(t *testing.T) {
	ctx := context.Background()
	st := &storagetest.Counting{Store: openStore(t)}
	s := newNode(t, st, func(c *Config) { c.Online = func(string) bool { return true } })
	peers := []string{"alice", "carol", "dave"}
	for _, p := range peers {
		sendC2C(t, s, p, "bob", "")
		sendC2C(t, s, p, "bob", "")
	}
	phone := Caller{UserID: "bob", SessionID: 1, DeviceID: "phone"}
	ack := func(seq uint64) {
		t.Helper()
		req := &pb.AckRequest{}
		for _, p := range peers {
			req.Cursors = append(req.Cursors, &pb.SyncCursor{Conversation: &pb.Conversation{PeerId: p}, Seq: seq})
		}
		if err := s.Ack(ctx, phone, req); err != nil {
			t.Fatal(err)
		}
	}
	ack(1)
	// As after a restart, or on a node that stored none of these messages.
	s.recent, s.heads = newMsgCache(s.cfg.CacheMessages), newKnownHeads(s.cfg.CacheMessages)
	st.Reset()
	ack(2)
	if got := st.Lookups(); got != 1 {
		t.Errorf("moving 3 cursors to uncached messages made %d lookups, want 1", got)
	}
	for _, p := range peers {
		if got := s.cursors.get("bob", "phone", conv.C2C("bob", p)); got != 2 {
			t.Errorf("%s: cursor %d, want 2", p, got)
		}
	}
}

// TestAckKnowsHeads: on a node that did not store a conversation's
// messages (its recent-message cache never holds them), an ack reads the
// head once; later acks up to it read nothing, and one past it reads the
// head again and stops there.
func TestAckKnowsHeads(t *testing.T) {
	ctx := context.Background()
	st := &storagetest.Counting{Store: openStore(t)}
	owner := newNode(t, st)
	other := newNode(t, st, func(c *Config) { c.Online = func(string) bool { return true } })
	sendC2C(t, owner, "alice", "bob", "")
	sendC2C(t, owner, "alice", "bob", "")
	ack := func(device string, seq uint64) int64 {
		t.Helper()
		st.Reset()
		err := other.Ack(ctx, Caller{UserID: "bob", SessionID: 1, DeviceID: device}, &pb.AckRequest{
			Cursors: []*pb.SyncCursor{{Conversation: &pb.Conversation{PeerId: "alice"}, Seq: seq}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return st.Lookups()
	}
	ack("phone", 0) // loads the phone's cursors
	if got := ack("phone", 1); got != 2 {
		t.Errorf("first ack on this node: %d lookups, want 2 (the conversation, for a new cursor, and its head)", got)
	}
	if got := ack("phone", 2); got != 0 {
		t.Errorf("ack up to the head read before: %d lookups, want 0", got)
	}
	if got := ack("phone", 9); got != 1 {
		t.Errorf("ack past the known head: %d lookups, want 1", got)
	}
	if got := other.cursors.get("bob", "phone", conv.C2C("bob", "alice")); got != 2 {
		t.Errorf("cursor %d, want 2 (the head)", got)
	}
}
