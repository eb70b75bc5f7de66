// Package restapi is the server REST API under /v1/admin/: app backends send
// messages, send and query read receipts, mark C2C conversations read and
// administer groups with the admin token (a group message's read members
// are served by package admin, for the console and backends alike). Each call is turned into the
// protobuf request the SDK would send on the named user's behalf and run by
// the dispatcher, so the rules, errors, idempotence, durability and pushes
// are the SDK's (and in cluster mode the dispatcher routes it). Messages are
// named by seq; the API looks up their msg_id (and, for queries, act as
// their sender, who alone may read their receipts).
//
// Paths and bodies are documented in docs/server-api.md and api/openapi.yaml.
package restapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/admin"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/dispatch"
	"github.com/readmark/readmark/internal/groups"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/webhooks"
)

// Dispatcher runs a request on a user's behalf (dispatch.Dispatcher).
type Dispatcher interface {
	Do(ctx context.Context, caller dispatch.Caller, f *pb.ClientFrame) (*pb.ServerFrame, error)
}

// Messages looks up stored messages by conversation key and seq, without
// an access check (messages.Service).
type Messages interface {
	Lookup(ctx context.Context, convKey string, seq uint64, msgID string) (*pb.Message, error)
}

// Groups describes groups and their members.
type Groups interface {
	Info(ctx context.Context, groupID string) (groups.Info, error)
	Members(ctx context.Context, groupID string, from uint32, count int) ([]groups.MemberInfo, uint32, bool, error)
	UserGroups(ctx context.Context, user string) ([]groups.UserGroup, error)
}

// Webhooks is the webhook delivery state (webhooks.Outbox).
type Webhooks interface {
	Status() webhooks.Status
	Parked(ctx context.Context, after uint64, limit int) ([]webhooks.ParkedEvent, error)
	Replay(ctx context.Context, limit int) (int, error)
}

// Config wires the API.
type Config struct {
	Admin      *admin.API // authentication, rate limit, JSON helpers
	Dispatcher Dispatcher
	Messages   Messages
	Groups     Groups
	Webhooks   Webhooks
}

// MaxPage is the most items one call names or one page holds (the SDK's).
const MaxPage = receipts.MaxBatch

type api struct{ Config }

// Routes registers the API's handlers on mux.
func Routes(mux *http.ServeMux, cfg Config) {
	a := &api{cfg}
	handle := func(pattern string, h func(r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, cfg.Admin.Authed(func(w http.ResponseWriter, r *http.Request) {
			out, err := h(r)
			if err != nil {
				admin.WriteError(w, err)
				return
			}
			admin.WriteJSON(w, http.StatusOK, out)
		}))
	}
	handle("POST /v1/admin/messages", a.sendMessage)
	handle("POST /v1/admin/receipts/query", a.queryReceipts)
	handle("POST /v1/admin/receipts", a.sendReceipts)
	handle("POST /v1/admin/c2c/mark-read", a.markRead)
	handle("POST /v1/admin/groups", a.createGroup)
	handle("GET /v1/admin/groups/{group_id}", a.groupInfo)
	handle("GET /v1/admin/groups/{group_id}/members", a.groupMembers)
	handle("POST /v1/admin/groups/{group_id}/members", a.addMembers)
	handle("POST /v1/admin/groups/{group_id}/members/remove", a.removeMembers)
	handle("GET /v1/admin/users/{user_id}/groups", a.userGroups)
	handle("GET /v1/admin/webhooks/status", func(*http.Request) (any, error) { return cfg.Webhooks.Status(), nil })
	handle("GET /v1/admin/webhooks/parked", a.parked)
	handle("POST /v1/admin/webhooks/parked/replay", a.replay)
}

func (a *api) do(ctx context.Context, user string, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	return a.Dispatcher.Do(ctx, dispatch.Caller{UserID: user}, f)
}

var empty = struct{}{}

// SendMessageRequest is the body of POST /v1/admin/messages.
type SendMessageRequest struct {
	From            string `json:"from"`
	To              string `json:"to,omitempty"`
	GroupID         string `json:"group_id,omitempty"`
	Text            string `json:"text,omitempty"`
	CustomData      []byte `json:"custom_data,omitempty"` // base64 in JSON
	NeedReadReceipt bool   `json:"need_read_receipt,omitempty"`
	Priority        string `json:"priority,omitempty"`
	OnlineUserOnly  bool   `json:"online_user_only,omitempty"`
	ClientMsgID     string `json:"client_msg_id,omitempty"`
}

