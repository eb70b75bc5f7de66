package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/usersig"
)

func TestC2CMultiDeviceDelivery(t *testing.T) {
	ts := startServer(t)
	alice1, rA1 := ts.dial("alice")
	_, rA2 := ts.dial("alice")
	_, rB1 := ts.dial("bob")
	_, rB2 := ts.dial("bob")

	sent := send(t, alice1, "hi bob", "bob", "", true)
	if sent.MsgID == "" || sent.Seq != 1 || sent.Timestamp.IsZero() || !sent.IsSelf || sent.UserID != "bob" {
		t.Fatalf("stored message: %+v", sent)
	}
	for name, r := range map[string]*recorder{"bob 1": rB1, "bob 2": rB2, "alice 2": rA2} {
		waitFor(t, name+" receives", func() bool { return len(r.messages()) == 1 })
		m := r.messages()[0]
		if m.MsgID != sent.MsgID || m.Text != "hi bob" || !m.NeedReadReceipt || m.Sender != "alice" {
			t.Errorf("%s got %+v", name, m)
		}
	}
	if m := rB1.messages()[0]; m.IsSelf || m.UserID != "alice" {
		t.Errorf("bob's view: IsSelf=%v UserID=%q", m.IsSelf, m.UserID)
	}
	if m := rA2.messages()[0]; !m.IsSelf || m.UserID != "bob" {
		t.Errorf("alice's other device: IsSelf=%v UserID=%q", m.IsSelf, m.UserID)
	}
	// The sending device has it from the response, not as a push: a second
	// message arriving at bob proves the first push to alice 1 would have too.
	send(t, alice1, "second", "bob", "", false)
	waitFor(t, "bob gets the second", func() bool { return len(rB1.messages()) == 2 })
	if n := len(rA1.messages()); n != 0 {
		t.Errorf("sending device got %d pushes of its own messages", n)
	}
}

func TestGroupDeliveryInOrder(t *testing.T) {
	ts := startServer(t)
	owner, _ := ts.dial("owner")
	gid := must[string](t)(owner.CreateGroup(ctxT(t), im.GroupWork, "", "team", "m1", "m2"))
	if gid == "" {
		t.Fatal("no group ID")
	}
	_, r1 := ts.dial("m1")
	_, r2 := ts.dial("m2")
	var want []string
	for i := range 50 {
		text := "msg " + string(rune('A'+i%26)) + strings.Repeat("!", i/26)
		want = append(want, text)
		send(t, owner, text, "", gid, false)
	}
	for _, r := range []*recorder{r1, r2} {
		waitForMsg(t, "all 50 delivered", r, func() bool { return len(r.messages()) >= 50 })
		if got := r.texts(); !slices.Equal(got, want) {
			t.Fatalf("order: got %v", got)
		}
		for i, m := range r.messages() {
			if m.Seq != uint64(i+1) || m.GroupID != gid || m.UserID != "" {
				t.Fatalf("message %d: seq %d group %q user %q", i, m.Seq, m.GroupID, m.UserID)
			}
		}
	}
}

func TestOfflineSyncOnLogin(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	bob, rb := ts.dial("bob")
	send(t, alice, "while online", "bob", "", false)
	waitFor(t, "bob online delivery", func() bool { return len(rb.messages()) == 1 })
	bob.Close()

	gid := must[string](t)(alice.CreateGroup(ctxT(t), im.GroupPublic, "g-offline", "g", "bob"))
	for _, text := range []string{"one", "two", "three"} {
		send(t, alice, text, "bob", "", false)
	}
	send(t, alice, "group one", "", gid, false)

	_, rb2 := ts.dial("bob")
	waitFor(t, "offline messages synced", func() bool { return len(rb2.messages()) == 4 })
	got := rb2.texts()
	var c2c []string
	for _, m := range rb2.messages() {
		if m.GroupID == "" {
			c2c = append(c2c, m.Text)
		}
	}
	if !slices.Equal(c2c, []string{"one", "two", "three"}) || !slices.Contains(got, "group one") {
		t.Fatalf("synced %v", got)
	}
}

func TestReconnectResyncsAfterRestart(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	_, rb := ts.dial("bob")
	send(t, alice, "before", "bob", "", false)
	waitFor(t, "delivery", func() bool { return len(rb.messages()) == 1 })

	ts.restart()
	// alice's SDK reconnects by itself; her send waits for it.
	for _, text := range []string{"after 1", "after 2"} {
		send(t, alice, text, "bob", "", false)
	}
	waitFor(t, "bob resyncs", func() bool { return len(rb.messages()) == 3 })
	if got := rb.texts(); !slices.Equal(got, []string{"before", "after 1", "after 2"}) {
		t.Fatalf("got %v", got)
	}
}

