package admin

import (
	"context"
	"net/http"
	"strconv"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/dispatch"
)

// MessageLookup finds stored messages for an operator.
type MessageLookup interface {
	// Lookup returns the message of conversation key at seq (seq > 0) or
	// with msgID; NotFound if there is none.
	Lookup(ctx context.Context, key string, seq uint64, msgID string) (*pb.Message, error)
}

// Message is a stored message in the admin API's JSON.
type Message struct {
	MsgID           string `json:"msg_id"`
	Seq             uint64 `json:"seq"`
	Sender          string `json:"sender"`
	Receiver        string `json:"receiver,omitempty"`
	GroupID         string `json:"group_id,omitempty"`
	TimeMs          int64  `json:"time_ms"`
	NeedReadReceipt bool   `json:"need_read_receipt"`
	Text            string `json:"text,omitempty"`
	CustomDataBytes int    `json:"custom_data_bytes,omitempty"`
}

// Receipt is a message's read state in the admin API's JSON: counts for a
// group message, the peer's read state for a C2C message.
type Receipt struct {
	ReadCount      *uint64 `json:"read_count,omitempty"`
	UnreadCount    *uint64 `json:"unread_count,omitempty"`
	IsPeerRead     *bool   `json:"is_peer_read,omitempty"`
	PeerReadTimeMs int64   `json:"peer_read_time_ms,omitempty"`
}

// LookupResult is the answer of GET /v1/admin/messages/lookup. Receipt is
// absent for a message sent without a read receipt request.
type LookupResult struct {
	Message Message  `json:"message"`
	Receipt *Receipt `json:"receipt,omitempty"`
}

// ReadMember is one member in a read-members page.
type ReadMember struct {
	UserID     string `json:"user_id"`
	NickName   string `json:"nick_name,omitempty"`
	FaceURL    string `json:"face_url,omitempty"`
	ReadTimeMs int64  `json:"read_time_ms"` // 0 in the unread list
}

// ReadMembers is a page of GET .../read-members.
type ReadMembers struct {
	Members    []ReadMember `json:"members"`
	NextSeq    uint64       `json:"next_seq"`
	IsFinished bool         `json:"is_finished"`
}

// messageRoutes serves the operator's read path: a message with its read
// state, and its read / unread members. The receipt questions go through
// the dispatcher as the message's sender would ask them, so they follow the
// same rules (and, in a cluster, reach the node that owns the
// conversation).
func (cfg Config) messageRoutes(mux *http.ServeMux, authed func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /v1/admin/messages/lookup", authed(func(w http.ResponseWriter, r *http.Request) {
		res, err := cfg.lookup(r)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	}))
	mux.HandleFunc("GET /v1/admin/groups/{group_id}/messages/{seq}/read-members", authed(func(w http.ResponseWriter, r *http.Request) {
		res, err := cfg.readMembers(r)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	}))
}

// conversation returns the key of the conversation named by the query
// parameters group_id, or from and to.
func conversation(q func(string) string) (string, error) {
	group, from, to := q("group_id"), q("from"), q("to")
	if group != "" {
		if from != "" || to != "" {
			return "", apierr.InvalidArgument("give either group_id or from and to")
		}
		if err := conv.CheckID("group_id", group); err != nil {
			return "", err
		}
		return conv.Group(group), nil
	}
	if err := conv.CheckID("from", from); err != nil {
		return "", err
	}
	if err := conv.CheckID("to", to); err != nil {
		return "", err
	}
	if from == to {
		return "", apierr.InvalidArgument("from and to are the same user")
	}
	return conv.C2C(from, to), nil
}

func parseUint(name, s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, apierr.InvalidArgument("%s %q is not a non-negative integer", name, s)
	}
	return v, nil
}

