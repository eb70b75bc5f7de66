package gateway

import (
	"context"
	"strings"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/messages"
	"github.com/readmark/readmark/internal/users"
)

// route hands a request to the service that owns it and wraps the answer.
func (g *Gateway) route(ctx context.Context, s *session, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	caller := messages.Caller{UserID: s.user, SessionID: s.id}
	switch b := f.Body.(type) {
	case *pb.ClientFrame_Ping:
		return &pb.ServerFrame{Body: &pb.ServerFrame_Ping{Ping: &pb.PingResponse{ServerTimeMs: nowMs()}}}, nil
	case *pb.ClientFrame_Sync:
		r, err := g.cfg.Messages.Sync(ctx, caller, b.Sync)
		return wrap(err, func() *pb.ServerFrame { return &pb.ServerFrame{Body: &pb.ServerFrame_Sync{Sync: r}} })
	case *pb.ClientFrame_SetProfile:
		p := users.Profile{NickName: b.SetProfile.NickName, FaceURL: b.SetProfile.FaceUrl}
		return wrap(g.cfg.Users.Set(ctx, s.user, p), okFrame)
	case *pb.ClientFrame_CreateGroup:
		r := b.CreateGroup
		id, err := g.cfg.Groups.Create(ctx, s.user, r.Type, r.GroupId, r.Name, r.MemberIds)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_CreateGroup{CreateGroup: &pb.CreateGroupResponse{GroupId: id}}}
		})
	case *pb.ClientFrame_Invite:
		return wrap(g.cfg.Groups.Invite(ctx, s.user, b.Invite.GroupId, b.Invite.UserIds), okFrame)
	case *pb.ClientFrame_JoinGroup:
		return wrap(g.cfg.Groups.Join(ctx, s.user, b.JoinGroup.GroupId), okFrame)
	case *pb.ClientFrame_QuitGroup:
		return wrap(g.cfg.Groups.Quit(ctx, s.user, b.QuitGroup.GroupId), okFrame)
	case *pb.ClientFrame_Kick:
		return wrap(g.cfg.Groups.Kick(ctx, s.user, b.Kick.GroupId, b.Kick.UserIds, b.Kick.Reason), okFrame)
	case *pb.ClientFrame_SendMessage:
		m, err := g.cfg.Messages.Send(ctx, caller, b.SendMessage)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_SendMessage{SendMessage: &pb.SendMessageResponse{Message: m}}}
		})
	case *pb.ClientFrame_History:
		ms, err := g.cfg.Messages.History(ctx, caller, b.History)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_History{History: &pb.HistoryResponse{Messages: ms}}}
		})
	case *pb.ClientFrame_SendReceipts:
		return wrap(g.cfg.Receipts.SendFrom(ctx, s.user, s.id, b.SendReceipts.Messages), okFrame)
	case *pb.ClientFrame_GetReceipts:
		rs, err := g.cfg.Receipts.Get(ctx, s.user, b.GetReceipts.Messages)
		return wrap(err, func() *pb.ServerFrame {
			return &pb.ServerFrame{Body: &pb.ServerFrame_GetReceipts{GetReceipts: &pb.GetReceiptsResponse{Receipts: rs}}}
		})
	case *pb.ClientFrame_ReadMembers:
		r, err := g.cfg.Receipts.ReadMembers(ctx, s.user, b.ReadMembers)
		return wrap(err, func() *pb.ServerFrame { return &pb.ServerFrame{Body: &pb.ServerFrame_ReadMembers{ReadMembers: r}} })
	case *pb.ClientFrame_MarkC2CRead:
		return wrap(g.cfg.Receipts.MarkC2CRead(ctx, s.user, b.MarkC2CRead.PeerId), okFrame)
	case *pb.ClientFrame_Login:
		return nil, apierr.New(pb.CodeProtocol, "already logged in")
	case nil:
		return nil, apierr.New(pb.CodeProtocol, "request without a body (unknown request type?)")
	}
	return nil, apierr.New(pb.CodeProtocol, "unsupported request")
}

func okFrame() *pb.ServerFrame { return &pb.ServerFrame{Body: &pb.ServerFrame_Ok{Ok: &pb.Empty{}}} }

func wrap(err error, resp func() *pb.ServerFrame) (*pb.ServerFrame, error) {
	if err != nil {
		return nil, err
	}
	return resp(), nil
}

// requestName is the request's type for metrics and logs, e.g. "send_message".
func requestName(f *pb.ClientFrame) string {
	if f.Body == nil {
		return "none"
	}
	fd := f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("body"))
	if fd == nil {
		return "none"
	}
	return strings.ToLower(string(fd.Name()))
}
