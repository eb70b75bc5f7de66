package im

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/wsframe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type recorder struct {
	BaseAdvancedMsgListener
	mu       sync.Mutex
	msgs     []*Message
	receipts []*MessageReceipt
	c2c      []*MessageReceipt
	self     []*Message
	groups   []*GroupEvent
	conn     []string
}

func (r *recorder) OnRecvNewMessage(m *Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}
func (r *recorder) OnRecvMessageReadReceipts(rs []*MessageReceipt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts = append(r.receipts, rs...)
}
func (r *recorder) OnRecvC2CReadReceipt(rs []*MessageReceipt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c2c = append(r.c2c, rs...)
}
func (r *recorder) OnRecvSelfReadReceipts(ms []*Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.self = append(r.self, ms...)
}
func (r *recorder) OnGroupEvent(ev *GroupEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groups = append(r.groups, ev)
}
func (r *recorder) OnConnected() { r.addConn("connected") }
func (r *recorder) OnDisconnected(err error) {
	r.addConn("disconnected")
}
func (r *recorder) OnReconnecting() { r.addConn("reconnecting") }
func (r *recorder) addConn(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn = append(r.conn, s)
}

// texts returns the Text of the messages received so far.
func (r *recorder) texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		out = append(out, m.Text)
	}
	return out
}

func (r *recorder) waitTexts(t *testing.T, want []string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		if got := r.texts(); !slices.Equal(got, want) {
			return fmt.Errorf("messages %q, want %q", got, want)
		}
		return nil
	})
}

var (
	_ AdvancedMsgListener = (*recorder)(nil)
	_ SelfReceiptListener = (*recorder)(nil)
	_ GroupListener       = (*recorder)(nil)
	_ ConnListener        = (*recorder)(nil)
)

func dial(t *testing.T, fs *fakeServer, user string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithBackoff(time.Millisecond, 20*time.Millisecond)}, opts...)
	c, err := Dial(ctx, fs.url(), user, "tok-"+user, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var ie *Error
	if !errors.As(err, &ie) || ie.Code != code {
		t.Fatalf("err = %v, want code %d", err, code)
	}
}

func pbMsg(seq uint64, sender, receiver, group, text string) *pb.Message {
	return &pb.Message{MsgId: fmt.Sprintf("id%d", seq), Seq: seq, Sender: sender, Receiver: receiver, GroupId: group, Text: text, TimeMs: 1000}
}

func newMsgFrame(m *pb.Message) *pb.ServerFrame {
	return &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: m}}
}

func TestErrorString(t *testing.T) {
	e := &Error{Code: CodePermissionDenied, Desc: "not a member"}
	if got, want := e.Error(), "im: PermissionDenied (10003): not a member"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&Error{Code: 42}).Error(), "im: Code (42)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"ws://h:1":     "ws://h:1/v1/ws",
		"http://h:1/":  "ws://h:1/v1/ws",
		"https://h/im": "wss://h/im/v1/ws",
		"wss://h:443":  "wss://h:443/v1/ws",
	} {
		got, err := endpoint(in)
		if err != nil || got != want {
			t.Errorf("endpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := endpoint("ftp://h"); err == nil {
		t.Error("endpoint(ftp) succeeded")
	}
}

func TestLoginAndRequests(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "alice")
	ctx := ctxT(t)
	if c.UserID() != "alice" {
		t.Errorf("UserID = %q", c.UserID())
	}
	gid, err := c.CreateGroup(ctx, GroupMeeting, "", "team", "bob", "carol")
	if err != nil || gid != "@auto" {
		t.Fatalf("CreateGroup = %q, %v", gid, err)
	}
	f := fs.waitFrame(t, func(f *pb.ClientFrame) bool { return f.GetCreateGroup() != nil })
	if cg := f.GetCreateGroup(); cg.GetType() != pb.GroupType_GROUP_TYPE_MEETING || cg.GetName() != "team" || !slices.Equal(cg.GetMemberIds(), []string{"bob", "carol"}) {
		t.Errorf("create_group request = %v", cg)
	}
	if _, err := c.CreateGroup(ctx, "Nope", "", ""); err == nil {
		t.Error("unknown group type accepted")
	} else {
		wantCode(t, err, CodeInvalidArgument)
	}
	wantCode(t, c.JoinGroup(ctx, "work1", "hi"), CodePermissionDenied)
	for _, err := range []error{
		c.JoinGroup(ctx, "pub1", "hi"),
		c.InviteUserToGroup(ctx, "g", []string{"x"}),
		c.QuitGroup(ctx, "g"),
		c.KickGroupMember(ctx, "g", []string{"x"}, "spam"),
		c.MarkC2CMessageAsRead(ctx, "bob"),
	} {
		if err != nil {
			t.Errorf("request failed: %v", err)
		}
	}
	f = fs.waitFrame(t, func(f *pb.ClientFrame) bool { return f.GetKick() != nil })
	if k := f.GetKick(); k.GetGroupId() != "g" || k.GetReason() != "spam" {
		t.Errorf("kick = %v", k)
	}
	if l := c.Limits(); l.MaxFrameBytes != 65536 || l.MaxBatch != 100 {
		t.Errorf("Limits = %+v", l)
	}
}

