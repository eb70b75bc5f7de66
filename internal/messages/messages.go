// Package messages owns messages: sending (ID, per-conversation seq, server
// time, the membership watermark of group messages), storage, ordered
// delivery to online sessions, history, and sync of what a user's devices
// have not acknowledged, with the per-device delivery cursors that sync
// starts from (cursors.go).
//
// Order: a conversation's seq is assigned and its write queued on the
// storage.Committer under one lock (the group's lock in package groups, the
// C2C conversation's lock here); the Committer reports commits in queue
// order and hands each message to one delivery goroutine, so sessions get a
// conversation's messages in seq order. Lock order: groups' locks, then
// c2c.mu, then a cursor shard's mu; none is held while calling another service.
package messages

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/groups"
	"github.com/readmark/readmark/internal/page"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/webhooks"
	"github.com/readmark/readmark/webhook"
)

// Limits.
const (
	MaxTextBytes       = 12 * 1024
	MaxCustomDataBytes = 8 * 1024
	MaxHistoryCount    = 100
	DefaultSyncLimit   = 200
	MaxSyncLimit       = 500
)

// Pusher reaches users' sessions; PushEachExcept skips one session of the
// sender (the one that sent the message, which has it from the response).
type Pusher interface {
	PushEachExcept(users iter.Seq[string], exceptSession uint64, frame *pb.ServerFrame)
}

// ReceiptState tells which received messages a user already acknowledged.
type ReceiptState interface {
	// ReceiptSent answers on the node owning the messages' conversations.
	ReceiptSent(ctx context.Context, user string, msgs []receipts.Msg) ([]bool, error)
	// StoredReceiptSent answers from storage alone, on any node; ordinals
	// holds user's ordinal in each of its groups.
	StoredReceiptSent(ctx context.Context, user string, msgs []receipts.Msg, ordinals map[string]uint32) ([]bool, error)
}

// Caller is who makes a request: the user, the session it came from (0 for
// requests made on a user's behalf by the server API) and the session's
// device (login's device_id; "" = an ephemeral device for this session
// only).
type Caller struct {
	UserID    string
	SessionID uint64
	DeviceID  string
	// JSON: responses are encoded in the protobuf JSON mapping, so pages are
	// measured in it (it can be ~6x the binary size).
	JSON bool
}

// device returns the key of the caller's delivery cursors.
func (c Caller) device() string {
	if c.DeviceID == "" {
		return ephemeralDevice(c.SessionID)
	}
	return c.DeviceID
}

// Config wires a Service.
type Config struct {
	Store     storage.Store
	Committer *storage.Committer
	Groups    *groups.Service
	Pusher    Pusher
	// ReceiptGroupTypes reports whether messages of a group type may ask
	// for read receipts (the admin setting).
	ReceiptGroupTypes func(pb.GroupType) bool
	// Online reports whether a user has a session now; offline users'
	// delivery cursors leave memory once written.
	Online func(userID string) bool
	// CursorFlush is how often delivery cursors are written (0 = 1s).
	CursorFlush time.Duration
	// DeviceTTL is how long a device's record and cursors are kept after
	// it was last seen (0 = forever); see cursors.sweep.
	DeviceTTL time.Duration
	// CacheMessages bounds the recent-message cache used to resolve
	// receipts (0 = 100,000 messages, about 20 MB).
	CacheMessages int
	Logger        *slog.Logger
	Now           func() time.Time
	// Webhooks, if set, records a message.sent event in the batch of each
	// stored message.
	Webhooks webhooks.Recorder
}

// Service sends, stores, delivers and serves messages.
type Service struct {
	cfg      Config
	receipts ReceiptState

	c2cMu sync.Mutex
	c2c   map[string]*c2cConv

	cursors *cursors
	recent  *msgCache
	heads   *knownHeads
	sent    *dedup

	deliveries chan delivery
	stop       chan struct{}
	done       sync.WaitGroup
}

type c2cConv struct {
	mu     sync.Mutex
	loaded bool
	head   uint64
}

type delivery struct {
	msg       *pb.Message
	watermark uint32
	members   receipts.RosterSnapshot // group messages: membership at send time
	session   uint64
}