func (cfg Config) lookup(r *http.Request) (*LookupResult, error) {
	q := r.URL.Query().Get
	key, err := conversation(q)
	if err != nil {
		return nil, err
	}
	seq, err := parseUint("seq", q("seq"), 0)
	if err != nil {
		return nil, err
	}
	if seq == 0 && q("msg_id") == "" {
		return nil, apierr.InvalidArgument("seq or msg_id is required")
	}
	m, err := cfg.Messages.Lookup(r.Context(), key, seq, q("msg_id"))
	if err != nil {
		return nil, err
	}
	res := &LookupResult{Message: Message{
		MsgID: m.MsgId, Seq: m.Seq, Sender: m.Sender, Receiver: m.Receiver, GroupID: m.GroupId,
		TimeMs: m.TimeMs, NeedReadReceipt: m.NeedReadReceipt, Text: m.Text, CustomDataBytes: len(m.CustomData),
	}}
	if !m.NeedReadReceipt {
		return res, nil
	}
	f, err := cfg.Dispatcher.Do(r.Context(), dispatch.Caller{UserID: m.Sender}, &pb.ClientFrame{
		Body: &pb.ClientFrame_GetReceipts{GetReceipts: &pb.GetReceiptsRequest{Messages: []*pb.MessageRef{SenderRef(m)}}},
	})
	if err != nil {
		return nil, err
	}
	rc := f.GetGetReceipts().GetReceipts()[0]
	if m.GroupId != "" {
		res.Receipt = &Receipt{ReadCount: &rc.ReadCount, UnreadCount: &rc.UnreadCount}
	} else {
		res.Receipt = &Receipt{IsPeerRead: &rc.IsPeerRead, PeerReadTimeMs: rc.TimeMs}
	}
	return res, nil
}

// SenderRef is the reference to m as its sender names it (the server API
// asks about a message on its sender's behalf).
func SenderRef(m *pb.Message) *pb.MessageRef {
	c := &pb.Conversation{GroupId: m.GroupId}
	if m.GroupId == "" {
		c = &pb.Conversation{PeerId: m.Receiver}
	}
	return &pb.MessageRef{Conversation: c, Seq: m.Seq, MsgId: m.MsgId}
}

func (cfg Config) readMembers(r *http.Request) (*ReadMembers, error) {
	group := r.PathValue("group_id")
	if err := conv.CheckID("group_id", group); err != nil {
		return nil, err
	}
	q := r.URL.Query().Get
	seq, err := parseUint("seq", r.PathValue("seq"), 0)
	if err != nil {
		return nil, err
	}
	if seq == 0 {
		return nil, apierr.InvalidArgument("seq must be at least 1")
	}
	var filter pb.ReadMembersFilter
	switch q("filter") {
	case "read":
		filter = pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ
	case "unread":
		filter = pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD
	default:
		return nil, apierr.InvalidArgument("filter must be read or unread")
	}
	next, err := parseUint("next_seq", q("next_seq"), 0)
	if err != nil {
		return nil, err
	}
	count, err := parseUint("count", q("count"), 20)
	if err != nil {
		return nil, err
	}
	m, err := cfg.Messages.Lookup(r.Context(), conv.Group(group), seq, "")
	if err != nil {
		return nil, err
	}
	f, err := cfg.Dispatcher.Do(r.Context(), dispatch.Caller{UserID: m.Sender}, &pb.ClientFrame{
		Body: &pb.ClientFrame_ReadMembers{ReadMembers: &pb.ReadMembersRequest{
			Message: SenderRef(m), Filter: filter, NextSeq: next, Count: uint32(min(count, 1<<31)),
		}},
	})
	if err != nil {
		return nil, err
	}
	rm := f.GetReadMembers()
	out := &ReadMembers{Members: make([]ReadMember, 0, len(rm.GetMembers())), NextSeq: rm.GetNextSeq(), IsFinished: rm.GetIsFinished()}
	for _, gm := range rm.GetMembers() {
		out.Members = append(out.Members, ReadMember{UserID: gm.UserId, NickName: gm.NickName, FaceURL: gm.FaceUrl, ReadTimeMs: gm.ReadTimeMs})
	}
	return out, nil
}