// SendMessageResponse answers POST /v1/admin/messages.
type SendMessageResponse struct {
	MsgID  string `json:"msg_id"`
	Seq    uint64 `json:"seq"`
	TimeMs int64  `json:"time_ms"`
}

var priorities = map[string]pb.Priority{
	"": pb.Priority_PRIORITY_DEFAULT, "default": pb.Priority_PRIORITY_DEFAULT, "high": pb.Priority_PRIORITY_HIGH,
	"normal": pb.Priority_PRIORITY_NORMAL, "low": pb.Priority_PRIORITY_LOW,
}

func (a *api) sendMessage(r *http.Request) (any, error) {
	var req SendMessageRequest
	if err := admin.Decode(r, &req); err != nil {
		return nil, err
	}
	if err := conv.CheckID("from", req.From); err != nil {
		return nil, err
	}
	prio, ok := priorities[req.Priority]
	if !ok {
		return nil, apierr.InvalidArgument("unknown priority %q (default, high, normal, low)", req.Priority)
	}
	sm := &pb.SendMessageRequest{
		Receiver: req.To, GroupId: req.GroupID, Text: req.Text, CustomData: req.CustomData,
		NeedReadReceipt: req.NeedReadReceipt, Priority: prio, OnlineUserOnly: req.OnlineUserOnly,
		ClientMsgId: req.ClientMsgID,
	}
	if req.Text == "" && len(req.CustomData) > 0 {
		sm.ElemType = pb.ElemType_ELEM_TYPE_CUSTOM
	}
	f, err := a.do(r.Context(), req.From, &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: sm}})
	if err != nil {
		return nil, err
	}
	m := f.GetSendMessage().GetMessage()
	return SendMessageResponse{MsgID: m.GetMsgId(), Seq: m.GetSeq(), TimeMs: m.GetTimeMs()}, nil
}

// QueryReceiptsRequest is the body of POST /v1/admin/receipts/query: a
// group's messages (group_id) or the C2C messages between from and to.
type QueryReceiptsRequest struct {
	GroupID string   `json:"group_id,omitempty"`
	From    string   `json:"from,omitempty"`
	To      string   `json:"to,omitempty"`
	Seqs    []uint64 `json:"seqs"`
}

// Receipt is one message's read state in a QueryReceiptsResponse. Group
// messages carry the counts, C2C messages is_peer_read and the time the
// peer last marked the conversation read.
type Receipt struct {
	Seq            uint64  `json:"seq"`
	MsgID          string  `json:"msg_id"`
	Sender         string  `json:"sender"`
	ReadCount      *uint64 `json:"read_count,omitempty"`
	UnreadCount    *uint64 `json:"unread_count,omitempty"`
	Receiver       string  `json:"receiver,omitempty"`
	IsPeerRead     *bool   `json:"is_peer_read,omitempty"`
	PeerReadTimeMs *int64  `json:"peer_read_time_ms,omitempty"`
}

// QueryReceiptsResponse answers POST /v1/admin/receipts/query, in the
// order of the request's seqs.
type QueryReceiptsResponse struct {
	Receipts []Receipt `json:"receipts"`
}

// conversation validates a request's naming of a conversation from user's
// point of view (user "" for a group) and returns its key and wire form.
func conversation(user, peer, group string) (string, *pb.Conversation, error) {
	if (peer == "") == (group == "") {
		return "", nil, apierr.InvalidArgument("name exactly one conversation: a group_id or a C2C peer")
	}
	if group != "" {
		if err := conv.CheckID("group_id", group); err != nil {
			return "", nil, err
		}
		return conv.Group(group), &pb.Conversation{GroupId: group}, nil
	}
	if err := conv.CheckID("user ID", user); err != nil {
		return "", nil, err
	}
	if err := conv.CheckID("peer ID", peer); err != nil {
		return "", nil, err
	}
	if user == peer {
		return "", nil, apierr.InvalidArgument("no conversation with oneself")
	}
	return conv.C2C(user, peer), &pb.Conversation{PeerId: peer}, nil
}