// New starts a Service; Close stops it.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CursorFlush <= 0 {
		cfg.CursorFlush = time.Second
	}
	if cfg.CacheMessages <= 0 {
		cfg.CacheMessages = 100_000
	}
	s := &Service{
		cfg:        cfg,
		c2c:        make(map[string]*c2cConv),
		cursors:    newCursors(),
		recent:     newMsgCache(cfg.CacheMessages),
		heads:      newKnownHeads(cfg.CacheMessages),
		sent:       newDedup(),
		deliveries: make(chan delivery, 1<<14),
		stop:       make(chan struct{}),
	}
	s.cursors.now, s.cursors.ttl = cfg.Now, cfg.DeviceTTL
	s.done.Add(2)
	go s.deliverLoop()
	go s.flushLoop()
	return s
}

// DropPartition forgets the in-memory state of partition p's
// conversations (C2C head seqs, cached messages, recent client_msg_ids), so
// that it is reloaded from storage if p is owned here again. Call it once
// no operation on p is in flight.
func (s *Service) DropPartition(p uint32) {
	inPart := func(key string) bool { return cluster.Of(key) == p }
	s.c2cMu.Lock()
	for k := range s.c2c {
		if inPart(k) {
			delete(s.c2c, k)
		}
	}
	s.c2cMu.Unlock()
	s.recent.drop(inPart)
	s.sent.drop(inPart)
}

// SetReceipts connects the receipt engine, which fills receipt_sent in
// history and sync (the engine itself needs the Service, hence a setter).
func (s *Service) SetReceipts(r ReceiptState) { s.receipts = r }

// Close delivers what is queued, writes the delivery cursors and stops.
// Call it after the last Send has returned and before closing the Committer.
func (s *Service) Close() {
	close(s.stop)
	s.done.Wait()
	s.flushCursors()
}

func newMsgID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%s", now.UnixMilli(), hex.EncodeToString(b[:]))
}

// Send stores (unless online_user_only) and delivers a message.
func (s *Service) Send(ctx context.Context, caller Caller, req *pb.SendMessageRequest) (*pb.Message, error) {
	if (req.Receiver == "") == (req.GroupId == "") {
		return nil, apierr.InvalidArgument("exactly one of receiver and group_id must be set")
	}
	if err := checkBody(req); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	msg := &pb.Message{
		MsgId:           newMsgID(now),
		Sender:          caller.UserID,
		Receiver:        req.Receiver,
		GroupId:         req.GroupId,
		TimeMs:          now.UnixMilli(),
		NeedReadReceipt: req.NeedReadReceipt,
		ElemType:        req.ElemType,
		Text:            req.Text,
		CustomData:      req.CustomData,
		Priority:        req.Priority,
		OnlineUserOnly:  req.OnlineUserOnly,
	}
	if req.ClientMsgId == "" || req.OnlineUserOnly {
		return s.send(ctx, caller, msg, "")
	}
	if err := conv.CheckID("client_msg_id", req.ClientMsgId); err != nil {
		return nil, err
	}
	key := conv.Group(req.GroupId)
	if req.GroupId == "" {
		key = conv.C2C(caller.UserID, req.Receiver)
	}
	return s.sendOnce(ctx, dedupKey{conv: key, sender: caller.UserID, id: req.ClientMsgId}, func() (*pb.Message, error) {
		return s.send(ctx, caller, msg, req.ClientMsgId)
	})
}

// send sequences, stores and delivers msg; clientMsgID ("" = none) is
// recorded with it.
func (s *Service) send(ctx context.Context, caller Caller, msg *pb.Message, clientMsgID string) (*pb.Message, error) {
	if msg.GroupId != "" {
		return s.sendGroup(ctx, caller, msg, clientMsgID)
	}
	return s.sendC2C(ctx, caller, msg, clientMsgID)
}

