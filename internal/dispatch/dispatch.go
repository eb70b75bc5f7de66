// Package dispatch turns a client request into a call on the service that
// owns it (groups, messages, receipts, users) and wraps the answer in a
// response frame. Every entry point uses it — the WebSocket gateway and the
// server REST API alike — so a request means the same thing whichever way
// it arrives. It holds no business rules.
//
// It is also where a request finds its partition (package cluster): a
// conversation-scoped request runs here if this node owns the
// conversation's partition (admitted by Ownership.Enter for its duration),
// and is forwarded to the owner otherwise, which runs the same code. Sync,
// ping and set_profile are not partitioned and always run here.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/cluster/clusterpb"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/groups"
	"github.com/readmark/readmark/internal/messages"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/storage"
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

// Dispatcher routes requests to the services, here or on the partition's
// owner.
type Dispatcher struct {
	svc Services
	own cluster.Ownership
	log *slog.Logger
}

// New returns a Dispatcher over svc. It registers with own the handler of
// requests forwarded by other nodes and the services' partition drops, so
// call it before the cluster node starts.
func New(svc Services, own cluster.Ownership, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	d := &Dispatcher{svc: svc, own: own, log: log}
	own.Serve(d.serve)
	own.OnRelease(func(p uint32) {
		svc.Groups.DropPartition(p)
		svc.Messages.DropPartition(p)
		svc.Receipts.DropPartition(p)
	})
	return d
}

// Do runs request f (any body but login) for caller and returns the
// response frame (without id) or an error, an *apierr.Error for every
// failure the caller may see. f.Acked is not applied here: the gateway
// applies it first, as an AckRequest of its own (only a client session has
// a device to acknowledge for).
func (d *Dispatcher) Do(ctx context.Context, caller Caller, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	if err := checkIDs(f); err != nil {
		return nil, err
	}
	ctx = requestContext(ctx, f)
	switch b := f.Body.(type) {
	case *pb.ClientFrame_CreateGroup:
		if b.CreateGroup.GetGroupId() == "" {
			// The ID decides the partition, so it is chosen here.
			r := proto.Clone(b.CreateGroup).(*pb.CreateGroupRequest)
			r.GroupId = groups.NewGroupID()
			f = &pb.ClientFrame{Id: f.Id, Body: &pb.ClientFrame_CreateGroup{CreateGroup: r}}
		}
	case *pb.ClientFrame_GetReceipts:
		return d.getReceipts(ctx, caller, f, b.GetReceipts.GetMessages())
	}
	key, ok := convKey(caller.UserID, f)
	if !ok {
		// Unpartitioned, or malformed: the service rejects a malformed
		// request before touching any conversation's state.
		return d.run(ctx, caller, f)
	}
	return d.route(ctx, caller, f, cluster.Of(key))
}

// route runs f on partition p's owner: here if this node owns p, else there.
func (d *Dispatcher) route(ctx context.Context, caller Caller, f *pb.ClientFrame, p uint32) (*pb.ServerFrame, error) {
	if release, ok := d.own.Enter(p); ok {
		resp, err := d.run(ctx, caller, f)
		release()
		if !errors.Is(err, storage.ErrFenced) {
			return resp, err
		}
		// The partition was lost while the request ran and its write was
		// refused (nothing was written): run it at the new owner.
	}
	return d.forward(ctx, caller, f, p)
}

func (d *Dispatcher) forward(ctx context.Context, caller Caller, f *pb.ClientFrame, p uint32) (*pb.ServerFrame, error) {
	raw, err := proto.Marshal(f)
	if err != nil {
		return nil, err
	}
	reply, err := d.own.Forward(ctx, p, &clusterpb.Forward{
		UserId: caller.UserID, SessionId: caller.SessionID, DeviceId: caller.DeviceID, Json: caller.JSON,
		Frame: raw, Partition: p,
	}, pb.Idempotent(f))
	if err != nil {
		return nil, err
	}
	resp := &pb.ServerFrame{}
	if err := proto.Unmarshal(reply.GetFrame(), resp); err != nil {
		return nil, err
	}
	if e := resp.GetError(); e != nil {
		return nil, &apierr.Error{Code: e.Code, Desc: e.Desc}
	}
	return resp, nil
}