// lookup returns the messages at seqs of conversation key: 1..MaxPage of
// them, as the SDK's batch limit.
func (a *api) lookup(ctx context.Context, key string, seqs []uint64) ([]*pb.Message, error) {
	if len(seqs) == 0 {
		return nil, apierr.InvalidArgument("no seqs")
	}
	if len(seqs) > MaxPage {
		return nil, apierr.TooMany("%d messages, at most %d per call", len(seqs), MaxPage)
	}
	msgs := make([]*pb.Message, len(seqs))
	for i, seq := range seqs {
		if seq == 0 {
			return nil, apierr.InvalidArgument("seq 0 names no message")
		}
		m, err := a.Messages.Lookup(ctx, key, seq, "")
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	return msgs, nil
}

func (a *api) queryReceipts(r *http.Request) (any, error) {
	var req QueryReceiptsRequest
	if err := admin.Decode(r, &req); err != nil {
		return nil, err
	}
	if req.GroupID != "" && (req.From != "" || req.To != "") {
		return nil, apierr.InvalidArgument("group_id and from/to are exclusive")
	}
	key, _, err := conversation(req.From, req.To, req.GroupID)
	if err != nil {
		return nil, err
	}
	msgs, err := a.lookup(r.Context(), key, req.Seqs)
	if err != nil {
		return nil, err
	}
	// Only a message's sender may read its receipts: ask as each sender.
	bySender := make(map[string][]int)
	var senders []string
	for i, m := range msgs {
		if bySender[m.Sender] == nil {
			senders = append(senders, m.Sender)
		}
		bySender[m.Sender] = append(bySender[m.Sender], i)
	}
	out := make([]Receipt, len(msgs))
	for _, sender := range senders {
		idx := bySender[sender]
		refs := make([]*pb.MessageRef, len(idx))
		for j, i := range idx {
			refs[j] = admin.SenderRef(msgs[i])
		}
		f, err := a.do(r.Context(), sender, &pb.ClientFrame{Body: &pb.ClientFrame_GetReceipts{GetReceipts: &pb.GetReceiptsRequest{Messages: refs}}})
		if err != nil {
			return nil, err
		}
		rs := f.GetGetReceipts().GetReceipts()
		if len(rs) != len(idx) {
			return nil, apierr.New(pb.CodeInternal, "receipts for %d of %d messages", len(rs), len(idx))
		}
		for j, i := range idx {
			m, pr := msgs[i], rs[j]
			rc := Receipt{Seq: m.Seq, MsgID: m.MsgId, Sender: m.Sender}
			if m.GroupId != "" {
				rc.ReadCount, rc.UnreadCount = &pr.ReadCount, &pr.UnreadCount
			} else {
				rc.Receiver, rc.IsPeerRead, rc.PeerReadTimeMs = m.Receiver, &pr.IsPeerRead, &pr.TimeMs
			}
			out[i] = rc
		}
	}
	return QueryReceiptsResponse{Receipts: out}, nil
}

// SendReceiptsRequest is the body of POST /v1/admin/receipts: user_id has
// read the messages at seqs of its conversation with group_id or peer_id.
type SendReceiptsRequest struct {
	UserID  string   `json:"user_id"`
	GroupID string   `json:"group_id,omitempty"`
	PeerID  string   `json:"peer_id,omitempty"`
	Seqs    []uint64 `json:"seqs"`
}

func (a *api) sendReceipts(r *http.Request) (any, error) {
	var req SendReceiptsRequest
	if err := admin.Decode(r, &req); err != nil {
		return nil, err
	}
	if err := conv.CheckID("user_id", req.UserID); err != nil {
		return nil, err
	}
	key, c, err := conversation(req.UserID, req.PeerID, req.GroupID)
	if err != nil {
		return nil, err
	}
	msgs, err := a.lookup(r.Context(), key, req.Seqs)
	if err != nil {
		return nil, err
	}
	refs := make([]*pb.MessageRef, len(msgs))
	for i, m := range msgs {
		refs[i] = &pb.MessageRef{Conversation: c, Seq: m.Seq, MsgId: m.MsgId}
	}
	_, err = a.do(r.Context(), req.UserID, &pb.ClientFrame{Body: &pb.ClientFrame_SendReceipts{SendReceipts: &pb.SendReceiptsRequest{Messages: refs}}})
	return empty, err
}

// MarkReadRequest is the body of POST /v1/admin/c2c/mark-read.
type MarkReadRequest struct {
	UserID string `json:"user_id"`
	PeerID string `json:"peer_id"`
}

func (a *api) markRead(r *http.Request) (any, error) {
	var req MarkReadRequest
	if err := admin.Decode(r, &req); err != nil {
		return nil, err
	}
	if _, _, err := conversation(req.UserID, req.PeerID, ""); err != nil {
		return nil, err
	}
	_, err := a.do(r.Context(), req.UserID, &pb.ClientFrame{Body: &pb.ClientFrame_MarkC2CRead{MarkC2CRead: &pb.MarkC2CReadRequest{PeerId: req.PeerID}}})
	return empty, err
}

// query returns a query parameter as a uint64 (def if absent).
func query(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, apierr.InvalidArgument("%s %q: not a non-negative integer", name, s)
	}
	return v, nil
}