func TestSendMessage(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "alice")
	ctx := ctxT(t)

	msg := c.CreateTextMessage("hello")
	_, err := c.SendMessage(ctx, msg, "", "", PriorityNormal, false)
	wantCode(t, err, CodeInvalidArgument)
	_, err = c.SendMessage(ctx, msg, "bob", "g", PriorityNormal, false)
	wantCode(t, err, CodeInvalidArgument)

	msg.NeedReadReceipt = true
	sent, err := c.SendMessage(ctx, msg, "bob", "", PriorityHigh, false)
	if err != nil {
		t.Fatal(err)
	}
	if sent == msg {
		t.Error("SendMessage returned msg itself, want a copy")
	}
	for _, m := range []*Message{sent, msg} {
		if m.MsgID != "m1" || m.Seq != 7 || m.Sender != "alice" || m.UserID != "bob" || m.GroupID != "" ||
			!m.IsSelf || !m.NeedReadReceipt || m.Priority != PriorityHigh || m.Timestamp.UnixMilli() != 1700000000000 {
			t.Errorf("sent message = %+v", m)
		}
	}
	f := fs.waitFrame(t, func(f *pb.ClientFrame) bool { return f.GetSendMessage() != nil })
	if r := f.GetSendMessage(); r.GetReceiver() != "bob" || r.GetText() != "hello" || !r.GetNeedReadReceipt() || r.GetPriority() != pb.Priority_PRIORITY_HIGH {
		t.Errorf("send_message = %v", r)
	}

	cm := c.CreateCustomMessage([]byte{0, 1, 2})
	sent, err = c.SendMessage(ctx, cm, "", "g1", PriorityLow, true)
	if err != nil {
		t.Fatal(err)
	}
	if sent.ElemType != ElemCustom || !slices.Equal(sent.CustomData, []byte{0, 1, 2}) || sent.GroupID != "g1" || sent.UserID != "" || !sent.OnlineUserOnly {
		t.Errorf("custom message = %+v", sent)
	}
}

func TestUnauthenticated(t *testing.T) {
	fs := newFake(t)
	_, err := Dial(ctxT(t), fs.url(), "alice", "wrong", WithBackoff(time.Millisecond, time.Millisecond))
	wantCode(t, err, CodeUnauthenticated)
	if n := fs.logins.Load(); n != 1 {
		t.Errorf("%d login attempts, want 1", n)
	}
}

func TestKickoffUnauthenticatedStops(t *testing.T) {
	fs := newFake(t)
	r := &recorder{}
	c := dial(t, fs, "alice", WithListener(r))
	s := fs.waitSession(t)
	s.push(&pb.ServerFrame{Body: &pb.ServerFrame_Kickoff{Kickoff: &pb.Kickoff{Reason: &pb.Error{Code: pb.CodeUnauthenticated, Desc: "token revoked"}}}})
	_, err := c.Ping(ctxT(t)) // waits for the end of the session, then fails
	for err == nil {
		_, err = c.Ping(ctxT(t))
	}
	wantCode(t, err, CodeUnauthenticated)
	if n := fs.logins.Load(); n != 1 {
		t.Errorf("%d logins, want 1 (no reconnect after Unauthenticated)", n)
	}
}

