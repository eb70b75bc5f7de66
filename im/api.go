package im

import (
	"context"
	"crypto/rand"
	"math"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

func count32(name string, n int) (uint32, error) {
	if n < 0 || n > math.MaxUint32 {
		return 0, errorf(CodeInvalidArgument, "%s %d out of range", name, n)
	}
	return uint32(n), nil
}

// CreateGroup creates a group of the given type with the caller as owner and
// memberIDs as the other initial members, and returns its ID (chosen by the
// server when groupID is "").
func (c *Client) CreateGroup(ctx context.Context, groupType GroupType, groupID, groupName string, memberIDs ...string) (string, error) {
	t, ok := groupTypeToPB[groupType]
	if !ok {
		return "", errorf(CodeInvalidArgument, "unknown group type %q", groupType)
	}
	if err := checkCount("members", len(memberIDs), c.announced().GetMaxMembersPerCall()); err != nil {
		return "", err
	}
	resp, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{
		Type: t, GroupId: groupID, Name: groupName, MemberIds: memberIDs,
	}}})
	if err != nil {
		return "", err
	}
	return resp.GetCreateGroup().GetGroupId(), nil
}

// InviteUserToGroup adds userIDs to the group.
func (c *Client) InviteUserToGroup(ctx context.Context, groupID string, userIDs []string) error {
	if err := checkCount("users", len(userIDs), c.announced().GetMaxMembersPerCall()); err != nil {
		return err
	}
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Invite{Invite: &pb.InviteRequest{
		GroupId: groupID, UserIds: userIDs,
	}}})
	return err
}

// JoinGroup makes the caller a member of the group (Work groups need an
// invitation). message is shown to the group's admins.
func (c *Client) JoinGroup(ctx context.Context, groupID, message string) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_JoinGroup{JoinGroup: &pb.JoinGroupRequest{
		GroupId: groupID, Message: message,
	}}})
	return err
}

// QuitGroup removes the caller from the group.
func (c *Client) QuitGroup(ctx context.Context, groupID string) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_QuitGroup{QuitGroup: &pb.QuitGroupRequest{
		GroupId: groupID,
	}}})
	return err
}

// KickGroupMember removes userIDs from the group.
func (c *Client) KickGroupMember(ctx context.Context, groupID string, userIDs []string, reason string) error {
	if err := checkCount("users", len(userIDs), c.announced().GetMaxMembersPerCall()); err != nil {
		return err
	}
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Kick{Kick: &pb.KickRequest{
		GroupId: groupID, UserIds: userIDs, Reason: reason,
	}}})
	return err
}

// CreateTextMessage returns a new text message to send with SendMessage.
func (c *Client) CreateTextMessage(text string) *Message {
	return &Message{Text: text, ElemType: ElemText, Sender: c.userID, IsSelf: true}
}

// CreateCustomMessage returns a new message carrying application data.
func (c *Client) CreateCustomMessage(data []byte) *Message {
	return &Message{CustomData: data, ElemType: ElemCustom, Sender: c.userID, IsSelf: true}
}