// page reads next_seq and count (1..MaxPage, default MaxPage).
func page(r *http.Request) (next uint64, count uint32, err error) {
	if next, err = query(r, "next_seq", 0); err != nil {
		return 0, 0, err
	}
	n, err := query(r, "count", MaxPage)
	if err != nil {
		return 0, 0, err
	}
	if n < 1 || n > MaxPage {
		return 0, 0, apierr.TooMany("count %d, must be 1..%d", n, MaxPage)
	}
	return next, uint32(n), nil
}

// CreateGroupRequest is the body of POST /v1/admin/groups.
type CreateGroupRequest struct {
	OwnerID   string   `json:"owner_id"`
	Type      string   `json:"type"`
	GroupID   string   `json:"group_id,omitempty"`
	Name      string   `json:"name,omitempty"`
	MemberIDs []string `json:"member_ids,omitempty"`
}

// GroupIDResponse answers POST /v1/admin/groups.
type GroupIDResponse struct {
	GroupID string `json:"group_id"`
}

func (a *api) createGroup(r *http.Request) (any, error) {
	var req CreateGroupRequest
	if err := admin.Decode(r, &req); err != nil {
		return nil, err
	}
	if err := conv.CheckID("owner_id", req.OwnerID); err != nil {
		return nil, err
	}
	typ, ok := admin.GroupTypes[req.Type]
	if !ok {
		return nil, apierr.InvalidArgument("unknown group type %q (Work, Public, Meeting, Community, AVChatRoom)", req.Type)
	}
	f, err := a.do(r.Context(), req.OwnerID, &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{
		Type: typ, GroupId: req.GroupID, Name: req.Name, MemberIds: req.MemberIDs,
	}}})
	if err != nil {
		return nil, err
	}
	return GroupIDResponse{GroupID: f.GetCreateGroup().GetGroupId()}, nil
}