func TestPipelinedOutOfOrder(t *testing.T) {
	fs := newFake(t)
	const n = 20
	var mu sync.Mutex
	var held []*pb.ClientFrame
	var sess *fakeSess
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		if f.GetHistory() == nil {
			fs.defaultHandle(s, f)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		held = append(held, f)
		sess = s
		if len(held) < n {
			return
		}
		for i := len(held) - 1; i >= 0; i-- { // answer in reverse order
			h := held[i]
			peer := h.GetHistory().GetConversation().GetPeerId()
			sess.send(&pb.ServerFrame{Id: h.GetId(), Body: &pb.ServerFrame_History{History: &pb.HistoryResponse{
				Messages: []*pb.Message{pbMsg(h.GetHistory().GetBeforeSeq()-1, peer, "alice", "", "from "+peer)},
			}}})
		}
	})
	c := dial(t, fs, "alice")
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer := fmt.Sprintf("u%d", i)
			ms, err := c.GetC2CHistoryMessageList(ctx, peer, 1, &Message{Seq: uint64(100 + i)})
			if err != nil {
				errs <- err
				return
			}
			if len(ms) != 1 || ms[0].Text != "from "+peer || ms[0].UserID != peer || ms[0].Seq != uint64(99+i) || ms[0].IsSelf {
				errs <- fmt.Errorf("%s got %+v", peer, ms[0])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPushDispatchOrderAndRemove(t *testing.T) {
	fs := newFake(t)
	a, b := &recorder{}, &recorder{}
	c := dial(t, fs, "bob")
	c.AddAdvancedMsgListener(a)
	c.AddAdvancedMsgListener(b)
	c.AddAdvancedMsgListener(b) // no duplicate
	c.AddGroupListener(b)
	s := fs.waitSession(t)
	var want []string
	for i := 1; i <= 50; i++ {
		s.push(newMsgFrame(pbMsg(uint64(i), "alice", "bob", "", fmt.Sprint(i))))
		want = append(want, fmt.Sprint(i))
	}
	a.waitTexts(t, want)
	b.waitTexts(t, want)

	c.RemoveAdvancedMsgListener(a)
	s.push(newMsgFrame(pbMsg(51, "alice", "bob", "", "51")))
	s.push(&pb.ServerFrame{Body: &pb.ServerFrame_GroupEvent{GroupEvent: &pb.GroupEvent{
		GroupId: "g", Kind: pb.GroupEventKind_GROUP_EVENT_KICKED, UserIds: []string{"carol"}, OpUserId: "alice",
		GroupType: pb.GroupType_GROUP_TYPE_PUBLIC, Reason: "spam", TimeMs: 5000,
	}}})
	b.waitTexts(t, append(want, "51"))
	checkFor(t, 10*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.groups) != 1 {
			return fmt.Errorf("%d group events", len(b.groups))
		}
		return nil
	})
	if got := a.texts(); len(got) != 50 {
		t.Errorf("removed listener got %d messages, want 50", len(got))
	}
	ev := b.groups[0]
	if ev.GroupID != "g" || ev.Kind != GroupEventKicked || !slices.Equal(ev.UserIDs, []string{"carol"}) || ev.OpUserID != "alice" ||
		ev.GroupType != GroupPublic || ev.Reason != "spam" || ev.Time.UnixMilli() != 5000 {
		t.Errorf("group event = %+v", ev)
	}
	m := b.msgs[0]
	if m.UserID != "alice" || m.Sender != "alice" || m.IsSelf || m.MsgID != "id1" {
		t.Errorf("message = %+v", m)
	}
}

