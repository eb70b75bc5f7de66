package im

import (
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// GroupType is the kind of a group, named as in the reference product.
type GroupType string

// Group types. Which of them may carry read receipts is an admin setting
// (read_receipt_group_types); AVChatRoom groups never do by default.
const (
	GroupWork       GroupType = "Work"
	GroupPublic     GroupType = "Public"
	GroupMeeting    GroupType = "Meeting"
	GroupCommunity  GroupType = "Community"
	GroupAVChatRoom GroupType = "AVChatRoom"
)

var groupTypeToPB = map[GroupType]pb.GroupType{
	GroupWork:       pb.GroupType_GROUP_TYPE_WORK,
	GroupPublic:     pb.GroupType_GROUP_TYPE_PUBLIC,
	GroupMeeting:    pb.GroupType_GROUP_TYPE_MEETING,
	GroupCommunity:  pb.GroupType_GROUP_TYPE_COMMUNITY,
	GroupAVChatRoom: pb.GroupType_GROUP_TYPE_AVCHATROOM,
}

func groupTypeFromPB(t pb.GroupType) GroupType {
	for k, v := range groupTypeToPB {
		if v == t {
			return k
		}
	}
	return ""
}

// Priority is a message's delivery priority.
type Priority int

// Message priorities (the values match the wire enum).
const (
	PriorityDefault Priority = 0
	PriorityHigh    Priority = 1
	PriorityNormal  Priority = 2
	PriorityLow     Priority = 3
)

// ElemType tells which content a Message carries.
type ElemType int

// Element types: Text or CustomData.
const (
	ElemText   ElemType = 0
	ElemCustom ElemType = 1
)

// Message is a chat message. Create one with CreateTextMessage or
// CreateCustomMessage, set NeedReadReceipt if wanted and send it with
// SendMessage; received and listed messages have every field set.
type Message struct {
	MsgID           string    // set by the server on send
	Seq             uint64    // position in its conversation, set by the server (0 for OnlineUserOnly messages)
	Sender          string    // user ID of the sender
	UserID          string    // C2C: the other party ("" for group messages)
	GroupID         string    // group messages ("" for C2C)
	Timestamp       time.Time // server time
	IsSelf          bool      // sent by this client's user
	NeedReadReceipt bool      // the sender wants read receipts
	Text            string    // ElemText content
	CustomData      []byte    // ElemCustom content
	ElemType        ElemType
	Priority        Priority
	OnlineUserOnly  bool // relayed to online sessions only, never stored
	// ReceiptSent reports that this user already sent a read receipt for the
	// message, from any device. Set in history and sync results.
	ReceiptSent bool
}

// MessageReceipt is the read state of one message, or (for
// OnRecvC2CReadReceipt) of a whole C2C conversation.
type MessageReceipt struct {
	MsgID       string
	UserID      string    // C2C: the peer (OnRecvC2CReadReceipt: the reader)
	IsPeerRead  bool      // C2C: the peer has read it
	Timestamp   time.Time // C2C conversation-level read time (MarkC2CMessageAsRead); zero otherwise
	GroupID     string
	ReadCount   uint64 // group: members who read it
	UnreadCount uint64 // group: members who must still read it
	Seq         uint64 // the message's seq, when known
}

// GroupMessageReadMembersFilter selects the read or the unread members.
type GroupMessageReadMembersFilter int

// Filters of GetGroupMessageReadMemberList.
const (
	ReadMembersFilterRead   GroupMessageReadMembersFilter = 0
	ReadMembersFilterUnread GroupMessageReadMembersFilter = 1
)

// GroupMemberInfo is a member in a read-member list.
type GroupMemberInfo struct {
	UserID   string
	NickName string
	FaceURL  string
	ReadTime time.Time // zero in the unread list
}

// GroupMessageReadMemberList is one page of GetGroupMessageReadMemberList.
// Pass NextSeq to get the next page while IsFinished is false.
type GroupMessageReadMemberList struct {
	Members    []*GroupMemberInfo
	NextSeq    uint64
	IsFinished bool
}

// GroupEventKind tells what happened in a GroupEvent.
type GroupEventKind int

// Group event kinds (the values match the wire enum).
const (
	GroupEventCreated GroupEventKind = 1 // UserIDs are the initial members
	GroupEventJoined  GroupEventKind = 2 // UserIDs joined (invited or by themselves)
	GroupEventQuit    GroupEventKind = 3 // UserIDs left
	GroupEventKicked  GroupEventKind = 4 // UserIDs were removed by OpUserID
)

// GroupEvent is a change of a group's membership, pushed to its members.
type GroupEvent struct {
	GroupID   string
	Kind      GroupEventKind
	UserIDs   []string
	OpUserID  string
	GroupType GroupType
	Reason    string
	Time      time.Time
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// messageFromPB converts a wire message as seen by user me.
func messageFromPB(m *pb.Message, me string) *Message {
	out := &Message{
		MsgID:           m.GetMsgId(),
		Seq:             m.GetSeq(),
		Sender:          m.GetSender(),
		GroupID:         m.GetGroupId(),
		Timestamp:       msTime(m.GetTimeMs()),
		IsSelf:          m.GetSender() == me,
		NeedReadReceipt: m.GetNeedReadReceipt(),
		Text:            m.GetText(),
		CustomData:      m.GetCustomData(),
		ElemType:        ElemType(m.GetElemType()),
		Priority:        Priority(m.GetPriority()),
		OnlineUserOnly:  m.GetOnlineUserOnly(),
		ReceiptSent:     m.GetReceiptSent(),
	}
	if out.GroupID == "" {
		out.UserID = m.GetSender()
		if out.IsSelf {
			out.UserID = m.GetReceiver()
		}
	}
	return out
}

func receiptFromPB(r *pb.MessageReceipt) *MessageReceipt {
	return &MessageReceipt{
		MsgID:       r.GetMsgId(),
		UserID:      r.GetUserId(),
		IsPeerRead:  r.GetIsPeerRead(),
		Timestamp:   msTime(r.GetTimeMs()),
		GroupID:     r.GetGroupId(),
		ReadCount:   r.GetReadCount(),
		UnreadCount: r.GetUnreadCount(),
		Seq:         r.GetSeq(),
	}
}

func receiptsFromPB(rs []*pb.MessageReceipt) []*MessageReceipt {
	out := make([]*MessageReceipt, 0, len(rs))
	for _, r := range rs {
		out = append(out, receiptFromPB(r))
	}
	return out
}

func memberFromPB(m *pb.GroupMember) *GroupMemberInfo {
	return &GroupMemberInfo{
		UserID:   m.GetUserId(),
		NickName: m.GetNickName(),
		FaceURL:  m.GetFaceUrl(),
		ReadTime: msTime(m.GetReadTimeMs()),
	}
}

func groupEventFromPB(e *pb.GroupEvent) *GroupEvent {
	return &GroupEvent{
		GroupID:   e.GetGroupId(),
		Kind:      GroupEventKind(e.GetKind()),
		UserIDs:   e.GetUserIds(),
		OpUserID:  e.GetOpUserId(),
		GroupType: groupTypeFromPB(e.GetGroupType()),
		Reason:    e.GetReason(),
		Time:      msTime(e.GetTimeMs()),
	}
}

// selfReceiptFromPB converts a reference to a message this user sent a
// receipt for from another device.
func selfReceiptFromPB(r *pb.MessageRef) *Message {
	return &Message{
		MsgID:       r.GetMsgId(),
		Seq:         r.GetSeq(),
		UserID:      r.GetConversation().GetPeerId(),
		GroupID:     r.GetConversation().GetGroupId(),
		ReceiptSent: true,
	}
}

// convKey identifies a conversation from the client's point of view.
type convKey struct {
	peer, group string
}

func (k convKey) pb() *pb.Conversation {
	return &pb.Conversation{PeerId: k.peer, GroupId: k.group}
}

func convOf(m *pb.Message, me string) convKey {
	if g := m.GetGroupId(); g != "" {
		return convKey{group: g}
	}
	if m.GetSender() != me {
		return convKey{peer: m.GetSender()}
	}
	return convKey{peer: m.GetReceiver()}
}

func convFromPB(c *pb.Conversation) convKey {
	return convKey{peer: c.GetPeerId(), group: c.GetGroupId()}
}

// refOf builds the wire reference of msg.
func refOf(msg *Message) (*pb.MessageRef, error) {
	refs, err := refsOf([]*Message{msg})
	if err != nil {
		return nil, err
	}
	return refs[0], nil
}

// refsOf builds the wire references of msgs in one allocation, and shares
// a Conversation among consecutive messages of the same conversation (a
// batch of receipts is typically one group's): 3 allocations per batch
// instead of 2 per message. The references are only marshaled, never
// modified, so the sharing is safe.
func refsOf(msgs []*Message) ([]*pb.MessageRef, error) {
	refs := make([]*pb.MessageRef, len(msgs))
	vals := make([]pb.MessageRef, len(msgs))
	var conv *pb.Conversation
	for i, m := range msgs {
		if m == nil {
			return nil, errorf(CodeInvalidArgument, "nil message")
		}
		peer := ""
		if m.GroupID == "" {
			peer = m.UserID
		}
		if conv == nil || conv.GroupId != m.GroupID || conv.PeerId != peer {
			conv = &pb.Conversation{GroupId: m.GroupID, PeerId: peer}
		}
		r := &vals[i]
		r.Conversation, r.Seq, r.MsgId = conv, m.Seq, m.MsgID
		refs[i] = r
	}
	return refs, nil
}