func TestHistoryPaging(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	bob, _ := ts.dial("bob")
	for i := range 25 {
		c := alice
		if i%2 == 1 {
			c = bob
		}
		peer := map[*im.Client]string{alice: "bob", bob: "alice"}[c]
		send(t, c, string(rune('a'+i)), peer, "", i%3 == 0)
	}
	var all []*im.Message
	var last *im.Message
	for {
		page := must[[]*im.Message](t)(alice.GetC2CHistoryMessageList(ctxT(t), "bob", 10, last))
		all = append(all, page...)
		if len(page) < 10 {
			break
		}
		last = page[len(page)-1]
	}
	if len(all) != 25 {
		t.Fatalf("paged %d messages, want 25", len(all))
	}
	for i, m := range all {
		n := 24 - i // newest first
		if m.Text != string(rune('a'+n)) || m.Seq != uint64(n+1) {
			t.Fatalf("position %d: %q seq %d", i, m.Text, m.Seq)
		}
		if m.IsSelf != (n%2 == 0) || m.NeedReadReceipt != (n%3 == 0) {
			t.Fatalf("position %d: IsSelf %v NeedReadReceipt %v", i, m.IsSelf, m.NeedReadReceipt)
		}
	}
	gid := must[string](t)(alice.CreateGroup(ctxT(t), im.GroupMeeting, "", "", "bob"))
	for i := range 5 {
		send(t, bob, string(rune('A'+i)), "", gid, true)
	}
	page := must[[]*im.Message](t)(alice.GetGroupHistoryMessageList(ctxT(t), gid, 3, nil))
	if len(page) != 3 || page[0].Text != "E" || page[2].Text != "C" || page[0].IsSelf || !page[0].NeedReadReceipt {
		t.Fatalf("group page: %+v", page)
	}
	page = must[[]*im.Message](t)(alice.GetGroupHistoryMessageList(ctxT(t), gid, 3, page[2]))
	if len(page) != 2 || page[1].Text != "A" {
		t.Fatalf("group page 2: %+v", page)
	}
}

func TestRestartKeepsData(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	gid := must[string](t)(alice.CreateGroup(ctxT(t), im.GroupWork, "keep", "keep", "bob"))
	send(t, alice, "persisted", "", gid, true)
	send(t, alice, "c2c persisted", "bob", "", false)
	alice.Close()
	ts.restart()

	bob, _ := ts.dial("bob")
	h := must[[]*im.Message](t)(bob.GetGroupHistoryMessageList(ctxT(t), gid, 10, nil))
	if len(h) != 1 || h[0].Text != "persisted" || !h[0].NeedReadReceipt {
		t.Fatalf("group history after restart: %+v", h)
	}
	c := must[[]*im.Message](t)(bob.GetC2CHistoryMessageList(ctxT(t), "alice", 10, nil))
	if len(c) != 1 || c[0].Text != "c2c persisted" {
		t.Fatalf("c2c history after restart: %+v", c)
	}
	// Seqs continue where they were; membership survived.
	m := send(t, bob, "after restart", "", gid, false)
	if m.Seq != 2 {
		t.Fatalf("seq after restart = %d, want 2", m.Seq)
	}
}

func TestOnlineUserOnlyNotStored(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	_, rb := ts.dial("bob")
	m := alice.CreateTextMessage("typing...")
	out, err := alice.SendMessage(ctxT(t), m, "bob", "", im.PriorityLow, true)
	if err != nil {
		t.Fatal(err)
	}
	if out.Seq != 0 {
		t.Errorf("online-only message got seq %d", out.Seq)
	}
	waitFor(t, "online delivery", func() bool { return len(rb.messages()) == 1 })
	h := must[[]*im.Message](t)(alice.GetC2CHistoryMessageList(ctxT(t), "bob", 10, nil))
	if len(h) != 0 {
		t.Fatalf("online-only message stored: %+v", h)
	}
}