func TestReceiptConversions(t *testing.T) {
	fs := newFake(t)
	var reqs sync.Map
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		id := f.GetId()
		switch {
		case f.GetGetReceipts() != nil:
			reqs.Store("get", f.GetGetReceipts())
			s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_GetReceipts{GetReceipts: &pb.GetReceiptsResponse{Receipts: []*pb.MessageReceipt{
				{MsgId: "g1", GroupId: "grp", ReadCount: 2, UnreadCount: 3, Seq: 4},
				{MsgId: "c1", UserId: "bob", IsPeerRead: true, Seq: 9},
			}}}})
		case f.GetReadMembers() != nil:
			reqs.Store("members", f.GetReadMembers())
			s.send(&pb.ServerFrame{Id: id, Body: &pb.ServerFrame_ReadMembers{ReadMembers: &pb.ReadMembersResponse{
				Members: []*pb.GroupMember{{UserId: "bob", NickName: "Bob", FaceUrl: "http://f", ReadTimeMs: 3000}, {UserId: "carol"}},
				NextSeq: 17, IsFinished: false,
			}}})
		case f.GetSendReceipts() != nil:
			reqs.Store("send", f.GetSendReceipts())
			s.ok(id)
		default:
			fs.defaultHandle(s, f)
		}
	})
	r := &recorder{}
	c := dial(t, fs, "alice", WithListener(r))
	ctx := ctxT(t)
	gmsg := &Message{MsgID: "g1", Seq: 4, GroupID: "grp", Sender: "alice"}
	cmsg := &Message{MsgID: "c1", Seq: 9, UserID: "bob", Sender: "alice"}

	rs, err := c.GetMessageReadReceipts(ctx, []*Message{gmsg, cmsg})
	if err != nil {
		t.Fatal(err)
	}
	want := []MessageReceipt{
		{MsgID: "g1", GroupID: "grp", ReadCount: 2, UnreadCount: 3, Seq: 4},
		{MsgID: "c1", UserID: "bob", IsPeerRead: true, Seq: 9},
	}
	if len(rs) != 2 || *rs[0] != want[0] || *rs[1] != want[1] {
		t.Errorf("receipts = %+v %+v", rs[0], rs[1])
	}
	v, _ := reqs.Load("get")
	refs := v.(*pb.GetReceiptsRequest).GetMessages()
	if refs[0].GetConversation().GetGroupId() != "grp" || refs[0].GetSeq() != 4 || refs[0].GetMsgId() != "g1" ||
		refs[1].GetConversation().GetPeerId() != "bob" || refs[1].GetConversation().GetGroupId() != "" || refs[1].GetSeq() != 9 {
		t.Errorf("refs = %v", refs)
	}

	page, err := c.GetGroupMessageReadMemberList(ctx, gmsg, ReadMembersFilterUnread, 5, 50)
	if err != nil {
		t.Fatal(err)
	}
	if page.NextSeq != 17 || page.IsFinished || len(page.Members) != 2 ||
		*page.Members[0] != (GroupMemberInfo{UserID: "bob", NickName: "Bob", FaceURL: "http://f", ReadTime: time.UnixMilli(3000)}) ||
		!page.Members[1].ReadTime.IsZero() {
		t.Errorf("page = %+v", page)
	}
	v, _ = reqs.Load("members")
	if rm := v.(*pb.ReadMembersRequest); rm.GetFilter() != pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD || rm.GetNextSeq() != 5 || rm.GetCount() != 50 || rm.GetMessage().GetMsgId() != "g1" {
		t.Errorf("read_members = %v", rm)
	}
	if _, err := c.GetGroupMessageReadMemberList(ctx, gmsg, ReadMembersFilterRead, 0, -1); err == nil {
		t.Error("negative count accepted")
	}

	if err := c.SendMessageReadReceipts(ctx, []*Message{{MsgID: "x", Seq: 3, UserID: "bob"}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.SendMessageReadReceipts(ctx, []*Message{nil}), CodeInvalidArgument)

	// Pushes.
	s := fs.waitSession(t)
	s.push(&pb.ServerFrame{Body: &pb.ServerFrame_Receipts_{Receipts_: &pb.ReceiptsPush{Receipts: []*pb.MessageReceipt{{MsgId: "g1", GroupId: "grp", ReadCount: 3, UnreadCount: 2}}}}})
	s.push(&pb.ServerFrame{Body: &pb.ServerFrame_C2CRead{C2CRead: &pb.C2CReadPush{Receipts: []*pb.MessageReceipt{{UserId: "bob", TimeMs: 7000}}}}})
	s.push(&pb.ServerFrame{Body: &pb.ServerFrame_SelfReceipts{SelfReceipts: &pb.SelfReceiptsPush{Messages: []*pb.MessageRef{
		{Conversation: &pb.Conversation{GroupId: "grp"}, Seq: 8, MsgId: "z"},
	}}}})
	checkFor(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.receipts) != 1 || len(r.c2c) != 1 || len(r.self) != 1 {
			return fmt.Errorf("pushes: %d receipts, %d c2c, %d self", len(r.receipts), len(r.c2c), len(r.self))
		}
		return nil
	})
	if got := *r.receipts[0]; got != (MessageReceipt{MsgID: "g1", GroupID: "grp", ReadCount: 3, UnreadCount: 2}) {
		t.Errorf("receipt push = %+v", got)
	}
	if got := r.c2c[0]; got.UserID != "bob" || !got.Timestamp.Equal(time.UnixMilli(7000)) {
		t.Errorf("c2c push = %+v", got)
	}
	if got := r.self[0]; got.GroupID != "grp" || got.Seq != 8 || got.MsgID != "z" || !got.ReceiptSent {
		t.Errorf("self receipt = %+v", got)
	}
}

func syncResp(id uint64, more bool, cursors []*pb.SyncCursor, msgs ...*pb.Message) *pb.ServerFrame {
	return &pb.ServerFrame{Id: id, Body: &pb.ServerFrame_Sync{Sync: &pb.SyncResponse{Messages: msgs, More: more, Cursors: cursors}}}
}

func TestSyncBuffersLivePushesAndDedups(t *testing.T) {
	fs := newFake(t)
	syncs := make(chan *pb.SyncRequest, 10)
	cur := []*pb.SyncCursor{{Conversation: &pb.Conversation{PeerId: "alice"}, Seq: 2}}
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		sr := f.GetSync()
		if sr == nil {
			fs.defaultHandle(s, f)
			return
		}
		syncs <- sr
		if len(sr.GetCursors()) == 0 {
			// Live pushes race the sync: they must come after it, deduplicated.
			s.push(newMsgFrame(pbMsg(2, "alice", "bob", "", "a2")))
			s.push(newMsgFrame(pbMsg(4, "alice", "bob", "", "a4")))
			s.push(newMsgFrame(pbMsg(0, "alice", "bob", "", "online")))
			s.send(syncResp(f.GetId(), true, cur, pbMsg(1, "alice", "bob", "", "a1"), pbMsg(2, "alice", "bob", "", "a2")))
			return
		}
		s.send(syncResp(f.GetId(), false, nil, pbMsg(3, "alice", "bob", "", "a3"), pbMsg(1, "bob", "", "g", "g1")))
	})
	r := &recorder{}
	dial(t, fs, "bob", WithListener(r))
	r.waitTexts(t, []string{"a1", "a2", "a3", "g1", "a4", "online"})
	<-syncs
	second := <-syncs
	if len(second.GetCursors()) != 1 || second.GetCursors()[0].GetSeq() != 2 || second.GetLimit() != 200 {
		t.Errorf("second sync = %v, want the server's cursors", second)
	}
	r.mu.Lock()
	g := r.msgs[3]
	r.mu.Unlock()
	if g.GroupID != "g" || !g.IsSelf || g.UserID != "" {
		t.Errorf("group message = %+v", g)
	}
}