// SendMessage sends msg to the user receiver or to the group groupID
// (exactly one of them). On success msg is updated in place with what the
// server assigned (MsgID, Seq, Timestamp, ...) and a copy is returned.
// onlineUserOnly messages are relayed to online sessions only and never
// stored (their Seq is 0).
func (c *Client) SendMessage(ctx context.Context, msg *Message, receiver, groupID string, priority Priority, onlineUserOnly bool) (*Message, error) {
	if msg == nil {
		return nil, errorf(CodeInvalidArgument, "nil message")
	}
	if (receiver == "") == (groupID == "") {
		return nil, errorf(CodeInvalidArgument, "exactly one of receiver and groupID must be set")
	}
	if err := checkBody(msg, c.announced()); err != nil {
		return nil, err
	}
	k := convKey{peer: receiver, group: groupID}
	c.sendBegin(k)
	resp, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{
		Receiver:        receiver,
		GroupId:         groupID,
		ElemType:        pb.ElemType(msg.ElemType),
		Text:            msg.Text,
		CustomData:      msg.CustomData,
		NeedReadReceipt: msg.NeedReadReceipt,
		Priority:        pb.Priority(priority),
		OnlineUserOnly:  onlineUserOnly,
		// An idempotency key, so that a send cut off by a lost connection
		// is retried without storing the message twice.
		ClientMsgId: newClientMsgID(),
	}}})
	pm := resp.GetSendMessage().GetMessage()
	c.sendEnd(k, pm)
	if err != nil {
		return nil, err
	}
	if pm == nil {
		return nil, errorf(CodeInternal, "send_message response without message")
	}
	out := messageFromPB(pm, c.userID)
	if out.GroupID == "" && out.UserID == "" {
		out.UserID = receiver
	}
	msg.MsgID = out.MsgID
	msg.Seq = out.Seq
	msg.Sender = out.Sender
	msg.UserID = out.UserID
	msg.GroupID = out.GroupID
	msg.Timestamp = out.Timestamp
	msg.IsSelf = out.IsSelf
	msg.NeedReadReceipt = out.NeedReadReceipt
	msg.Priority = out.Priority
	msg.OnlineUserOnly = out.OnlineUserOnly
	cp := *msg
	return &cp, nil
}

// GetGroupHistoryMessageList returns up to count messages of the group,
// newest first, older than lastMsg (nil = from the newest); fewer only when
// the history (since the user joined) has no more. Messages over a frame's
// worth are fetched in several requests.
func (c *Client) GetGroupHistoryMessageList(ctx context.Context, groupID string, count int, lastMsg *Message) ([]*Message, error) {
	return c.history(ctx, convKey{group: groupID}, count, lastMsg)
}

// GetC2CHistoryMessageList returns up to count messages exchanged with
// userID, newest first, older than lastMsg (nil = from the newest); fewer
// only when the history has no more.
func (c *Client) GetC2CHistoryMessageList(ctx context.Context, userID string, count int, lastMsg *Message) ([]*Message, error) {
	return c.history(ctx, convKey{peer: userID}, count, lastMsg)
}

func (c *Client) history(ctx context.Context, k convKey, count int, lastMsg *Message) ([]*Message, error) {
	n, err := count32("count", count)
	if err != nil {
		return nil, err
	}
	if err := checkCount("messages per page", count, c.announced().GetMaxBatch()); err != nil {
		return nil, err
	}
	var before uint64
	if lastMsg != nil {
		before = lastMsg.Seq
	}
	// The server returns fewer messages than asked when more would not fit
	// in one frame: ask again for the rest until count or the beginning.
	var out []*Message
	for len(out) < count {
		resp, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_History{History: &pb.HistoryRequest{
			Conversation: k.pb(), Count: n - uint32(len(out)), BeforeSeq: before,
		}}})
		if err != nil {
			return nil, err
		}
		ms := resp.GetHistory().GetMessages()
		for _, m := range ms {
			out = append(out, messageFromPB(m, c.userID))
		}
		if len(ms) == 0 || ms[len(ms)-1].GetSeq() <= 1 {
			break
		}
		before = ms[len(ms)-1].GetSeq()
	}
	return out, nil
}

// SendMessageReadReceipts tells the senders of msgs (received messages with
// NeedReadReceipt, all of one conversation) that this user has read them.
func (c *Client) SendMessageReadReceipts(ctx context.Context, msgs []*Message) error {
	refs, err := c.batch(msgs)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_SendReceipts{SendReceipts: &pb.SendReceiptsRequest{
		Messages: refs,
	}}})
	return err
}

// batch returns the references of a receipt batch within the batch limit.
func (c *Client) batch(msgs []*Message) ([]*pb.MessageRef, error) {
	if err := checkCount("messages in one call", len(msgs), c.announced().GetMaxBatch()); err != nil {
		return nil, err
	}
	return refsOf(msgs)
}

// GetMessageReadReceipts returns the read state of messages this user sent.
func (c *Client) GetMessageReadReceipts(ctx context.Context, msgs []*Message) ([]*MessageReceipt, error) {
	refs, err := c.batch(msgs)
	if err != nil {
		return nil, err
	}
	resp, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_GetReceipts{GetReceipts: &pb.GetReceiptsRequest{
		Messages: refs,
	}}})
	if err != nil {
		return nil, err
	}
	return receiptsFromPB(resp.GetGetReceipts().GetReceipts()), nil
}