func TestGroupMembershipAndEvents(t *testing.T) {
	ts := startServer(t)
	owner, ro := ts.dial("owner")
	m1, r1 := ts.dial("m1")
	outsider, _ := ts.dial("outsider")
	ctx := ctxT(t)

	work := must[string](t)(owner.CreateGroup(ctx, im.GroupWork, "work", "w", "m1"))
	waitFor(t, "created event", func() bool { return len(r1.groupEvents()) == 1 })
	wantCode(t, outsider.JoinGroup(ctx, work, "let me in"), im.CodePermissionDenied)
	// In a Work group any member may invite.
	if err := m1.InviteUserToGroup(ctx, work, []string{"outsider"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "join event at owner", func() bool {
		for _, ev := range ro.groupEvents() {
			if ev.Kind == im.GroupEventJoined && slices.Contains(ev.UserIDs, "outsider") {
				return true
			}
		}
		return false
	})
	wantCode(t, m1.KickGroupMember(ctx, work, []string{"outsider"}, ""), im.CodePermissionDenied)
	if err := owner.KickGroupMember(ctx, work, []string{"outsider"}, "bye"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send2(outsider, "", work), im.CodePermissionDenied)
	wantCode(t, owner.QuitGroup(ctx, work), im.CodePermissionDenied)
	if err := m1.QuitGroup(ctx, work); err != nil {
		t.Fatal(err)
	}
	wantCode(t, m1.QuitGroup(ctx, work), im.CodePermissionDenied)

	pub := must[string](t)(owner.CreateGroup(ctx, im.GroupPublic, "", "p"))
	if err := outsider.JoinGroup(ctx, pub, "hello"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, outsider.JoinGroup(ctx, pub, "again"), im.CodeAlreadyExists)
	wantCode(t, m1.InviteUserToGroup(ctx, pub, []string{"x"}), im.CodePermissionDenied)
	_, err := owner.CreateGroup(ctx, im.GroupPublic, pub, "dup")
	wantCode(t, err, im.CodeAlreadyExists)
	_, err = owner.CreateGroup(ctx, im.GroupType("Bogus"), "", "x")
	wantCode(t, err, im.CodeInvalidArgument)
	wantCode(t, owner.InviteUserToGroup(ctx, pub, users("u", 1001)), im.CodeTooMany)
}

func send2(c *im.Client, receiver, group string) error {
	_, err := c.SendMessage(context.Background(), c.CreateTextMessage("x"), receiver, group, im.PriorityNormal, false)
	return err
}

func TestMessagingErrors(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	_, _ = ts.dial("bob")
	ctx := ctxT(t)
	gid := must[string](t)(alice.CreateGroup(ctx, im.GroupWork, "", ""))
	tests := []struct {
		name     string
		msg      *im.Message
		receiver string
		group    string
		code     int
	}{
		{"empty text", alice.CreateTextMessage(""), "bob", "", im.CodeInvalidArgument},
		{"too large", alice.CreateTextMessage(strings.Repeat("x", 12*1024+1)), "bob", "", im.CodeMessageTooLarge},
		{"custom too large", alice.CreateCustomMessage(make([]byte, 8*1024+1)), "bob", "", im.CodeMessageTooLarge},
		{"unknown group", alice.CreateTextMessage("x"), "", "nope", im.CodeNotFound},
		{"both targets", alice.CreateTextMessage("x"), "bob", gid, im.CodeInvalidArgument},
		{"no target", alice.CreateTextMessage("x"), "", "", im.CodeInvalidArgument},
		{"bad receiver ID", alice.CreateTextMessage("x"), "b/o b", "", im.CodeInvalidArgument},
		{"to oneself", alice.CreateTextMessage("x"), "alice", "", im.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := alice.SendMessage(ctx, tt.msg, tt.receiver, tt.group, im.PriorityNormal, false)
			wantCode(t, err, tt.code)
		})
	}
	// Exactly at the limit is fine, and the failures above left the
	// connection working.
	if _, err := alice.SendMessage(ctx, alice.CreateTextMessage(strings.Repeat("x", 12*1024)), "bob", "", im.PriorityNormal, false); err != nil {
		t.Fatal(err)
	}
	_, err := alice.GetC2CHistoryMessageList(ctx, "bob", 101, nil)
	wantCode(t, err, im.CodeTooMany)
	_, err = alice.GetGroupHistoryMessageList(ctx, "nope", 10, nil)
	wantCode(t, err, im.CodeNotFound)
	bob, _ := ts.dial("bob")
	_, err = bob.GetGroupHistoryMessageList(ctx, gid, 10, nil)
	wantCode(t, err, im.CodePermissionDenied)
}

