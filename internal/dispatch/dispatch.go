// Package dispatch turns a client request into a call on the service that
// owns it (groups, messages, receipts, users) and wraps the answer in a
// response frame. Every entry point uses it — the WebSocket gateway and the
// server REST API alike — so a request means the same thing whichever way
// it arrives. It holds no business rules.
package dispatch

import (
	"context"
	"strings"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/groups"
	"github.com/readmark/readmark/internal/messages"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/users"
)

// Caller is who makes a request: the user, the session and device it came
// from (session 0 for requests made on a user's behalf by the server API)
// and the encoding its responses are measured in.
type Caller = messages.Caller

// Services are the services requests go to.
type Services struct {
	Groups   *groups.Service
	Messages *messages.Service
	Receipts *receipts.Engine
	Users    *users.Service
}

// Dispatcher routes requests to the services.
type Dispatcher struct {
	svc Services
}

// New returns a Dispatcher over svc.
func New(svc Services) *Dispatcher { return &Dispatcher{svc: svc} }

// Do runs request f (any body but login) for caller and returns the
// response frame (without id) or an error, an *apierr.Error for every
// failure the caller may see.
func (d *Dispatcher) Do(ctx context.Context, caller Caller, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	if err := checkIDs(f); err != nil {
		return nil, err
	}
	g := d.svc
	switch b := f.Body.(type) {
	case *pb.ClientFrame_Ping:
		return &pb.ServerFrame{Body: &pb.ServerFrame_Ping{Ping: &pb.PingResponse{ServerTimeMs: time.Now().UnixMilli()}}}, nil
	case *pb.ClientFrame_Sync:
		r, err := g.Messages.Sync(ctx, caller, b.Sync)
		return wrap(err, func() *pb.ServerFrame { return &pb.ServerFrame{Body: &pb.ServerFrame_Sync{Sync: r}} })
	case *pb.ClientFrame_Ack:
		return wrap(g.Messages.Ack(ctx, caller, b.Ack), okFrame)
	case *pb.ClientFrame_SetProfile:
		p := users.Profile{NickName: b.SetProfile.NickName, FaceURL: b.SetProfile.FaceUrl}
		return wrap(g.Users.Set(ctx, caller.UserID, p), okFrame)
	case *pb.ClientFrame_CreateGroup:
		r := b.CreateGroup
		id, err := g.Groups.Create(ctx, caller.UserID, r.Type, r.GroupId, r.Name, r.MemberIds)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_CreateGroup{CreateGroup: &pb.CreateGroupResponse{GroupId: id}}}
		})
	case *pb.ClientFrame_Invite:
		return wrap(g.Groups.Invite(ctx, caller.UserID, b.Invite.GroupId, b.Invite.UserIds), okFrame)
	case *pb.ClientFrame_JoinGroup:
		return wrap(g.Groups.Join(ctx, caller.UserID, b.JoinGroup.GroupId), okFrame)
	case *pb.ClientFrame_QuitGroup:
		return wrap(g.Groups.Quit(ctx, caller.UserID, b.QuitGroup.GroupId), okFrame)
	case *pb.ClientFrame_Kick:
		return wrap(g.Groups.Kick(ctx, caller.UserID, b.Kick.GroupId, b.Kick.UserIds, b.Kick.Reason), okFrame)
	case *pb.ClientFrame_SendMessage:
		m, err := g.Messages.Send(ctx, caller, b.SendMessage)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_SendMessage{SendMessage: &pb.SendMessageResponse{Message: m}}}
		})
	case *pb.ClientFrame_History:
		ms, err := g.Messages.History(ctx, caller, b.History)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_History{History: &pb.HistoryResponse{Messages: ms}}}
		})
	case *pb.ClientFrame_SendReceipts:
		return wrap(g.Receipts.SendFrom(ctx, caller.UserID, caller.SessionID, b.SendReceipts.Messages), okFrame)
	case *pb.ClientFrame_GetReceipts:
		rs, err := g.Receipts.Get(ctx, caller.UserID, b.GetReceipts.Messages)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_GetReceipts{GetReceipts: &pb.GetReceiptsResponse{Receipts: rs}}}
		})
	case *pb.ClientFrame_ReadMembers:
		r, err := g.Receipts.ReadMembers(ctx, caller.UserID, b.ReadMembers)
		return wrap(err, func() *pb.ServerFrame { return &pb.ServerFrame{Body: &pb.ServerFrame_ReadMembers{ReadMembers: r}} })
	case *pb.ClientFrame_MarkC2CRead:
		return wrap(g.Receipts.MarkC2CRead(ctx, caller.UserID, b.MarkC2CRead.PeerId), okFrame)
	case *pb.ClientFrame_Login:
		return nil, apierr.New(pb.CodeProtocol, "already logged in")
	case nil:
		return nil, apierr.New(pb.CodeProtocol, "request without a body (unknown request type?)")
	}
	return nil, apierr.New(pb.CodeProtocol, "unsupported request")
}

// SessionEnded releases what the services keep for a session that ended
// (the cursors of its ephemeral device).
func (d *Dispatcher) SessionEnded(caller Caller) { d.svc.Messages.SessionEnded(caller) }

func okFrame() *pb.ServerFrame { return &pb.ServerFrame{Body: &pb.ServerFrame_Ok{Ok: &pb.Empty{}}} }

func wrap(err error, resp func() *pb.ServerFrame) (*pb.ServerFrame, error) {
	if err != nil {
		return nil, err
	}
	return resp(), nil
}

// RequestName is the request's type for metrics and logs, e.g. "send_message".
func RequestName(f *pb.ClientFrame) string {
	if f.Body == nil {
		return "none"
	}
	fd := f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("body"))
	if fd == nil {
		return "none"
	}
	return strings.ToLower(string(fd.Name()))
}
