package test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
)

// lastReceipt returns the newest pushed receipt for msgID.
func lastReceipt(r *recorder, msgID string) *im.MessageReceipt {
	var last *im.MessageReceipt
	for _, rc := range r.receiptPushes() {
		if rc.MsgID == msgID {
			last = rc
		}
	}
	return last
}

func TestReceiptGroupTypes(t *testing.T) {
	ts := startServer(t)
	owner, _ := ts.dial("owner")
	ctx := ctxT(t)
	for _, typ := range []im.GroupType{im.GroupWork, im.GroupPublic, im.GroupMeeting, im.GroupCommunity} {
		gid := must[string](t)(owner.CreateGroup(ctx, typ, "", "", "m"))
		send(t, owner, "ok", "", gid, true)
	}
	av := must[string](t)(owner.CreateGroup(ctx, im.GroupAVChatRoom, "", "", "m"))
	m := owner.CreateTextMessage("no receipts here")
	m.NeedReadReceipt = true
	_, err := owner.SendMessage(ctx, m, "", av, im.PriorityNormal, false)
	wantCode(t, err, im.CodeGroupTypeNoReceipt)
	send(t, owner, "plain is fine", "", av, false)

	if code, body := ts.adminDo("PUT", "/v1/admin/settings", `{"read_receipt_group_types":["AVChatRoom"]}`, ""); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	send(t, owner, "now allowed", "", av, true) // takes effect at once
	work := must[string](t)(owner.CreateGroup(ctx, im.GroupWork, "", "", "m"))
	m = owner.CreateTextMessage("work now off")
	m.NeedReadReceipt = true
	_, err = owner.SendMessage(ctx, m, "", work, im.PriorityNormal, false)
	wantCode(t, err, im.CodeGroupTypeNoReceipt)

	ts.restart()
	owner, _ = ts.dial("owner")
	m = owner.CreateTextMessage("still off after restart")
	m.NeedReadReceipt = true
	_, err = owner.SendMessage(ctxT(t), m, "", work, im.PriorityNormal, false)
	wantCode(t, err, im.CodeGroupTypeNoReceipt)
	// C2C needs no setting.
	send(t, owner, "c2c receipt", "m", "", true)
}