func checkBody(req *pb.SendMessageRequest) error {
	switch req.ElemType {
	case pb.ElemType_ELEM_TYPE_TEXT:
		if req.Text == "" {
			return apierr.InvalidArgument("empty text message")
		}
	case pb.ElemType_ELEM_TYPE_CUSTOM:
		if len(req.CustomData) == 0 {
			return apierr.InvalidArgument("empty custom message")
		}
	default:
		return apierr.InvalidArgument("unknown elem type %d", req.ElemType)
	}
	if len(req.Text) > MaxTextBytes {
		return apierr.New(pb.CodeMessageTooLarge, "text is %d bytes; the limit is %d", len(req.Text), MaxTextBytes)
	}
	if len(req.CustomData) > MaxCustomDataBytes {
		return apierr.New(pb.CodeMessageTooLarge, "custom data is %d bytes; the limit is %d", len(req.CustomData), MaxCustomDataBytes)
	}
	return nil
}

func (s *Service) sendGroup(ctx context.Context, caller Caller, msg *pb.Message, clientMsgID string) (*pb.Message, error) {
	typ, err := s.cfg.Groups.Type(ctx, msg.GroupId)
	if err != nil {
		return nil, err
	}
	if msg.NeedReadReceipt && !s.cfg.ReceiptGroupTypes(typ) {
		return nil, apierr.New(pb.CodeGroupTypeNoReceipt, "read receipts are not enabled for %s groups", groupTypeName(typ))
	}
	var wait func() error
	err = s.cfg.Groups.Sequence(ctx, msg.GroupId, caller.UserID, func(seq uint64, watermark uint32, members receipts.RosterSnapshot) error {
		d := delivery{msg: msg, watermark: watermark, members: members, session: caller.SessionID}
		if msg.OnlineUserOnly {
			s.deliveries <- d
			return nil
		}
		msg.Seq = seq
		var err error
		wait, err = s.enqueue(ctx, conv.Group(msg.GroupId), d, clientMsgID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if wait != nil {
		if err := wait(); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

func (s *Service) sendC2C(ctx context.Context, caller Caller, msg *pb.Message, clientMsgID string) (*pb.Message, error) {
	if err := conv.CheckID("receiver", msg.Receiver); err != nil {
		return nil, err
	}
	if msg.Receiver == caller.UserID {
		return nil, apierr.InvalidArgument("cannot send a message to oneself")
	}
	if msg.OnlineUserOnly {
		s.deliveries <- delivery{msg: msg, session: caller.SessionID}
		return msg, nil
	}
	key := conv.C2C(caller.UserID, msg.Receiver)
	c, err := s.c2cConv(ctx, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	msg.Seq = c.head + 1
	wait, err := s.enqueue(ctx, key, delivery{msg: msg, session: caller.SessionID}, clientMsgID)
	if err == nil {
		c.head++
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := wait(); err != nil {
		return nil, err
	}
	return msg, nil
}

// c2cConv returns the in-memory state of a C2C conversation, loading its
// head seq on first use.
func (s *Service) c2cConv(ctx context.Context, key string) (*c2cConv, error) {
	s.c2cMu.Lock()
	c := s.c2c[key]
	if c == nil {
		c = &c2cConv{}
		s.c2c[key] = c
	}
	s.c2cMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		head, err := conv.HeadSeq(ctx, s.cfg.Store, key)
		if err != nil {
			return nil, err
		}
		c.head, c.loaded = head, true
	}
	return c, nil
}

// enqueue queues the message's write (with its client_msg_id record, if
// any); once durable it goes to delivery.
func (s *Service) enqueue(ctx context.Context, key string, d delivery, clientMsgID string) (func() error, error) {
	msg := d.msg
	val, err := encodeStored(msg, d.watermark)
	if err != nil {
		return nil, err
	}
	ops := []storage.Op{{Key: conv.MessageKey(key, msg.Seq), Value: val}}
	if msg.GroupId == "" && msg.Seq == 1 {
		// The first message of a C2C conversation lists it for both parties.
		ops = append(ops,
			storage.Op{Key: conv.PeerKey(msg.Sender, msg.Receiver), Value: []byte{}},
			storage.Op{Key: conv.PeerKey(msg.Receiver, msg.Sender), Value: []byte{}})
	}
	if clientMsgID != "" {
		ops = append(ops, storage.Op{Key: clientMsgKey(key, msg.Sender, clientMsgID), Value: binary.AppendUvarint(nil, msg.Seq)})
	}
	ch := make(chan error, 1)
	part := cluster.Of(key)
	prepare := func(b *storage.Batch) {
		b.Fence(part)
		b.Ops = append(b.Ops, ops...)
	}
	if wh := s.cfg.Webhooks; wh != nil && wh.Wants(webhook.MessageSent) {
		prepare = func(b *storage.Batch) {
			b.Fence(part)
			b.Ops = append(b.Ops, ops...)
			wh.Add(b, key, &webhook.Event{Type: webhook.MessageSent, TimeMs: msg.TimeMs, MsgID: msg.MsgId, Seq: msg.Seq,
				Sender: msg.Sender, Receiver: msg.Receiver, GroupID: msg.GroupId, NeedReadReceipt: msg.NeedReadReceipt,
				Text: msg.Text, CustomData: msg.CustomData})
		}
	}
	err = s.cfg.Committer.Submit(ctx, prepare, func(err error) {
		if err == nil {
			s.recent.put(toReceiptMsg(key, msg, d.watermark))
			s.heads.note(key, msg.Seq)
			s.deliveries <- d
		}
		ch <- err
	})
	if err != nil {
		return nil, err
	}
	return func() error { return <-ch }, nil
}

func (s *Service) deliverLoop() {
	defer s.done.Done()
	for {
		select {
		case d := <-s.deliveries:
			s.deliver(d)
		case <-s.stop:
			for {
				select {
				case d := <-s.deliveries:
					s.deliver(d)
				default:
					return
				}
			}
		}
	}
}

// deliver pushes a committed message to its recipients' sessions: for a
// group, the members at send time; for C2C, both parties. The sending
// session is skipped. It takes no group lock (the membership snapshot came
// with the message), so a full delivery queue cannot deadlock a sender.
func (s *Service) deliver(d delivery) {
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: d.msg}}
	var recipients iter.Seq[string]
	if d.msg.GroupId != "" {
		snap := d.members
		recipients = func(yield func(string) bool) {
			it := snap.Present.Iterator()
			for it.HasNext() {
				ord := it.Next()
				if ord >= d.watermark {
					return
				}
				if u, ok := snap.User(ord); ok && !yield(u) {
					return
				}
			}
		}
	} else {
		recipients = func(yield func(string) bool) {
			_ = yield(d.msg.Receiver) && yield(d.msg.Sender)
		}
	}
	s.cfg.Pusher.PushEachExcept(recipients, d.session, frame)
}

// History returns up to req.count messages of a conversation older than
// req.before_seq (0 = from the newest), newest first: fewer when more would
// not fit in one frame (page.MaxFrameBytes).
func (s *Service) History(ctx context.Context, caller Caller, req *pb.HistoryRequest) ([]*pb.Message, error) {
	if req.Count == 0 {
		return nil, apierr.InvalidArgument("count must be at least 1")
	}
	if req.Count > MaxHistoryCount {
		return nil, apierr.TooMany("count %d is over the limit of %d", req.Count, MaxHistoryCount)
	}
	key, floor, err := s.visible(ctx, caller.UserID, req.Conversation)
	if err != nil {
		return nil, err
	}
	p := conv.MessagePrefix(key)
	start := storage.AppendUint64(storage.Key("m", key), floor+1)
	end := storage.PrefixEnd(p)
	if req.BeforeSeq > 0 {
		end = conv.MessageKey(key, req.BeforeSeq)
	}
	var out []*pb.Message
	var wms []uint32
	b := page.New(caller.JSON)
	err = s.scanMessages(ctx, start, end, true, func(m *pb.Message, wm uint32) bool {
		if !b.Take(m) {
			return false
		}
		out = append(out, m)
		wms = append(wms, wm)
		return len(out) < int(req.Count)
	})
	if err != nil {
		return nil, err
	}
	if s.receipts == nil {
		return out, nil
	}
	return out, markReceiptSent(caller.UserID, out, wms, func(rms []receipts.Msg) ([]bool, error) {
		return s.receipts.ReceiptSent(ctx, caller.UserID, rms)
	})
}

// scanMessages calls fn with the stored messages in [start, end) while it
// returns true.
func (s *Service) scanMessages(ctx context.Context, start, end []byte, reverse bool, fn func(m *pb.Message, watermark uint32) bool) error {
	var decErr error
	err := s.cfg.Store.Scan(ctx, start, end, reverse, func(_, v []byte) bool {
		m, wm, err := decodeStored(v)
		if err != nil {
			decErr = err
			return false
		}
		return fn(m, wm)
	})
	if err == nil {
		err = decErr
	}
	return err
}

// visible returns the conversation key of c for user and the seq at and
// below which its messages are hidden from user (a group's messages before
// the user joined).
func (s *Service) visible(ctx context.Context, user string, c *pb.Conversation) (key string, floor uint64, err error) {
	switch {
	case c == nil || (c.PeerId == "") == (c.GroupId == ""):
		return "", 0, apierr.InvalidArgument("exactly one of peer_id and group_id must be set")
	case c.PeerId != "":
		if err := conv.CheckID("peer ID", c.PeerId); err != nil {
			return "", 0, err
		}
		if c.PeerId == user {
			return "", 0, apierr.InvalidArgument("no conversation with oneself")
		}
		return conv.C2C(user, c.PeerId), 0, nil
	}
	m, ok, err := s.cfg.Groups.Member(ctx, c.GroupId, user)
	if err != nil {
		return "", 0, err
	}
	if !ok {
		return "", 0, apierr.PermissionDenied("not a member of group %q", c.GroupId)
	}
	return conv.Group(c.GroupId), m.JoinedSeq, nil
}

// Resolve implements receipts.Messages.
func (s *Service) Resolve(ctx context.Context, user string, refs []*pb.MessageRef) ([]receipts.Msg, error) {
	out := make([]receipts.Msg, 0, len(refs))
	// A receipt call's refs are mostly of one conversation: check it once
	// for a run of refs naming it, not once per ref (a membership lookup
	// and a key built each time).
	var (
		last  *pb.Conversation
		key   string
		floor uint64
	)
	for _, ref := range refs {
		if c := ref.GetConversation(); last == nil || !sameConversation(c, last) {
			var err error
			if key, floor, err = s.visible(ctx, user, c); err != nil {
				return nil, err
			}
			last = c
		}
		if ref.Seq == 0 {
			return nil, apierr.InvalidArgument("message reference without seq")
		}
		if ref.Seq <= floor {
			return nil, apierr.PermissionDenied("message %s was sent before you joined", ref.MsgId)
		}
		m, err := s.lookup(ctx, key, ref.Seq)
		if err != nil {
			return nil, err
		}
		if m.ID != ref.MsgId {
			return nil, apierr.NotFound("message %s not found at seq %d", ref.MsgId, ref.Seq)
		}
		out = append(out, m)
	}
	return out, nil
}

// sameConversation reports whether a (perhaps nil) and b name the same
// conversation.
func sameConversation(a, b *pb.Conversation) bool {
	return a != nil && a.GroupId == b.GroupId && a.PeerId == b.PeerId
}

// lookup returns a stored message's receipt-relevant fields, from the cache
// or storage.
func (s *Service) lookup(ctx context.Context, key string, seq uint64) (receipts.Msg, error) {
	if m, ok := s.recent.get(key, seq); ok {
		return m, nil
	}
	v, err := s.cfg.Store.Get(ctx, conv.MessageKey(key, seq))
	if errors.Is(err, storage.ErrNotFound) {
		return receipts.Msg{}, apierr.NotFound("no message at seq %d", seq)
	}
	if err != nil {
		return receipts.Msg{}, err
	}
	pm, wm, err := decodeStored(v)
	if err != nil {
		return receipts.Msg{}, err
	}
	m := toReceiptMsg(key, pm, wm)
	s.recent.put(m)
	return m, nil
}

func toReceiptMsg(key string, m *pb.Message, watermark uint32) receipts.Msg {
	return receipts.Msg{
		ID: m.MsgId, Conv: key, GroupID: m.GroupId, Sender: m.Sender, Receiver: m.Receiver,
		Seq: m.Seq, Time: time.UnixMilli(m.TimeMs), NeedReadReceipt: m.NeedReadReceipt,
		Watermark: watermark,
	}
}

// markReceiptSent sets receipt_sent on the messages user received with a
// read receipt requested and already acknowledged; wms are the messages'
// membership watermarks, and sent answers for the candidates.
func markReceiptSent(user string, msgs []*pb.Message, wms []uint32, sent func([]receipts.Msg) ([]bool, error)) error {
	idx := make([]int, 0, len(msgs))
	rms := make([]receipts.Msg, 0, len(msgs))
	var (
		key  string
		prev *pb.Message // the last candidate, of conversation key
	)
	for i, m := range msgs {
		if !m.NeedReadReceipt || m.Sender == user {
			continue
		}
		// Pages list a conversation's messages together: build its key
		// once per run, not once per message.
		if prev == nil || m.GroupId != prev.GroupId || m.Sender != prev.Sender || m.Receiver != prev.Receiver {
			if m.GroupId != "" {
				key = conv.Group(m.GroupId)
			} else {
				key = conv.C2C(m.Sender, m.Receiver)
			}
		}
		prev = m
		idx = append(idx, i)
		rms = append(rms, toReceiptMsg(key, m, wms[i]))
	}
	if len(rms) == 0 {
		return nil
	}
	ok, err := sent(rms)
	if err != nil {
		return err
	}
	for j, i := range idx {
		msgs[i].ReceiptSent = ok[j]
	}
	return nil
}

// Sync returns stored messages the caller's device has not acknowledged,
// per conversation in seq order, at most req.limit of them and no more than
// fit in one frame. Sync starts after the cursors the client sends; unless
// req.NoAck they are acknowledgements too (it holds these) and move the
// device's cursors, while with it only what the client acknowledges moves
// them (AckRequest, ClientFrame.acked). A conversation the client does not list starts after the device's cursor
// (docs/protocol.md, section 7). Building the page moves no cursor.
//
// Sync runs on the user's node and reads only storage (the user's group
// and C2C indexes, the stored heads and messages, durable read state),
// never the in-memory state of conversations, which lives on their owners.
func (s *Service) Sync(ctx context.Context, caller Caller, req *pb.SyncRequest) (*pb.SyncResponse, error) {
	limit := int(req.Limit)
	if limit == 0 {
		limit = DefaultSyncLimit
	}
	if limit > MaxSyncLimit {
		return nil, apierr.TooMany("sync limit %d is over %d", limit, MaxSyncLimit)
	}
	user, device := caller.UserID, caller.device()
	mine, peers, err := s.userReads(ctx, user, device)
	if err != nil {
		return nil, err
	}
	// A cursor for a conversation the user is not in (any more) is ignored.
	given := make(map[string]uint64, len(req.Cursors))
	for _, c := range req.Cursors {
		if key, ok := syncKey(user, c.GetConversation()); ok {
			given[key] = c.Seq
		}
	}
	type span struct {
		key      string
		c        *pb.Conversation
		floor    uint64 // a group's messages up to it are hidden from the user
		from, to uint64
	}
	spans := make([]span, 0, len(mine)+len(peers))
	ordinals := make(map[string]uint32, len(mine))
	for _, g := range mine {
		ordinals[g.GroupID] = g.Ordinal
		spans = append(spans, span{key: conv.Group(g.GroupID), c: &pb.Conversation{GroupId: g.GroupID}, floor: g.JoinedSeq})
	}
	for _, p := range peers {
		spans = append(spans, span{key: conv.C2C(user, p), c: &pb.Conversation{PeerId: p}})
	}
	keys := make([]string, len(spans))
	for i, sp := range spans {
		keys[i] = sp.key
	}
	// Every conversation's head in one read, not one per conversation.
	heads, err := conv.HeadSeqs(ctx, s.cfg.Store, keys)
	if err != nil {
		return nil, err
	}
	s.heads.noteEach(keys, heads)
	for i := range spans {
		sp, head := &spans[i], heads[i]
		from := s.cursors.get(user, device, sp.key)
		if seq, ok := given[sp.key]; ok {
			if !req.NoAck {
				s.cursors.ack(user, device, sp.key, min(seq, head))
			}
			from = seq
		}
		sp.from, sp.to = max(from, sp.floor), head
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].key < spans[j].key })
	// At most this many messages: the page's slices are allocated once.
	n := 0
	for _, sp := range spans {
		if sp.to > sp.from {
			n = min(limit, n+int(min(sp.to-sp.from, uint64(limit))))
		}
	}
	resp := &pb.SyncResponse{Messages: make([]*pb.Message, 0, n)}
	wms := make([]uint32, 0, n)
	b := page.New(caller.JSON)
	for _, sp := range spans {
		if sp.from >= sp.to {
			continue
		}
		if len(resp.Messages) >= limit {
			resp.More = true
			break
		}
		cur := &pb.SyncCursor{Conversation: sp.c, Seq: sp.from}
		full := false
		start := storage.AppendUint64(storage.Key("m", sp.key), sp.from+1)
		end := storage.AppendUint64(storage.Key("m", sp.key), sp.to+1)
		err := s.scanMessages(ctx, start, end, false, func(m *pb.Message, wm uint32) bool {
			if !b.Take(m) {
				full = true
				return false
			}
			resp.Messages = append(resp.Messages, m)
			wms = append(wms, wm)
			cur.Seq = m.Seq
			return len(resp.Messages) < limit
		})
		if err != nil {
			return nil, err
		}
		if cur.Seq > sp.from {
			b.Add(cur)
			resp.Cursors = append(resp.Cursors, cur)
		}
		if (full || len(resp.Messages) >= limit) && cur.Seq < sp.to {
			resp.More = true
			break
		}
	}
	if s.receipts == nil {
		return resp, nil
	}
	return resp, markReceiptSent(user, resp.Messages, wms, func(rms []receipts.Msg) ([]bool, error) {
		return s.receipts.StoredReceiptSent(ctx, user, rms, ordinals)
	})
}

// syncKey is the key of a conversation named in a sync or ack cursor, if
// it names exactly one.
func syncKey(user string, c *pb.Conversation) (string, bool) {
	switch g, p := c.GetGroupId(), c.GetPeerId(); {
	case g != "" && p == "":
		return conv.Group(g), true
	case p != "" && g == "" && p != user:
		return conv.C2C(user, p), true
	}
	return "", false
}

// Ack moves the caller's device cursors forward to the seqs it says it
// holds (AckRequest), never past a conversation's last stored message. Like
// Sync it reads only storage, on the user's node, and only what it needs:
// SDKs ack every second whatever happened, so an ack that moves nothing
// (the common case) reads nothing once the device's cursors are in memory
// (they are while the user is online), and moving existing cursors reads
// at most the heads of their conversations, all in one lookup, and none for
// a conversation whose head this node knows has reached the seq
// (knownHeads: on every node, once one ack of a new message read it) or a
// message in the cache of recent ones.
func (s *Service) Ack(ctx context.Context, caller Caller, req *pb.AckRequest) error {
	user, device := caller.UserID, caller.device()
	// A cursor moving to a message not in the cache is never moved past
	// its conversation's head: the heads are read at the end, in one
	// lookup however many conversations.
	type move struct {
		key string
		seq uint64
	}
	var uncached []move
	ackUncached := func() error {
		if len(uncached) == 0 {
			return nil
		}
		keys := make([]string, len(uncached))
		seqs := make([]uint64, len(uncached))
		for i, m := range uncached {
			keys[i], seqs[i] = m.key, m.seq
		}
		heads, err := s.heads.read(ctx, s.cfg.Store, keys, seqs)
		if err != nil {
			return err
		}
		for i, m := range uncached {
			s.cursors.ack(user, device, m.key, min(m.seq, heads[i]))
		}
		return nil
	}
	for _, c := range req.Cursors {
		key, ok := syncKey(user, c.GetConversation())
		if !ok {
			if err := ackUncached(); err != nil {
				return err
			}
			return apierr.InvalidArgument("an ack cursor must name one conversation: exactly one of peer_id and group_id, not yourself")
		}
		// The common case, an existing cursor moving to a message just
		// delivered (its head known once one ack or the store reached it):
		// one locked step, no read.
		cached := s.heads.reached(key, c.Seq)
		if !cached {
			_, cached = s.recent.get(key, c.Seq)
		}
		if cached {
			if st := s.cursors.advance(user, device, key, c.Seq); st == cursorMoves || st == cursorCovered {
				continue
			}
		}
		st := s.cursors.state(user, device, key, c.Seq)
		if st == cursorUnloaded {
			if err := s.cursors.load(ctx, s.cfg.Store, user, device); err != nil {
				return err
			}
			st = s.cursors.state(user, device, key, c.Seq)
		}
		if st == cursorCovered {
			continue
		}
		// A new cursor only for a conversation the user is in: no state
		// for made-up ones (nor for a group the user has just left). An
		// existing one may move without asking: its state exists already,
		// and after leaving a group a rejoin's floor is above any head the
		// cursor can reach now.
		if st == cursorNew {
			in, err := s.member(ctx, user, c.GetConversation())
			if err != nil {
				return err
			}
			if !in {
				continue
			}
		}
		if cached {
			s.cursors.ack(user, device, key, c.Seq)
			continue
		}
		uncached = append(uncached, move{key, c.Seq})
	}
	return ackUncached()
}

// member reports whether user is in conversation c (stored state).
func (s *Service) member(ctx context.Context, user string, c *pb.Conversation) (bool, error) {
	if g := c.GetGroupId(); g != "" {
		_, in, err := s.cfg.Groups.UserGroup(ctx, user, g)
		return in, err
	}
	return conv.C2CExists(ctx, s.cfg.Store, user, c.GetPeerId())
}

// SessionEnded forgets the cursors of the session's ephemeral device.
func (s *Service) SessionEnded(caller Caller) {
	if caller.DeviceID == "" {
		s.cursors.forget(caller.UserID, caller.device())
	}
}

// userReads reads what a sync needs of user before its conversations, in
// one storage lookup (a login's five reads were five round trips on
// PostgreSQL): its groups, its C2C peers and, unless they are in memory,
// its cursors, which it loads for device.
func (s *Service) userReads(ctx context.Context, user, device string) ([]groups.UserGroup, []string, error) {
	prefixes := [][]byte{groups.UserGroupsPrefix(user), conv.PeerPrefix(user)}
	var st *storedUser
	if s.cursors.needsUser(user, device) {
		st = newStoredUser()
		prefixes = append(prefixes, userCursorPrefixes(user)...)
	}
	var (
		mine   []groups.UserGroup
		peers  []string
		decErr error
	)
	err := s.cfg.Store.ScanPrefixes(ctx, prefixes, func(i int, k, v []byte) bool {
		switch i {
		case 0:
			var g groups.UserGroup
			if g, decErr = groups.UserGroupRow(prefixes[0], k, v); decErr != nil {
				return false
			}
			mine = append(mine, g)
		case 1:
			peers = append(peers, string(k[len(prefixes[1]):]))
		default:
			st.add(i-2, k[len(prefixes[i]):], v)
		}
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, nil, err
	}
	if st != nil {
		st.merge()
	}
	return mine, peers, s.cursors.loadWith(ctx, s.cfg.Store, user, device, st)
}

func groupTypeName(t pb.GroupType) string {
	names := map[pb.GroupType]string{
		pb.GroupType_GROUP_TYPE_WORK: "Work", pb.GroupType_GROUP_TYPE_PUBLIC: "Public",
		pb.GroupType_GROUP_TYPE_MEETING: "Meeting", pb.GroupType_GROUP_TYPE_COMMUNITY: "Community",
		pb.GroupType_GROUP_TYPE_AVCHATROOM: "AVChatRoom",
	}
	return names[t]
}

// A stored message is a version byte, the membership watermark (uvarint)
// and the wire Message.
func encodeStored(m *pb.Message, watermark uint32) ([]byte, error) {
	b := binary.AppendUvarint([]byte{1}, uint64(watermark))
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

func decodeStored(v []byte) (*pb.Message, uint32, error) {
	if len(v) == 0 || v[0] != 1 {
		return nil, 0, fmt.Errorf("messages: unknown record version")
	}
	wm, n := binary.Uvarint(v[1:])
	if n <= 0 {
		return nil, 0, fmt.Errorf("messages: corrupt record")
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(v[1+n:], m); err != nil {
		return nil, 0, fmt.Errorf("messages: corrupt record: %w", err)
	}
	return m, uint32(wm), nil
}