// GetGroupMessageReadMemberList returns one page of the members who read
// (filter ReadMembersFilterRead) or have not read a group message this user
// sent. Start with nextSeq 0 and pass the returned NextSeq until IsFinished.
func (c *Client) GetGroupMessageReadMemberList(ctx context.Context, msg *Message, filter GroupMessageReadMembersFilter, nextSeq uint64, count int) (*GroupMessageReadMemberList, error) {
	ref, err := refOf(msg)
	if err != nil {
		return nil, err
	}
	n, err := count32("count", count)
	if err != nil {
		return nil, err
	}
	if err := checkCount("members per page", count, c.announced().GetMaxBatch()); err != nil {
		return nil, err
	}
	resp, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_ReadMembers{ReadMembers: &pb.ReadMembersRequest{
		Message: ref, Filter: pb.ReadMembersFilter(filter), NextSeq: nextSeq, Count: n,
	}}})
	if err != nil {
		return nil, err
	}
	rm := resp.GetReadMembers()
	out := &GroupMessageReadMemberList{
		Members:    make([]*GroupMemberInfo, 0, len(rm.GetMembers())),
		NextSeq:    rm.GetNextSeq(),
		IsFinished: rm.GetIsFinished(),
	}
	for _, m := range rm.GetMembers() {
		out.Members = append(out.Members, memberFromPB(m))
	}
	return out, nil
}

// MarkC2CMessageAsRead marks the whole C2C conversation with userID read up
// to now; the peer gets OnRecvC2CReadReceipt.
func (c *Client) MarkC2CMessageAsRead(ctx context.Context, userID string) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_MarkC2CRead{MarkC2CRead: &pb.MarkC2CReadRequest{
		PeerId: userID,
	}}})
	return err
}

// Ping asks the server for its time; it checks the connection end to end.
func (c *Client) Ping(ctx context.Context) (time.Time, error) {
	resp, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	if err != nil {
		return time.Time{}, err
	}
	return msTime(resp.GetPing().GetServerTimeMs()), nil
}

// Limits returns the limits the server announced at the last login.
func (c *Client) Limits() Limits {
	l := c.announced()
	return Limits{
		MaxFrameBytes:       int(l.GetMaxFrameBytes()),
		MaxTextBytes:        int(l.GetMaxTextBytes()),
		MaxCustomDataBytes:  int(l.GetMaxCustomDataBytes()),
		MaxBatch:            int(l.GetMaxBatch()),
		MaxGroupMembers:     int(l.GetMaxGroupMembers()),
		MaxMembersPerCall:   int(l.GetMaxMembersPerCall()),
		Heartbeat:           time.Duration(l.GetHeartbeatSeconds()) * time.Second,
		MaxServerFrameBytes: int(l.GetMaxServerFrameBytes()),
	}
}

// Limits are the server's limits, announced at login.
type Limits struct {
	MaxFrameBytes      int
	MaxTextBytes       int
	MaxCustomDataBytes int
	MaxBatch           int // receipts per call, messages per receipt pull, page size
	MaxGroupMembers    int
	MaxMembersPerCall  int
	Heartbeat          time.Duration // the client sends something at least this often
	// MaxServerFrameBytes is the largest frame the server sends; longer
	// pages are cut below it.
	MaxServerFrameBytes int
}

// SetSelfInfo sets this user's nickname and avatar URL, which others see in
// GetGroupMessageReadMemberList (GroupMemberInfo.NickName, FaceURL). Empty
// values clear them. Limits: 64 bytes of nickname, 512 of URL.
func (c *Client) SetSelfInfo(ctx context.Context, nickName, faceURL string) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_SetProfile{SetProfile: &pb.SetProfileRequest{
		NickName: nickName, FaceUrl: faceURL,
	}}})
	return err
}

// newClientMsgID returns a random idempotency key for a send.
func newClientMsgID() string { return rand.Text() }
