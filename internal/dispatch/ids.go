package dispatch

import (
	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/conv"
)

// checkIDs applies the one ID rule (conv.ValidID) to every field of a
// request that names a user or a group, before any service sees it: a bad
// ID fails the request with InvalidArgument, and nothing is stored or
// pushed. Empty optional fields (a server-chosen group ID, the unset half
// of a conversation) are left to the services.
func checkIDs(f *pb.ClientFrame) error {
	switch b := f.Body.(type) {
	case *pb.ClientFrame_Sync:
		return checkCursors(b.Sync.Cursors)
	case *pb.ClientFrame_Ack:
		return checkCursors(b.Ack.Cursors)
	case *pb.ClientFrame_CreateGroup:
		if b.CreateGroup.GroupId != "" {
			if err := conv.CheckID("group_id", b.CreateGroup.GroupId); err != nil {
				return err
			}
		}
		return checkUsers("member_ids", b.CreateGroup.MemberIds)
	case *pb.ClientFrame_Invite:
		return first(conv.CheckID("group_id", b.Invite.GroupId), checkUsers("user_ids", b.Invite.UserIds))
	case *pb.ClientFrame_JoinGroup:
		return conv.CheckID("group_id", b.JoinGroup.GroupId)
	case *pb.ClientFrame_QuitGroup:
		return conv.CheckID("group_id", b.QuitGroup.GroupId)
	case *pb.ClientFrame_Kick:
		return first(conv.CheckID("group_id", b.Kick.GroupId), checkUsers("user_ids", b.Kick.UserIds))
	case *pb.ClientFrame_SendMessage:
		return checkConv(&pb.Conversation{PeerId: b.SendMessage.Receiver, GroupId: b.SendMessage.GroupId})
	case *pb.ClientFrame_History:
		return checkConv(b.History.Conversation)
	case *pb.ClientFrame_SendReceipts:
		return checkRefs(b.SendReceipts.Messages)
	case *pb.ClientFrame_GetReceipts:
		return checkRefs(b.GetReceipts.Messages)
	case *pb.ClientFrame_ReadMembers:
		return checkConv(b.ReadMembers.GetMessage().GetConversation())
	case *pb.ClientFrame_MarkC2CRead:
		return conv.CheckID("peer_id", b.MarkC2CRead.PeerId)
	}
	return nil
}

func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkConv(c *pb.Conversation) error {
	if c.GetPeerId() != "" {
		if err := conv.CheckID("peer_id", c.GetPeerId()); err != nil {
			return err
		}
	}
	if c.GetGroupId() != "" {
		return conv.CheckID("group_id", c.GetGroupId())
	}
	return nil
}

func checkCursors(cs []*pb.SyncCursor) error {
	for _, c := range cs {
		if err := checkConv(c.GetConversation()); err != nil {
			return err
		}
	}
	return nil
}

func checkRefs(refs []*pb.MessageRef) error {
	for _, r := range refs {
		if err := checkConv(r.GetConversation()); err != nil {
			return err
		}
	}
	return nil
}

func checkUsers(what string, ids []string) error {
	for _, id := range ids {
		if err := conv.CheckID(what, id); err != nil {
			return err
		}
	}
	return nil
}