func TestC2CReadReceipt(t *testing.T) {
	ts := startServer(t)
	alice, ra := ts.dial("alice")
	bob, rb := ts.dial("bob")
	ctx := ctxT(t)
	m1 := send(t, alice, "read me", "bob", "", true)
	m2 := send(t, alice, "me too", "bob", "", true)
	waitFor(t, "bob receives", func() bool { return len(rb.messages()) == 2 })

	got := must[[]*im.MessageReceipt](t)(alice.GetMessageReadReceipts(ctx, []*im.Message{m1, m2}))
	if len(got) != 2 || got[0].IsPeerRead || got[0].UserID != "bob" || got[0].MsgID != m1.MsgID {
		t.Fatalf("before reading: %+v", got[0])
	}
	if err := bob.SendMessageReadReceipts(ctx, rb.messages()[:1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice is told", func() bool { return lastReceipt(ra, m1.MsgID) != nil })
	if r := lastReceipt(ra, m1.MsgID); !r.IsPeerRead || r.UserID != "bob" {
		t.Fatalf("push: %+v", r)
	}
	got = must[[]*im.MessageReceipt](t)(alice.GetMessageReadReceipts(ctx, []*im.Message{m1, m2}))
	if !got[0].IsPeerRead || got[1].IsPeerRead {
		t.Fatalf("after one receipt: %v %v", got[0].IsPeerRead, got[1].IsPeerRead)
	}
	// Idempotent: a second receipt changes nothing and pushes nothing; the
	// receipt for m2 after it proves the push for the repeat would have come
	// first.
	if err := bob.SendMessageReadReceipts(ctx, rb.messages()[:1]); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendMessageReadReceipts(ctx, rb.messages()[1:2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "push for m2", func() bool { return lastReceipt(ra, m2.MsgID) != nil })
	n := 0
	for _, r := range ra.receiptPushes() {
		if r.MsgID == m1.MsgID {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d pushes for m1, want 1", n)
	}
}

func TestReceiptErrors(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	bob, rb := ts.dial("bob")
	carol, _ := ts.dial("carol")
	ctx := ctxT(t)
	gid := must[string](t)(alice.CreateGroup(ctx, im.GroupWork, "", "", "bob"))
	gid2 := must[string](t)(alice.CreateGroup(ctx, im.GroupWork, "", "", "bob"))
	withReceipt := send(t, alice, "r", "", gid, true)
	plain := send(t, alice, "p", "", gid, false)
	other := send(t, alice, "o", "", gid2, true)
	c2c := send(t, alice, "c", "bob", "", true)
	waitFor(t, "bob receives", func() bool { return len(rb.messages()) == 4 })
	var many []*im.Message
	for range 101 {
		many = append(many, withReceipt)
	}
	tests := []struct {
		name string
		c    *im.Client
		msgs []*im.Message
		code int
	}{
		{"empty", bob, nil, im.CodeInvalidArgument},
		{"over 100", bob, many, im.CodeTooMany},
		{"two conversations", bob, []*im.Message{withReceipt, other}, im.CodeInvalidArgument},
		{"group and c2c", bob, []*im.Message{withReceipt, c2c}, im.CodeInvalidArgument},
		{"own message", alice, []*im.Message{withReceipt}, im.CodeReceiptOwnMessage},
		{"no receipt asked", bob, []*im.Message{plain}, im.CodeMessageNoReceipt},
		{"not a member", carol, []*im.Message{withReceipt}, im.CodePermissionDenied},
		{"unknown message", bob, []*im.Message{{MsgID: "nope", Seq: 99, GroupID: gid}}, im.CodeNotFound},
		{"wrong msg ID", bob, []*im.Message{{MsgID: "nope", Seq: withReceipt.Seq, GroupID: gid}}, im.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run("send/"+tt.name, func(t *testing.T) {
			wantCode(t, tt.c.SendMessageReadReceipts(ctx, tt.msgs), tt.code)
		})
	}
	_, err := bob.GetMessageReadReceipts(ctx, []*im.Message{withReceipt})
	wantCode(t, err, im.CodePermissionDenied)
	_, err = alice.GetMessageReadReceipts(ctx, many)
	wantCode(t, err, im.CodeTooMany)
	_, err = alice.GetGroupMessageReadMemberList(ctx, withReceipt, im.ReadMembersFilterRead, 0, 101)
	wantCode(t, err, im.CodeTooMany)
	_, err = alice.GetGroupMessageReadMemberList(ctx, withReceipt, im.ReadMembersFilterRead, 0, 0)
	wantCode(t, err, im.CodeTooMany)
	_, err = bob.GetGroupMessageReadMemberList(ctx, withReceipt, im.ReadMembersFilterRead, 0, 10)
	wantCode(t, err, im.CodePermissionDenied)
	_, err = alice.GetMessageReadReceipts(ctx, []*im.Message{plain})
	wantCode(t, err, im.CodeMessageNoReceipt)
	_, err = alice.GetGroupMessageReadMemberList(ctx, plain, im.ReadMembersFilterRead, 0, 10)
	wantCode(t, err, im.CodeMessageNoReceipt)
	_, err = alice.GetGroupMessageReadMemberList(ctx, c2c, im.ReadMembersFilterRead, 0, 10)
	wantCode(t, err, im.CodeInvalidArgument)
	_, err = alice.GetMessageReadReceipts(ctx, nil)
	wantCode(t, err, im.CodeInvalidArgument)
	// A failed batch recorded nothing, even its valid part.
	got := must[[]*im.MessageReceipt](t)(alice.GetMessageReadReceipts(ctx, []*im.Message{withReceipt}))
	if got[0].ReadCount != 0 || got[0].UnreadCount != 1 {
		t.Fatalf("after failures: %+v", got[0])
	}
}

func TestGroupReceiptsPushPullAndMembers(t *testing.T) {
	ts := startServer(t)
	owner, ro := ts.dial("owner")
	ctx := ctxT(t)
	members := users("m", 8)
	gid := must[string](t)(owner.CreateGroup(ctx, im.GroupPublic, "", "", members...))
	msg := send(t, owner, "count me", "", gid, true)
	clients := map[string]*im.Client{}
	for _, u := range members {
		clients[u], _ = ts.dial(u)
	}
	before := time.Now().Add(-time.Second)
	for _, u := range members[:5] {
		if err := clients[u].SendMessageReadReceipts(ctx, []*im.Message{msg}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "push reaches 5 read", func() bool {
		r := lastReceipt(ro, msg.MsgID)
		return r != nil && r.ReadCount == 5
	})
	if r := lastReceipt(ro, msg.MsgID); r.UnreadCount != 3 || r.GroupID != gid {
		t.Fatalf("push: %+v", r)
	}
	got := must[[]*im.MessageReceipt](t)(owner.GetMessageReadReceipts(ctx, []*im.Message{msg}))
	if got[0].ReadCount != 5 || got[0].UnreadCount != 3 || got[0].GroupID != gid {
		t.Fatalf("pull: %+v", got[0])
	}
	read := walkMembers(t, owner, msg, im.ReadMembersFilterRead, 2)
	unread := walkMembers(t, owner, msg, im.ReadMembersFilterUnread, 2)
	if !slices.Equal(ids(read), members[:5]) || !slices.Equal(ids(unread), members[5:]) {
		t.Fatalf("read %v unread %v", ids(read), ids(unread))
	}
	for _, m := range read {
		if m.ReadTime.Before(before) || m.ReadTime.After(time.Now().Add(time.Second)) {
			t.Fatalf("read time %v", m.ReadTime)
		}
	}
	for _, m := range unread {
		if !m.ReadTime.IsZero() {
			t.Fatalf("unread member with read time: %+v", m)
		}
	}
	// Everything survives a restart.
	ts.restart()
	owner, _ = ts.dial("owner")
	got = must[[]*im.MessageReceipt](t)(owner.GetMessageReadReceipts(ctxT(t), []*im.Message{msg}))
	if got[0].ReadCount != 5 || got[0].UnreadCount != 3 {
		t.Fatalf("pull after restart: %+v", got[0])
	}
	read2 := walkMembers(t, owner, msg, im.ReadMembersFilterRead, 100)
	if len(read2) != 5 || !read2[0].ReadTime.Equal(read[0].ReadTime) {
		t.Fatalf("read list after restart: %v", read2)
	}
}

func walkMembers(t *testing.T, c *im.Client, msg *im.Message, filter im.GroupMessageReadMembersFilter, count int) []*im.GroupMemberInfo {
	t.Helper()
	var out []*im.GroupMemberInfo
	var next uint64
	for range 100_000 {
		page := must[*im.GroupMessageReadMemberList](t)(c.GetGroupMessageReadMemberList(ctxT(t), msg, filter, next, count))
		if len(page.Members) > count {
			t.Fatalf("page of %d, asked %d", len(page.Members), count)
		}
		out = append(out, page.Members...)
		if page.IsFinished {
			return out
		}
		next = page.NextSeq
	}
	t.Fatal("paging never finished")
	return nil
}

func ids(ms []*im.GroupMemberInfo) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.UserID)
	}
	return out
}

func TestWhoCounts(t *testing.T) {
	ts := startServer(t)
	owner, _ := ts.dial("owner")
	ctx := ctxT(t)
	gid := must[string](t)(owner.CreateGroup(ctx, im.GroupCommunity, "", "", "a", "b", "c", "d"))
	msg := send(t, owner, "who counts", "", gid, true)
	a, _ := ts.dial("a")
	b, _ := ts.dial("b")
	late, _ := ts.dial("late")
	if err := late.JoinGroup(ctx, gid, ""); err != nil {
		t.Fatal(err)
	}
	// A later joiner may not acknowledge what predates it, and is in
	// neither list nor count.
	wantCode(t, late.SendMessageReadReceipts(ctx, []*im.Message{msg}), im.CodePermissionDenied)
	for _, c := range []*im.Client{a, b} {
		if err := c.SendMessageReadReceipts(ctx, []*im.Message{msg}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(read, unread uint64, readIDs, unreadIDs []string) {
		t.Helper()
		got := must[[]*im.MessageReceipt](t)(owner.GetMessageReadReceipts(ctx, []*im.Message{msg}))
		if got[0].ReadCount != read || got[0].UnreadCount != unread {
			t.Fatalf("counts %d/%d, want %d/%d", got[0].ReadCount, got[0].UnreadCount, read, unread)
		}
		if r := ids(walkMembers(t, owner, msg, im.ReadMembersFilterRead, 10)); !slices.Equal(r, readIDs) {
			t.Fatalf("read list %v, want %v", r, readIDs)
		}
		if u := ids(walkMembers(t, owner, msg, im.ReadMembersFilterUnread, 10)); !slices.Equal(u, unreadIDs) {
			t.Fatalf("unread list %v, want %v", u, unreadIDs)
		}
	}
	check(2, 2, []string{"a", "b"}, []string{"c", "d"})
	// A reader who leaves drops out of both, and so does a non-reader kicked.
	if err := a.QuitGroup(ctx, gid); err != nil {
		t.Fatal(err)
	}
	if err := owner.KickGroupMember(ctx, gid, []string{"d"}, ""); err != nil {
		t.Fatal(err)
	}
	check(1, 1, []string{"b"}, []string{"c"})
	// Rejoining gives a new membership, which the old message does not count.
	if err := a.JoinGroup(ctx, gid, ""); err != nil {
		t.Fatal(err)
	}
	check(1, 1, []string{"b"}, []string{"c"})
}

func TestMarkC2CMessageAsRead(t *testing.T) {
	ts := startServer(t)
	alice, ra := ts.dial("alice")
	bob, _ := ts.dial("bob")
	ctx := ctxT(t)
	m1 := send(t, alice, "one", "bob", "", true)
	m2 := send(t, alice, "two", "bob", "", true)
	if err := bob.MarkC2CMessageAsRead(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	m3 := send(t, alice, "three", "bob", "", true)
	waitFor(t, "OnRecvC2CReadReceipt", func() bool { return len(ra.c2cReads()) == 1 })
	r := ra.c2cReads()[0]
	if r.UserID != "bob" || r.Timestamp.IsZero() || r.Timestamp.Before(m2.Timestamp) {
		t.Fatalf("c2c read receipt: %+v", r)
	}
	got := must[[]*im.MessageReceipt](t)(alice.GetMessageReadReceipts(ctx, []*im.Message{m1, m2, m3}))
	if !got[0].IsPeerRead || !got[1].IsPeerRead || got[2].IsPeerRead && m3.Timestamp.After(r.Timestamp) {
		t.Fatalf("is_peer_read by mark: %v %v %v", got[0].IsPeerRead, got[1].IsPeerRead, got[2].IsPeerRead)
	}
	wantCode(t, bob.MarkC2CMessageAsRead(ctx, "bob"), im.CodeInvalidArgument)
}

func TestReceiptReflectedToOtherDevices(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	phone, _ := ts.dial("bob")
	_, rDesk := ts.dial("bob")
	ctx := ctxT(t)
	gid := must[string](t)(alice.CreateGroup(ctx, im.GroupWork, "", "", "bob"))
	msg := send(t, alice, "seen on phone", "", gid, true)
	waitFor(t, "desk receives", func() bool { return len(rDesk.messages()) == 1 })
	if rDesk.messages()[0].ReceiptSent {
		t.Fatal("ReceiptSent before any receipt")
	}
	if err := phone.SendMessageReadReceipts(ctx, []*im.Message{msg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "desk told", func() bool {
		self := rDesk.selfReceipts()
		return len(self) == 1 && self[0].MsgID == msg.MsgID
	})
	h := must[[]*im.Message](t)(phone.GetGroupHistoryMessageList(ctx, gid, 10, nil))
	if !h[0].ReceiptSent {
		t.Fatal("history does not show ReceiptSent")
	}
}

// TestPagingWhileReading walks both lists while members keep reading: every
// member is listed exactly once per list walk, in ordinal order.
func TestPagingWhileReading(t *testing.T) {
	ts := startServer(t)
	owner, _ := ts.dial("owner")
	ctx := ctxT(t)
	members := users("p", 60)
	gid := must[string](t)(owner.CreateGroup(ctx, im.GroupWork, "", "", members...))
	msg := send(t, owner, "page me", "", gid, true)
	clients := make([]*im.Client, len(members))
	for i, u := range members {
		clients[i], _ = ts.dial(u)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, c := range clients {
			if err := c.SendMessageReadReceipts(ctx, []*im.Message{msg}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 5 {
		read := ids(walkMembers(t, owner, msg, im.ReadMembersFilterRead, 7))
		unread := ids(walkMembers(t, owner, msg, im.ReadMembersFilterUnread, 7))
		for _, list := range [][]string{read, unread} {
			seen := map[string]bool{}
			for _, u := range list {
				if seen[u] {
					t.Fatalf("%s listed twice", u)
				}
				seen[u] = true
			}
			if !slices.IsSortedFunc(list, func(a, b string) int { return idx(a) - idx(b) }) {
				t.Fatalf("not in join order: %v", list)
			}
		}
	}
	wg.Wait()
	if n := len(walkMembers(t, owner, msg, im.ReadMembersFilterRead, 100)); n != 60 {
		t.Fatalf("final read list %d", n)
	}
}

func idx(u string) int {
	var n int
	fmt.Sscanf(u, "p%d", &n)
	return n
}

// TestCrowdReadsOneMessage: 1,000 members, each logged in on its own
// connection, read one message at once; push and pull end exact, and
// pushed counts never go backwards.
func TestCrowdReadsOneMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("crowd test")
	}
	const n = 1000
	ts := startServer(t)
	owner, ro := ts.dial("owner")
	ctx := ctxT(t)
	members := users("crowd", n)
	gid := must[string](t)(owner.CreateGroup(ctx, im.GroupWork, "", "crowd"))
	for i := 0; i < n; i += 500 {
		if err := owner.InviteUserToGroup(ctx, gid, members[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	msg := send(t, owner, "everyone read this", "", gid, true)
	clients := make([]*im.Client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i, u := range members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := im.Dial(ctx, ts.url(), u, ts.token(u), im.WithReconnect(false))
			if err != nil {
				t.Error(err)
				return
			}
			clients[i] = c
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	start := make(chan struct{})
	for _, c := range clients {
		wg.Go(func() {
			<-start
			if err := c.SendMessageReadReceipts(ctx, []*im.Message{msg}); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	waitFor(t, "final push", func() bool {
		r := lastReceipt(ro, msg.MsgID)
		return r != nil && r.ReadCount == n
	})
	var prev uint64
	pushes := 0
	for _, r := range ro.receiptPushes() {
		if r.MsgID != msg.MsgID {
			continue
		}
		pushes++
		if r.ReadCount < prev || r.ReadCount+r.UnreadCount != n {
			t.Fatalf("push %d: read %d unread %d after %d", pushes, r.ReadCount, r.UnreadCount, prev)
		}
		prev = r.ReadCount
	}
	if last := lastReceipt(ro, msg.MsgID); last.UnreadCount != 0 {
		t.Fatalf("last push %+v", last)
	}
	got := must[[]*im.MessageReceipt](t)(owner.GetMessageReadReceipts(ctx, []*im.Message{msg}))
	if got[0].ReadCount != n || got[0].UnreadCount != 0 {
		t.Fatalf("pull: %+v", got[0])
	}
	t.Logf("%d receipts reached the sender in %d pushes", n, pushes)
}

func TestReadMembersShowProfiles(t *testing.T) {
	ts := startServer(t)
	owner, _ := ts.dial("owner")
	ann, _ := ts.dial("ann")
	ctx := ctxT(t)
	if err := ann.SetSelfInfo(ctx, "Ann Lee", "https://example.com/ann.png"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, ann.SetSelfInfo(ctx, strings.Repeat("n", 65), ""), im.CodeInvalidArgument)
	gid := must[string](t)(owner.CreateGroup(ctx, im.GroupWork, "", "", "ann", "ben"))
	msg := send(t, owner, "who is who", "", gid, true)
	if err := ann.SendMessageReadReceipts(ctx, []*im.Message{msg}); err != nil {
		t.Fatal(err)
	}
	read := walkMembers(t, owner, msg, im.ReadMembersFilterRead, 10)
	unread := walkMembers(t, owner, msg, im.ReadMembersFilterUnread, 10)
	if len(read) != 1 || read[0].NickName != "Ann Lee" || read[0].FaceURL != "https://example.com/ann.png" {
		t.Fatalf("read list: %+v", read[0])
	}
	if len(unread) != 1 || unread[0].UserID != "ben" || unread[0].NickName != "" {
		t.Fatalf("unread list: %+v", unread[0])
	}
	ts.restart()
	owner, _ = ts.dial("owner")
	if read = walkMembers(t, owner, msg, im.ReadMembersFilterRead, 10); read[0].NickName != "Ann Lee" {
		t.Fatalf("after restart: %+v", read[0])
	}
}