func TestReconnect(t *testing.T) {
	fs := newFake(t)
	syncs := make(chan *pb.SyncRequest, 10)
	stall := make(chan struct{})
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		switch {
		case f.GetSync() != nil:
			syncs <- f.GetSync()
			fs.defaultHandle(s, f)
		case f.GetQuitGroup() != nil:
			close(stall) // never answered
		default:
			fs.defaultHandle(s, f)
		}
	})
	r := &recorder{}
	c := dial(t, fs, "bob", WithListener(r))
	s := fs.waitSession(t)
	if first := <-syncs; len(first.GetCursors()) != 0 {
		t.Errorf("first sync cursors = %v, want none", first.GetCursors())
	}
	s.push(newMsgFrame(pbMsg(5, "alice", "bob", "", "a5")))
	s.push(newMsgFrame(pbMsg(9, "bob", "", "g", "g9")))
	r.waitTexts(t, []string{"a5", "g9"})

	errc := make(chan error, 1)
	go func() { errc <- c.QuitGroup(ctxT(t), "g") }()
	<-stall
	fs.dropAll()
	// Quitting twice is not quitting once: not retried.
	wantCode(t, <-errc, CodeUnavailable)

	fs.waitSession(t)
	second := <-syncs
	got := map[string]uint64{}
	for _, cu := range second.GetCursors() {
		got[cu.GetConversation().GetPeerId()+"/"+cu.GetConversation().GetGroupId()] = cu.GetSeq()
	}
	if len(got) != 2 || got["alice/"] != 5 || got["/g"] != 9 {
		t.Errorf("resync cursors = %v", got)
	}
	if _, err := c.Ping(ctxT(t)); err != nil {
		t.Errorf("Ping after reconnect: %v", err)
	}
	// An old message pushed again is not reported twice.
	s2 := fs.waitSessionOrCurrent(t)
	s2.push(newMsgFrame(pbMsg(5, "alice", "bob", "", "a5")))
	s2.push(newMsgFrame(pbMsg(6, "alice", "bob", "", "a6")))
	r.waitTexts(t, []string{"a5", "g9", "a6"})
	checkFor(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !slices.Equal(r.conn, []string{"connected", "disconnected", "reconnecting", "connected"}) {
			return fmt.Errorf("conn events %v", r.conn)
		}
		return nil
	})
}

// waitSessionOrCurrent returns the one logged-in session.
func (fs *fakeServer) waitSessionOrCurrent(t *testing.T) *fakeSess {
	t.Helper()
	var s *fakeSess
	checkFor(t, 10*time.Second, func() error {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if len(fs.sessions) != 1 {
			return fmt.Errorf("%d sessions", len(fs.sessions))
		}
		for x := range fs.sessions {
			s = x
		}
		return nil
	})
	return s
}

func TestRequestWaitsForReconnect(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob")
	fs.waitSession(t)
	// The run goroutine publishes the session after Dial returns: wait for
	// it, or the drop below could happen before, and the stale session be
	// published after the check that it is gone.
	checkFor(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.sess == nil {
			return errors.New("not published yet")
		}
		return nil
	})
	fs.refuse.Store(true)
	fs.dropAll()
	checkFor(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.sess != nil {
			return errors.New("still connected")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping while disconnected = %v, want DeadlineExceeded", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Ping(ctxT(t))
		errc <- err
	}()
	fs.refuse.Store(false)
	if err := <-errc; err != nil {
		t.Errorf("Ping after reconnect: %v", err)
	}
}

func TestNoReconnect(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob", WithReconnect(false))
	fs.waitSession(t)
	fs.dropAll()
	checkFor(t, 10*time.Second, func() error {
		_, err := c.Ping(ctxT(t))
		var ie *Error
		if errors.As(err, &ie) && ie.Code == CodeUnavailable {
			return nil
		}
		return fmt.Errorf("Ping = %v", err)
	})
	if n := fs.logins.Load(); n != 1 {
		t.Errorf("%d logins", n)
	}
}

func TestKickoffUnavailableReconnects(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob")
	s := fs.waitSession(t)
	s.push(&pb.ServerFrame{Body: &pb.ServerFrame_Kickoff{Kickoff: &pb.Kickoff{Reason: &pb.Error{Code: pb.CodeUnavailable, Desc: "shutting down"}}}})
	fs.waitSession(t)
	if _, err := c.Ping(ctxT(t)); err != nil {
		t.Errorf("Ping after kickoff: %v", err)
	}
}

func TestCloseFailsInFlightAndEnds(t *testing.T) {
	fs := newFake(t)
	got := make(chan struct{})
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		if f.GetHistory() != nil {
			close(got)
			return
		}
		fs.defaultHandle(s, f)
	})
	c := dial(t, fs, "bob")
	errc := make(chan error, 1)
	go func() {
		_, err := c.GetGroupHistoryMessageList(ctxT(t), "g", 10, nil)
		errc <- err
	}()
	<-got
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, <-errc, CodeUnavailable)
	c.Close()
	_, err := c.Ping(ctxT(t))
	wantCode(t, err, CodeUnavailable)
}

