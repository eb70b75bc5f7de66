package test

import (
	"context"
	"strings"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/im"
)

// TestBadIDsFailAlone: every request field that names a user or a group
// refuses IDs outside the one rule (1..64 bytes of letters, digits and
// "_.@-#") with InvalidArgument, and nothing is stored or pushed.
func TestBadIDsFailAlone(t *testing.T) {
	ts := startServer(t)
	alice, ra := ts.dial("alice")
	_, rb := ts.dial("bob")
	send(t, alice, "hello", "bob", "", false)
	gid := must[string](t)(alice.CreateGroup(ctxT(t), im.GroupWork, "team", "team", "bob"))
	waitFor(t, "setup pushes", func() bool { return len(rb.messages()) == 1 && len(rb.groupEvents()) == 1 })

	bad := []string{"a:b", "x/../y", strings.Repeat("x", 4000), "", "josé", "用户", "a b", "a\x00b"}
	fields := []struct {
		name string
		call func(ctx context.Context, id string) error
	}{
		{"send receiver", func(ctx context.Context, id string) error {
			_, err := alice.SendMessage(ctx, alice.CreateTextMessage("x"), id, "", im.PriorityNormal, false)
			return err
		}},
		{"send group", func(ctx context.Context, id string) error {
			_, err := alice.SendMessage(ctx, alice.CreateTextMessage("x"), "", id, im.PriorityNormal, false)
			return err
		}},
		{"history peer", func(ctx context.Context, id string) error {
			_, err := alice.GetC2CHistoryMessageList(ctx, id, 10, nil)
			return err
		}},
		{"history group", func(ctx context.Context, id string) error {
			_, err := alice.GetGroupHistoryMessageList(ctx, id, 10, nil)
			return err
		}},
		{"mark read peer", func(ctx context.Context, id string) error { return alice.MarkC2CMessageAsRead(ctx, id) }},
		{"create group id", func(ctx context.Context, id string) error {
			if id == "" {
				id = "\x00" // "" asks the server to pick one
			}
			_, err := alice.CreateGroup(ctx, im.GroupWork, id, "g")
			return err
		}},
		{"create member", func(ctx context.Context, id string) error {
			_, err := alice.CreateGroup(ctx, im.GroupWork, "", "g", "bob", id)
			return err
		}},
		{"invite group", func(ctx context.Context, id string) error { return alice.InviteUserToGroup(ctx, id, []string{"carol"}) }},
		{"invite user", func(ctx context.Context, id string) error {
			return alice.InviteUserToGroup(ctx, gid, []string{"carol", id})
		}},
		{"join group", func(ctx context.Context, id string) error { return alice.JoinGroup(ctx, id, "") }},
		{"quit group", func(ctx context.Context, id string) error { return alice.QuitGroup(ctx, id) }},
		{"kick group", func(ctx context.Context, id string) error { return alice.KickGroupMember(ctx, id, []string{"bob"}, "") }},
		{"kick user", func(ctx context.Context, id string) error {
			return alice.KickGroupMember(ctx, gid, []string{"bob", id}, "")
		}},
		{"receipt peer", func(ctx context.Context, id string) error {
			return alice.SendMessageReadReceipts(ctx, []*im.Message{{MsgID: "m", Seq: 1, UserID: id}})
		}},
		{"receipt group", func(ctx context.Context, id string) error {
			return alice.SendMessageReadReceipts(ctx, []*im.Message{{MsgID: "m", Seq: 1, GroupID: id}})
		}},
		{"get receipts peer", func(ctx context.Context, id string) error {
			_, err := alice.GetMessageReadReceipts(ctx, []*im.Message{{MsgID: "m", Seq: 1, UserID: id}})
			return err
		}},
		{"read members group", func(ctx context.Context, id string) error {
			_, err := alice.GetGroupMessageReadMemberList(ctx, &im.Message{MsgID: "m", Seq: 1, GroupID: id}, im.ReadMembersFilterRead, 0, 10)
			return err
		}},
		{"device", func(ctx context.Context, id string) error {
			if id == "" {
				id = "\x00" // "" is the ephemeral device
			}
			c, err := im.Dial(ctx, ts.url(), "carol", ts.token("carol"), im.WithDeviceID(id), im.WithReconnect(false))
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"ack peer", func(ctx context.Context, id string) error {
			r := rawDial(t, ts, "readmark.v1.proto")
			defer r.c.CloseNow()
			r.login(ts, "dave")
			r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{Cursors: []*pb.SyncCursor{
				{Conversation: &pb.Conversation{PeerId: id}, Seq: 1},
			}}}})
			if e := r.readResponse().GetError(); e != nil {
				return &im.Error{Code: int(e.Code), Desc: e.Desc}
			}
			return nil
		}},
	}
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			for _, id := range bad {
				err := f.call(ctxT(t), id)
				if err == nil {
					t.Fatalf("ID %.20q accepted", id)
				}
				wantCode(t, err, im.CodeInvalidArgument)
			}
		})
	}
	// A valid user without a conversation: NotFound, no push.
	_, rc := ts.dial("carol")
	wantCode(t, alice.MarkC2CMessageAsRead(ctxT(t), "carol"), im.CodeNotFound)

	// Nothing was stored or pushed: the next message is bob's second, and
	// no one got a group event or a read mark.
	send(t, alice, "after", "bob", "", false)
	waitForMsg(t, "the marker", rb, func() bool { return len(rb.messages()) == 2 })
	if m := rb.messages()[1]; m.Seq != 2 || m.Text != "after" {
		t.Fatalf("bob's second message: %+v", m)
	}
	if len(rb.groupEvents()) != 1 || len(ra.c2cReads()) != 0 || len(rc.c2cReads()) != 0 || len(rc.messages()) != 0 {
		t.Fatalf("pushes: bob %d group events, alice %d reads, carol %d reads %d messages",
			len(rb.groupEvents()), len(ra.c2cReads()), len(rc.c2cReads()), len(rc.messages()))
	}
}
