package dispatch

import (
	"errors"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
)

func TestCheckIDs(t *testing.T) {
	conv := func(peer, group string) *pb.Conversation { return &pb.Conversation{PeerId: peer, GroupId: group} }
	ref := func(c *pb.Conversation) []*pb.MessageRef {
		return []*pb.MessageRef{{Conversation: c, Seq: 1, MsgId: "m"}}
	}
	cursors := func(c *pb.Conversation) []*pb.SyncCursor { return []*pb.SyncCursor{{Conversation: c, Seq: 1}} }
	frames := map[string]func(id string) *pb.ClientFrame{
		"sync": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{Cursors: cursors(conv(id, ""))}}}
		},
		"ack": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{Cursors: cursors(conv("", id))}}}
		},
		"create id": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{GroupId: id}}}
		},
		"create user": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{MemberIds: []string{"ok", id}}}}
		},
		"invite group": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_Invite{Invite: &pb.InviteRequest{GroupId: id, UserIds: []string{"ok"}}}}
		},
		"invite user": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_Invite{Invite: &pb.InviteRequest{GroupId: "g", UserIds: []string{id}}}}
		},
		"join": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_JoinGroup{JoinGroup: &pb.JoinGroupRequest{GroupId: id}}}
		},
		"quit": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_QuitGroup{QuitGroup: &pb.QuitGroupRequest{GroupId: id}}}
		},
		"kick group": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_Kick{Kick: &pb.KickRequest{GroupId: id, UserIds: []string{"ok"}}}}
		},
		"kick user": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_Kick{Kick: &pb.KickRequest{GroupId: "g", UserIds: []string{id}}}}
		},
		"send receiver": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{Receiver: id}}}
		},
		"send group": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{GroupId: id}}}
		},
		"history": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_History{History: &pb.HistoryRequest{Conversation: conv(id, "")}}}
		},
		"send receipts": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_SendReceipts{SendReceipts: &pb.SendReceiptsRequest{Messages: ref(conv("", id))}}}
		},
		"get receipts": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_GetReceipts{GetReceipts: &pb.GetReceiptsRequest{Messages: ref(conv(id, ""))}}}
		},
		"read members": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_ReadMembers{ReadMembers: &pb.ReadMembersRequest{Message: ref(conv("", id))[0]}}}
		},
		"mark read": func(id string) *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_MarkC2CRead{MarkC2CRead: &pb.MarkC2CReadRequest{PeerId: id}}}
		},
	}
	for name, frame := range frames {
		t.Run(name, func(t *testing.T) {
			if err := checkIDs(frame("good_id.1@x-#")); err != nil {
				t.Fatalf("a valid ID refused: %v", err)
			}
			for _, bad := range []string{"a:b", "x/../y", string(make([]byte, 4000)), "josé", "a b"} {
				err := checkIDs(frame(bad))
				var ae *apierr.Error
				if !errors.As(err, &ae) || ae.Code != pb.CodeInvalidArgument {
					t.Fatalf("ID %.10q: got %v, want InvalidArgument", bad, err)
				}
			}
		})
	}
}