type closer struct {
	BaseAdvancedMsgListener
	c    *Client
	done chan error
}

func (l *closer) OnRecvNewMessage(m *Message) {
	_, err := l.c.SendMessage(context.Background(), l.c.CreateTextMessage("re: "+m.Text), m.UserID, "", PriorityDefault, false)
	l.c.Close()
	l.done <- err
}

func TestCallbackMaySendAndClose(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob")
	l := &closer{c: c, done: make(chan error, 1)}
	c.AddAdvancedMsgListener(l)
	fs.waitSession(t).push(newMsgFrame(pbMsg(1, "alice", "bob", "", "hi")))
	if err := <-l.done; err != nil {
		t.Errorf("SendMessage from callback: %v", err)
	}
	<-c.dispatchDone
}

func TestJSON(t *testing.T) {
	fs := newFake(t)
	r := &recorder{}
	c := dial(t, fs, "alice", WithJSON(), WithListener(r))
	s := fs.waitSession(t)
	if !s.json {
		t.Fatal("fake did not negotiate readmark.v1.json")
	}
	sent, err := c.SendMessage(ctxT(t), c.CreateCustomMessage([]byte("\x00\xffdata")), "bob", "", PriorityNormal, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(sent.CustomData) != "\x00\xffdata" || sent.Seq != 7 {
		t.Errorf("sent = %+v", sent)
	}
	s.push(newMsgFrame(&pb.Message{MsgId: "j", Seq: 1, Sender: "bob", Receiver: "alice", Text: "über", CustomData: []byte{1}}))
	r.waitTexts(t, []string{"über"})
}

func TestHeartbeat(t *testing.T) {
	fs := newFake(t)
	fs.hbSecs = 1
	dial(t, fs, "bob")
	fs.waitFrame(t, func(f *pb.ClientFrame) bool { return f.GetPing() != nil })
}

func TestOwnEchoNotReported(t *testing.T) {
	fs := newFake(t)
	r := &recorder{}
	c := dial(t, fs, "alice", WithListener(r))
	s := fs.waitSession(t)
	// The fake gives every sent message seq 7 in its conversation.
	if _, err := c.SendMessage(ctxT(t), c.CreateTextMessage("mine"), "bob", "", PriorityDefault, false); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 8; i++ {
		if i == 7 {
			s.push(newMsgFrame(pbMsg(7, "alice", "bob", "", "mine")))
			continue
		}
		s.push(newMsgFrame(pbMsg(i, "bob", "alice", "", fmt.Sprint(i))))
	}
	r.waitTexts(t, []string{"1", "2", "3", "4", "5", "6", "8"})
}

// TestRetryCutOffCalls: an idempotent call, and a send (thanks to its
// client_msg_id), cut off by a lost connection or answered Unavailable are
// sent again on the next connection; the caller sees only the answer.
func TestRetryCutOffCalls(t *testing.T) {
	fs := newFake(t)
	var mu sync.Mutex
	seen := map[string][]string{} // request → client_msg_ids (or "" per attempt)
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		name := string(f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("body")).Name())
		mu.Lock()
		seen[name] = append(seen[name], f.GetSendMessage().GetClientMsgId())
		n := len(seen[name])
		mu.Unlock()
		switch {
		case name == "send_message" && n == 1:
			go fs.dropAll() // cut off after sending
		case name == "mark_c2c_read" && n == 1:
			s.fail(f.GetId(), pb.CodeUnavailable, "node draining")
		default:
			fs.defaultHandle(s, f)
		}
	})
	c := dial(t, fs, "bob")
	fs.waitSession(t)
	m, err := c.SendMessage(ctxT(t), c.CreateTextMessage("hi"), "alice", "", PriorityDefault, false)
	if err != nil || m.Seq != 7 {
		t.Fatalf("send across a lost connection: %+v %v", m, err)
	}
	if err := c.MarkC2CMessageAsRead(ctxT(t), "alice"); err != nil {
		t.Fatalf("mark after Unavailable: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	ids := seen["send_message"]
	if len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("send attempts with client_msg_ids %q, want two with one key", ids)
	}
	if len(seen["mark_c2c_read"]) != 2 {
		t.Fatalf("mark attempts: %d", len(seen["mark_c2c_read"]))
	}
}