// serve runs a request another node forwarded; the cluster node has
// admitted its partition.
func (d *Dispatcher) serve(ctx context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply {
	f := &pb.ClientFrame{}
	var resp *pb.ServerFrame
	err := proto.Unmarshal(req.GetFrame(), f)
	if err == nil {
		caller := Caller{UserID: req.GetUserId(), SessionID: req.GetSessionId(), DeviceID: req.GetDeviceId(), JSON: req.GetJson()}
		resp, err = d.run(requestContext(ctx, f), caller, f)
	}
	if errors.Is(err, storage.ErrFenced) {
		return &clusterpb.ForwardReply{NotOwner: true}
	}
	if err != nil {
		ae := apierr.From(err)
		if ae.Code == pb.CodeInternal {
			d.log.Error("forwarded request failed", "request", RequestName(f), "user", req.GetUserId(), "err", err)
		}
		resp = &pb.ServerFrame{Error: &pb.Error{Code: ae.Code, Desc: ae.Desc}}
	}
	raw, err := proto.Marshal(resp)
	if err != nil {
		d.log.Error("encoding a forwarded response", "err", err)
		raw, _ = proto.Marshal(&pb.ServerFrame{Error: &pb.Error{Code: pb.CodeInternal, Desc: "internal error"}})
	}
	return &clusterpb.ForwardReply{Frame: raw}
}

// requestContext is the context f runs in: ctx for a read-only request,
// which its caller may abandon (a client gone), but never cancelled for one
// that writes: its write may already be committed, and stopping it half-way
// (say, after the commit but before the pushes) would leave its work
// partly done.
func requestContext(ctx context.Context, f *pb.ClientFrame) context.Context {
	if pb.ReadOnly(f) {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// convKey returns the conversation a partitioned request is about; ok is
// false for unpartitioned requests and for those too malformed to name one.
func convKey(user string, f *pb.ClientFrame) (string, bool) {
	switch b := f.Body.(type) {
	case *pb.ClientFrame_CreateGroup:
		return conv.Group(b.CreateGroup.GetGroupId()), true
	case *pb.ClientFrame_Invite:
		return conv.Group(b.Invite.GetGroupId()), true
	case *pb.ClientFrame_JoinGroup:
		return conv.Group(b.JoinGroup.GetGroupId()), true
	case *pb.ClientFrame_QuitGroup:
		return conv.Group(b.QuitGroup.GetGroupId()), true
	case *pb.ClientFrame_Kick:
		return conv.Group(b.Kick.GetGroupId()), true
	case *pb.ClientFrame_SendMessage:
		r := b.SendMessage
		return conversationKey(user, &pb.Conversation{GroupId: r.GetGroupId(), PeerId: r.GetReceiver()})
	case *pb.ClientFrame_History:
		return conversationKey(user, b.History.GetConversation())
	case *pb.ClientFrame_SendReceipts:
		if ms := b.SendReceipts.GetMessages(); len(ms) > 0 {
			return conversationKey(user, ms[0].GetConversation())
		}
	case *pb.ClientFrame_ReadMembers:
		return conversationKey(user, b.ReadMembers.GetMessage().GetConversation())
	case *pb.ClientFrame_MarkC2CRead:
		if peer := b.MarkC2CRead.GetPeerId(); peer != "" {
			return conv.C2C(user, peer), true
		}
	}
	return "", false
}

// conversationKey is the key of c as seen by user, if c names exactly one
// conversation.
func conversationKey(user string, c *pb.Conversation) (string, bool) {
	switch g, p := c.GetGroupId(), c.GetPeerId(); {
	case g != "" && p == "":
		return conv.Group(g), true
	case p != "" && g == "":
		return conv.C2C(user, p), true
	}
	return "", false
}

// getReceipts splits a get_receipts request by partition, runs the parts
// (here or forwarded, concurrently) and merges the answers in request order.
func (d *Dispatcher) getReceipts(ctx context.Context, caller Caller, f *pb.ClientFrame, refs []*pb.MessageRef) (*pb.ServerFrame, error) {
	type part struct {
		idx  []int
		refs []*pb.MessageRef
		resp *pb.ServerFrame
		err  error
	}
	if len(refs) == 0 || len(refs) > receipts.MaxBatch {
		return d.run(ctx, caller, f) // rejected before touching any state
	}
	parts := make(map[uint32]*part)
	var order []uint32
	for i, r := range refs {
		key, ok := conversationKey(caller.UserID, r.GetConversation())
		if !ok {
			// Malformed: alone, it is rejected before touching any state.
			return d.run(ctx, caller, &pb.ClientFrame{Id: f.Id, Body: &pb.ClientFrame_GetReceipts{
				GetReceipts: &pb.GetReceiptsRequest{Messages: []*pb.MessageRef{r}},
			}})
		}
		p := cluster.Of(key)
		pt := parts[p]
		if pt == nil {
			pt = &part{}
			parts[p] = pt
			order = append(order, p)
		}
		pt.idx = append(pt.idx, i)
		pt.refs = append(pt.refs, r)
	}
	if len(order) == 1 {
		return d.route(ctx, caller, f, order[0])
	}
	var wg sync.WaitGroup
	for _, p := range order {
		pt := parts[p]
		sub := &pb.ClientFrame{Id: f.Id, Body: &pb.ClientFrame_GetReceipts{GetReceipts: &pb.GetReceiptsRequest{Messages: pt.refs}}}
		wg.Go(func() { pt.resp, pt.err = d.route(ctx, caller, sub, p) })
	}
	wg.Wait()
	out := make([]*pb.MessageReceipt, len(refs))
	for _, p := range order {
		pt := parts[p]
		if pt.err != nil {
			return nil, pt.err
		}
		rs := pt.resp.GetGetReceipts().GetReceipts()
		if len(rs) != len(pt.idx) {
			return nil, errors.New("dispatch: a get_receipts part answered the wrong number of receipts")
		}
		for j, i := range pt.idx {
			out[i] = rs[j]
		}
	}
	return &pb.ServerFrame{Body: &pb.ServerFrame_GetReceipts{GetReceipts: &pb.GetReceiptsResponse{Receipts: out}}}, nil
}

// run runs f on this node.
func (d *Dispatcher) run(ctx context.Context, caller Caller, f *pb.ClientFrame) (*pb.ServerFrame, error) {
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
	if name, ok := requestNames[reflect.TypeOf(f.Body)]; ok {
		return name
	}
	return "none"
}

// requestNames maps the type of each ClientFrame body to its field's name,
// lower-cased. Built once: RequestName runs for every request, and
// looking the oneof up by reflection each time was 1 % of a busy server's
// CPU.
var requestNames = func() map[reflect.Type]string {
	names := make(map[reflect.Type]string)
	fields := (&pb.ClientFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := &pb.ClientFrame{}
		f.ProtoReflect().Set(fd, f.ProtoReflect().NewField(fd))
		names[reflect.TypeOf(f.Body)] = strings.ToLower(string(fd.Name()))
	}
	return names
}()
