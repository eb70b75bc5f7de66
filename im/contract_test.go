package im_test

import (
	"context"
	"time"

	"github.com/readmark/readmark/im"
)

// This file compiles only while the SDK keeps the names and signatures that
// CONTRACT.md fixes; outside code and tests rely on them.
var (
	_ func(context.Context, string, string, string, ...im.Option) (*im.Client, error)                                                       = im.Dial
	_ func(*im.Client) error                                                                                                                = (*im.Client).Close
	_ func(*im.Client) string                                                                                                               = (*im.Client).UserID
	_ func(*im.Client, context.Context, im.GroupType, string, string, ...string) (string, error)                                            = (*im.Client).CreateGroup
	_ func(*im.Client, context.Context, string, []string) error                                                                             = (*im.Client).InviteUserToGroup
	_ func(*im.Client, context.Context, string, string) error                                                                               = (*im.Client).JoinGroup
	_ func(*im.Client, context.Context, string) error                                                                                       = (*im.Client).QuitGroup
	_ func(*im.Client, context.Context, string, []string, string) error                                                                     = (*im.Client).KickGroupMember
	_ func(*im.Client, string) *im.Message                                                                                                  = (*im.Client).CreateTextMessage
	_ func(*im.Client, context.Context, *im.Message, string, string, im.Priority, bool) (*im.Message, error)                                = (*im.Client).SendMessage
	_ func(*im.Client, context.Context, string, int, *im.Message) ([]*im.Message, error)                                                    = (*im.Client).GetGroupHistoryMessageList
	_ func(*im.Client, context.Context, string, int, *im.Message) ([]*im.Message, error)                                                    = (*im.Client).GetC2CHistoryMessageList
	_ func(*im.Client, context.Context, []*im.Message) error                                                                                = (*im.Client).SendMessageReadReceipts
	_ func(*im.Client, context.Context, []*im.Message) ([]*im.MessageReceipt, error)                                                        = (*im.Client).GetMessageReadReceipts
	_ func(*im.Client, context.Context, *im.Message, im.GroupMessageReadMembersFilter, uint64, int) (*im.GroupMessageReadMemberList, error) = (*im.Client).GetGroupMessageReadMemberList
	_ func(*im.Client, context.Context, string) error                                                                                       = (*im.Client).MarkC2CMessageAsRead
	_ func(*im.Client, im.AdvancedMsgListener)                                                                                              = (*im.Client).AddAdvancedMsgListener
	_ func(*im.Client, im.AdvancedMsgListener)                                                                                              = (*im.Client).RemoveAdvancedMsgListener

	_ im.AdvancedMsgListener = im.BaseAdvancedMsgListener{}
	_ error                  = (*im.Error)(nil)

	_ = []im.GroupType{im.GroupWork, im.GroupPublic, im.GroupMeeting, im.GroupCommunity, im.GroupAVChatRoom}
	_ = []im.Priority{im.PriorityDefault, im.PriorityHigh, im.PriorityNormal, im.PriorityLow}
	_ = []im.GroupMessageReadMembersFilter{im.ReadMembersFilterRead, im.ReadMembersFilterUnread}
	_ = []int{im.CodeInvalidArgument, im.CodeUnauthenticated, im.CodePermissionDenied, im.CodeNotFound,
		im.CodeGroupTypeNoReceipt, im.CodeMessageNoReceipt, im.CodeReceiptOwnMessage, im.CodeTooMany, im.CodeRateLimited}

	_ = im.Message{MsgID: "", Seq: 0, Sender: "", UserID: "", GroupID: "", Timestamp: time.Time{}, IsSelf: false, NeedReadReceipt: false, Text: ""}
	_ = im.MessageReceipt{MsgID: "", UserID: "", IsPeerRead: false, Timestamp: time.Time{}, GroupID: "", ReadCount: uint64(0), UnreadCount: uint64(0)}
	_ = im.GroupMemberInfo{UserID: "", NickName: "", FaceURL: "", ReadTime: time.Time{}}
	_ = im.GroupMessageReadMemberList{Members: []*im.GroupMemberInfo{}, NextSeq: uint64(0), IsFinished: false}
	_ = im.Error{Code: int(0), Desc: ""}
	_ = im.GroupType("Work") == im.GroupWork
)

type listener struct{ im.BaseAdvancedMsgListener }

var _ interface {
	OnRecvNewMessage(*im.Message)
	OnRecvMessageReadReceipts([]*im.MessageReceipt)
	OnRecvC2CReadReceipt([]*im.MessageReceipt)
} = listener{}