// TestSeveralServerAddresses: serverURL lists several addresses; Dial
// skips one that does not answer, and a lost connection reconnects to
// another.
func TestSeveralServerAddresses(t *testing.T) {
	a, b := newFake(t), newFake(t)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, down.URL+", "+a.url()+","+b.url(), "bob", "tok-bob", WithBackoff(time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	used := map[*fakeServer]bool{}
	for range 4 {
		var fs *fakeServer
		select {
		case <-a.ready:
			fs = a
		case <-b.ready:
			fs = b
		case <-ctx.Done():
			t.Fatal("no session")
		}
		used[fs] = true
		if _, err := c.Ping(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		fs.dropAll()
	}
	if !used[a] || !used[b] {
		t.Fatalf("reconnections stayed on one server")
	}
}

// TestRefsOfAllocs pins the batch conversion of receipts: one group's
// messages share a Conversation and their references one allocation.
func TestRefsOfAllocs(t *testing.T) {
	msgs := receiptBatch(20)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := refsOf(msgs); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Errorf("refsOf of 20 messages of one group: %.0f allocations, want <= 3", allocs)
	}
	refs, _ := refsOf(append(msgs[:1:1], &Message{MsgID: "c", Seq: 9, UserID: "bob"}))
	if c := refs[1].GetConversation(); c.GetPeerId() != "bob" || c.GetGroupId() != "" || refs[0].GetConversation().GetPeerId() != "" {
		t.Errorf("refs = %v", refs)
	}
}

// countingTransport counts the requests it passes on.
type countingTransport struct {
	http.RoundTripper
	n *atomic.Int32
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

// TestHandshakeOwnConnection pins that a ws:// handshake does not go
// through http.DefaultTransport (see upgradeTransport), and that the session
// works on the connection it returns.
func TestHandshakeOwnConnection(t *testing.T) {
	var n atomic.Int32
	orig := http.DefaultTransport
	http.DefaultTransport = countingTransport{orig, &n}
	t.Cleanup(func() { http.DefaultTransport = orig })
	fs := newFake(t)
	c := dial(t, fs, "alice")
	if _, err := c.CreateGroup(ctxT(t), GroupMeeting, "", "team", "bob"); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("%d handshakes went through http.DefaultTransport, want 0", got)
	}
}

func sendResp(id uint64, m *pb.Message) *pb.ServerFrame {
	return &pb.ServerFrame{Id: id, Body: &pb.ServerFrame_SendMessage{SendMessage: &pb.SendMessageResponse{Message: m}}}
}

// echoBeforeResponse makes fs store alice's send to bob as seq 2 and carry
// it in a sync page, between two messages of bob's, before the send's
// response: the page once the send and a sync request have both arrived on
// one session; the response, and the last (empty) page, when the client
// asks for the next page, having processed the first. With cut, the first
// attempt of the send is cut off by a lost connection instead. It returns
// the cursors of that next page's request.
func echoBeforeResponse(fs *fakeServer, cut bool) <-chan []*pb.SyncCursor {
	next := make(chan []*pb.SyncCursor, 1)
	var mu sync.Mutex
	var on *fakeSess
	var sendID, syncID uint64
	paged, attempts := false, 0
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		mu.Lock()
		defer mu.Unlock()
		if s != on {
			on, sendID, syncID, paged = s, 0, 0, false
		}
		switch {
		case f.GetSendMessage() != nil:
			if attempts++; cut && attempts == 1 {
				go fs.dropAll()
				return
			}
			sendID = f.GetId()
		case f.GetSync() != nil && !paged:
			syncID = f.GetId()
		case f.GetSync() != nil:
			next <- f.GetSync().GetCursors()
			s.send(sendResp(sendID, pbMsg(2, "alice", "bob", "", "mine")))
			s.send(syncResp(f.GetId(), false, nil))
			return
		default:
			fs.defaultHandle(s, f)
			return
		}
		if sendID != 0 && syncID != 0 && !paged {
			paged = true
			s.send(syncResp(syncID, true, nil,
				pbMsg(1, "bob", "alice", "", "b1"), pbMsg(2, "alice", "bob", "", "mine"), pbMsg(3, "bob", "alice", "", "b3")))
		}
	})
	return next
}

// TestOwnEchoInSyncBeforeResponse: a send right after Dial is stored and
// synced before its response arrives; the sync page must not report it as
// new, and the messages after it in its conversation still come, in order.
func TestOwnEchoInSyncBeforeResponse(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(fmt.Sprintf("retried=%v", cut), func(t *testing.T) {
			fs := newFake(t)
			next := echoBeforeResponse(fs, cut)
			r := &recorder{}
			c := dial(t, fs, "alice", WithListener(r))
			sent, err := c.SendMessage(ctxT(t), c.CreateTextMessage("mine"), "bob", "", PriorityDefault, false)
			if err != nil || sent.Seq != 2 || sent.Text != "mine" || !sent.IsSelf {
				t.Fatalf("SendMessage = %+v, %v", sent, err)
			}
			if cur := <-next; len(cur) != 1 || cur[0].GetConversation().GetPeerId() != "bob" || cur[0].GetSeq() != 3 {
				t.Errorf("next page's cursors = %v, want bob at 3 (held messages count as received)", cur)
			}
			// A later push proves that nothing else is on its way.
			fs.waitSessionOrCurrent(t).push(newMsgFrame(pbMsg(4, "bob", "alice", "", "b4")))
			r.waitTexts(t, []string{"b1", "b3", "b4"})
		})
	}
}