// GroupInfo answers GET /v1/admin/groups/{group_id}.
type GroupInfo struct {
	GroupID     string `json:"group_id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	OwnerID     string `json:"owner_id"`
	CreatedMs   int64  `json:"created_ms"`
	MemberCount int    `json:"member_count"`
}

func typeName(t pb.GroupType) string {
	for name, v := range admin.GroupTypes {
		if v == t {
			return name
		}
	}
	return ""
}

// group validates the path's group_id and returns the group.
func (a *api) group(r *http.Request) (groups.Info, error) {
	id := r.PathValue("group_id")
	if err := conv.CheckID("group_id", id); err != nil {
		return groups.Info{}, err
	}
	return a.Groups.Info(r.Context(), id)
}

func (a *api) groupInfo(r *http.Request) (any, error) {
	g, err := a.group(r)
	if err != nil {
		return nil, err
	}
	return GroupInfo{GroupID: g.GroupID, Type: typeName(g.Type), Name: g.Name, OwnerID: g.Owner, CreatedMs: g.CreatedMs, MemberCount: g.Members}, nil
}

// Member is one member in a MembersResponse.
type Member struct {
	UserID   string `json:"user_id"`
	Role     string `json:"role"` // "owner" or "member"
	JoinedMs int64  `json:"joined_ms"`
}

// MembersResponse answers GET /v1/admin/groups/{group_id}/members.
type MembersResponse struct {
	Members    []Member `json:"members"`
	NextSeq    uint64   `json:"next_seq"`
	IsFinished bool     `json:"is_finished"`
}

func (a *api) groupMembers(r *http.Request) (any, error) {
	g, err := a.group(r)
	if err != nil {
		return nil, err
	}
	next, count, err := page(r)
	if err != nil {
		return nil, err
	}
	if next > uint64(^uint32(0)) {
		return MembersResponse{Members: []Member{}, NextSeq: next, IsFinished: true}, nil
	}
	ms, n, done, err := a.Groups.Members(r.Context(), g.GroupID, uint32(next), int(count))
	if err != nil {
		return nil, err
	}
	out := MembersResponse{Members: make([]Member, len(ms)), NextSeq: uint64(n), IsFinished: done}
	for i, m := range ms {
		role := "member"
		if m.UserID == g.Owner {
			role = "owner"
		}
		out.Members[i] = Member{UserID: m.UserID, Role: role, JoinedMs: m.JoinedMs}
	}
	return out, nil
}

// MembersRequest is the body of POST /v1/admin/groups/{group_id}/members
// and .../members/remove (reason only there).
type MembersRequest struct {
	UserIDs []string `json:"user_ids"`
	Reason  string   `json:"reason,omitempty"`
}

// members reads a MembersRequest for the path's group; changes are made as
// the group's owner, who may always invite and kick.
func (a *api) members(r *http.Request) (groups.Info, MembersRequest, error) {
	var req MembersRequest
	g, err := a.group(r)
	if err != nil {
		return g, req, err
	}
	return g, req, admin.Decode(r, &req)
}

func (a *api) addMembers(r *http.Request) (any, error) {
	g, req, err := a.members(r)
	if err != nil {
		return nil, err
	}
	if req.Reason != "" {
		return nil, apierr.InvalidArgument("reason is for removals only")
	}
	_, err = a.do(r.Context(), g.Owner, &pb.ClientFrame{Body: &pb.ClientFrame_Invite{Invite: &pb.InviteRequest{GroupId: g.GroupID, UserIds: req.UserIDs}}})
	return empty, err
}

func (a *api) removeMembers(r *http.Request) (any, error) {
	g, req, err := a.members(r)
	if err != nil {
		return nil, err
	}
	if slices.Contains(req.UserIDs, g.Owner) {
		return nil, apierr.InvalidArgument("the owner %q cannot be removed", g.Owner)
	}
	_, err = a.do(r.Context(), g.Owner, &pb.ClientFrame{Body: &pb.ClientFrame_Kick{Kick: &pb.KickRequest{GroupId: g.GroupID, UserIds: req.UserIDs, Reason: req.Reason}}})
	return empty, err
}

// UserGroup is one group in a UserGroupsResponse.
type UserGroup struct {
	GroupID string `json:"group_id"`
	Type    string `json:"type"`
	Name    string `json:"name"`
}

// UserGroupsResponse answers GET /v1/admin/users/{user_id}/groups, sorted
// by group_id.
type UserGroupsResponse struct {
	Groups []UserGroup `json:"groups"`
}

func (a *api) userGroups(r *http.Request) (any, error) {
	user := r.PathValue("user_id")
	if err := conv.CheckID("user_id", user); err != nil {
		return nil, err
	}
	heads, err := a.Groups.UserGroups(r.Context(), user)
	if err != nil {
		return nil, err
	}
	out := UserGroupsResponse{Groups: make([]UserGroup, 0, len(heads))}
	for _, h := range heads {
		g, err := a.Groups.Info(r.Context(), h.GroupID)
		if err != nil {
			continue // removed meanwhile
		}
		out.Groups = append(out.Groups, UserGroup{GroupID: g.GroupID, Type: typeName(g.Type), Name: g.Name})
	}
	slices.SortFunc(out.Groups, func(x, y UserGroup) int { return strings.Compare(x.GroupID, y.GroupID) })
	return out, nil
}

// ParkedResponse answers GET /v1/admin/webhooks/parked: parked events
// oldest first; pass next as after for the next page (0 = none left).
type ParkedResponse struct {
	Parked []webhooks.ParkedEvent `json:"parked"`
	Next   uint64                 `json:"next"`
}

func (a *api) parked(r *http.Request) (any, error) {
	after, err := query(r, "after", 0)
	if err != nil {
		return nil, err
	}
	limit, err := query(r, "limit", MaxPage)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxPage {
		return nil, apierr.TooMany("limit %d, must be 1..%d", limit, MaxPage)
	}
	ps, err := a.Webhooks.Parked(r.Context(), after, int(limit))
	if err != nil {
		return nil, err
	}
	out := ParkedResponse{Parked: ps}
	if len(ps) == int(limit) {
		out.Next = ps[len(ps)-1].ID
	}
	return out, nil
}

// ReplayRequest is the body of POST /v1/admin/webhooks/parked/replay.
type ReplayRequest struct {
	Limit int `json:"limit,omitempty"` // 1..1000 (0 = 100)
}

// MaxReplay bounds the events one replay call moves.
const MaxReplay = 1000

func (a *api) replay(r *http.Request) (any, error) {
	var req ReplayRequest
	if err := admin.Decode(r, &req); err != nil {
		return nil, err
	}
	if req.Limit == 0 {
		req.Limit = MaxPage
	}
	if req.Limit < 1 || req.Limit > MaxReplay {
		return nil, apierr.TooMany("limit %d, must be 1..%d", req.Limit, MaxReplay)
	}
	n, err := a.Webhooks.Replay(r.Context(), req.Limit)
	if err != nil {
		return nil, err
	}
	return map[string]int{"replayed": n}, nil
}