func TestAuthentication(t *testing.T) {
	ts := startServer(t)
	ctx := ctxT(t)
	expired, err := usersig.Gen(ts.srv.Secret(), "alice", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // tokens have one-second resolution
	foreign, _ := usersig.Gen([]byte("another key"), "alice", time.Hour)
	tests := []struct{ name, user, token string }{
		{"garbage", "alice", "not-a-token"},
		{"expired", "alice", expired},
		{"other key", "alice", foreign},
		{"other user's token", "alice", ts.token("bob")},
		{"empty", "alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := im.Dial(ctx, ts.url(), tt.user, tt.token)
			if err == nil {
				c.Close()
				t.Fatal("login succeeded")
			}
			wantCode(t, err, im.CodeUnauthenticated)
		})
	}
}

func TestAdminSettings(t *testing.T) {
	ts := startServer(t)
	code, body := ts.adminDo("GET", "/v1/admin/settings", "", "")
	if code != 200 || !strings.Contains(body, `["Work","Public","Meeting","Community"]`) {
		t.Fatalf("GET: %d %s", code, body)
	}
	code, body = ts.adminDo("PUT", "/v1/admin/settings", `{"read_receipt_group_types":["Work","AVChatRoom"]}`, "")
	if code != 200 || !strings.Contains(body, `["Work","AVChatRoom"]`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	for _, tt := range []struct {
		name, method, body, token string
		status                    int
	}{
		{"no token", "GET", "", "-", 401},
		{"not admin", "GET", "", ts.token("alice"), 403},
		{"bad token", "PUT", `{"read_receipt_group_types":[]}`, "junk", 401},
		{"unknown type", "PUT", `{"read_receipt_group_types":["Bogus"]}`, "", 400},
		{"missing field", "PUT", `{}`, "", 400},
		{"unknown field", "PUT", `{"read_receipt_group_types":[],"x":1}`, "", 400},
		{"not JSON", "PUT", `nope`, "", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := ts.adminDo(tt.method, "/v1/admin/settings", tt.body, tt.token); code != tt.status {
				t.Fatalf("%d %s, want %d", code, body, tt.status)
			}
		})
	}
	ts.restart()
	if code, body := ts.adminDo("GET", "/v1/admin/settings", "", ""); code != 200 || !strings.Contains(body, `["Work","AVChatRoom"]`) {
		t.Fatalf("after restart: %d %s", code, body)
	}
	if code, body := ts.adminDo("GET", "/healthz", "", "-"); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	code, body = ts.adminDo("GET", "/metrics", "", "-")
	if code != 200 || !strings.Contains(body, "readmark_sessions") {
		t.Fatalf("metrics: %d %.200s", code, body)
	}
}

func TestJSONSubprotocol(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice", im.WithJSON())
	_, rb := ts.dial("bob", im.WithJSON())
	sent := send(t, alice, "json hello", "bob", "", true)
	waitFor(t, "delivery over JSON", func() bool { return len(rb.messages()) == 1 })
	if m := rb.messages()[0]; m.MsgID != sent.MsgID || m.Seq != sent.Seq {
		t.Fatalf("got %+v", m)
	}
	var e *im.Error
	if _, err := alice.SendMessage(ctxT(t), alice.CreateTextMessage(""), "bob", "", 0, false); !errors.As(err, &e) || e.Code != im.CodeInvalidArgument {
		t.Fatalf("error over JSON: %v", err)
	}
}

// TestOfflineSyncPages: a backlog larger than one sync page, over two
// conversations, arrives whole and in order.
func TestOfflineSyncPages(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	ctx := ctxT(t)
	gid := must[string](t)(alice.CreateGroup(ctx, im.GroupWork, "", "", "bob"))
	var want []string
	for i := range 250 {
		text := fmt.Sprintf("c2c %03d", i)
		want = append(want, text)
		send(t, alice, text, "bob", "", false)
		if i%25 == 0 {
			send(t, alice, fmt.Sprintf("group %03d", i), "", gid, false)
		}
	}
	_, rb := ts.dial("bob")
	waitForMsg(t, "the whole backlog", rb, func() bool { return len(rb.messages()) >= 260 })
	var c2c []string
	for _, m := range rb.messages() {
		if m.GroupID == "" {
			c2c = append(c2c, m.Text)
		}
	}
	if len(rb.messages()) != 260 || !slices.Equal(c2c, want) {
		t.Fatalf("got %d messages; C2C in order: %v", len(rb.messages()), slices.Equal(c2c, want))
	}
}