// holdDuringSend makes fs push, when alice's send arrives, a message alice
// sent to bob from another device and one of bob's, then one of carol's
// that proves them processed; the send is answered by what the test passes
// on answer. It returns once the first sync is over (pushes go live).
func holdDuringSend(t *testing.T, fs *fakeServer, r *recorder) (answer chan func(s *fakeSess, id uint64)) {
	answer = make(chan func(*fakeSess, uint64), 1)
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		if f.GetSendMessage() == nil {
			fs.defaultHandle(s, f)
			return
		}
		s.push(newMsgFrame(pbMsg(2, "alice", "bob", "", "other device")))
		s.push(newMsgFrame(pbMsg(3, "bob", "alice", "", "b3")))
		s.push(newMsgFrame(pbMsg(1, "carol", "alice", "", "c1")))
		go func() {
			if reply, ok := <-answer; ok {
				reply(s, f.GetId())
			}
		}()
	})
	s := fs.waitSession(t)
	s.push(newMsgFrame(pbMsg(1, "bob", "alice", "", "b1")))
	r.waitTexts(t, []string{"b1"})
	return answer
}

// TestOwnFromOtherDeviceHeldThenReported: an own message of the
// conversation of an unresolved send waits for it; when the send fails, it
// is reported (sent from another device), with what came after it.
func TestOwnFromOtherDeviceHeldThenReported(t *testing.T) {
	fs := newFake(t)
	r := &recorder{}
	c := dial(t, fs, "alice", WithListener(r))
	answer := holdDuringSend(t, fs, r)
	errc := make(chan error, 1)
	go func() {
		_, err := c.SendMessage(ctxT(t), c.CreateTextMessage("refused"), "bob", "", PriorityDefault, false)
		errc <- err
	}()
	r.waitTexts(t, []string{"b1", "c1"}) // held: bob's conversation waits for the send
	answer <- func(s *fakeSess, id uint64) { s.fail(id, pb.CodePermissionDenied, "blocked") }
	wantCode(t, <-errc, CodePermissionDenied)
	r.waitTexts(t, []string{"b1", "c1", "other device", "b3"})
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.msgs[2]; !m.IsSelf || m.UserID != "bob" {
		t.Errorf("own message from another device = %+v", m)
	}
}

// TestCloseWhileHolding: Close with messages held for an unresolved send
// fails the send and ends, holding nothing up.
func TestCloseWhileHolding(t *testing.T) {
	fs := newFake(t)
	r := &recorder{}
	c := dial(t, fs, "alice", WithListener(r))
	answer := holdDuringSend(t, fs, r)
	defer close(answer)
	errc := make(chan error, 1)
	go func() {
		_, err := c.SendMessage(ctxT(t), c.CreateTextMessage("cut"), "bob", "", PriorityDefault, false)
		errc <- err
	}()
	r.waitTexts(t, []string{"b1", "c1"})
	c.Close()
	wantCode(t, <-errc, CodeUnavailable)
}

// Frames are read into shared buffers: each decoded message must keep its
// own text whatever the sizes around it, and a frame that is not a
// ServerFrame ends the session, not the client, which logs in again.
func TestFramesReadWholeAndBadFrameReconnects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		bad  []byte
	}{
		{"proto", nil, []byte{0xff, 0xff, 0xff}},
		{"json", []Option{WithJSON()}, []byte("{not json")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFake(t)
			r := &recorder{}
			dial(t, fs, "bob", append(tc.opts, WithListener(r))...)
			s := fs.waitSession(t)
			var want []string
			for i, n := range []int{3, wsframe.MaxPooled + 1000, 1, 4000, 20, 70, wsframe.MaxPooled / 2, 2} {
				text := strings.Repeat(string(rune('a'+i)), n)
				s.push(newMsgFrame(pbMsg(uint64(i+1), "alice", "bob", "", text)))
				want = append(want, text)
			}
			// Texts named by their letter and length: a failure stays readable.
			brief := func(texts []string) []string {
				out := make([]string, len(texts))
				for i, x := range texts {
					out[i] = fmt.Sprintf("%.1s×%d", x, len(x))
				}
				return out
			}
			checkFor(t, 10*time.Second, func() error {
				if got := r.texts(); !slices.Equal(got, want) {
					return fmt.Errorf("messages %v, want %v", brief(got), brief(want))
				}
				return nil
			})

			typ := websocket.MessageBinary
			if s.json {
				typ = websocket.MessageText
			}
			s.wmu.Lock()
			err := s.conn.Write(ctxT(t), typ, tc.bad)
			s.wmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			s2 := fs.waitSession(t)
			if got := fs.logins.Load(); got != 2 {
				t.Errorf("%d logins, want 2", got)
			}
			s2.push(newMsgFrame(pbMsg(20, "alice", "bob", "", "after")))
			r.waitTexts(t, append(want, "after"))
		})
	}
}
