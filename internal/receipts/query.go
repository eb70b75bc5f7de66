package receipts

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/webhook"
)

// Get returns the receipts of the caller's own messages
// (GetMessageReadReceipts), in the order of refs. Any mix of conversations
// is allowed.
func (e *Engine) Get(ctx context.Context, user string, refs []*pb.MessageRef) ([]*pb.MessageReceipt, error) {
	if err := checkBatch(refs); err != nil {
		return nil, err
	}
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.ops.Done()
	msgs, err := e.cfg.Messages.Resolve(ctx, user, refs)
	if err != nil {
		return nil, err
	}
	if len(msgs) != len(refs) {
		return nil, fmt.Errorf("receipts: resolve returned %d messages for %d refs", len(msgs), len(refs))
	}
	for _, m := range msgs {
		if m.Sender != user {
			return nil, apierr.PermissionDenied("message %s is not yours", m.ID)
		}
		if !m.NeedReadReceipt {
			return nil, apierr.New(pb.CodeMessageNoReceipt, "message %s was sent without a read receipt request", m.ID)
		}
	}
	sts, err := e.cache.acquireAll(ctx, msgs)
	if err != nil {
		return nil, storeErr(err)
	}
	defer e.cache.releaseAll(sts)
	marks, err := e.marksOn(ctx, user, msgs)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]*pb.MessageReceipt, len(msgs))
	snaps := make(map[string]RosterSnapshot)
	for i, m := range msgs {
		st := sts[i]
		r := &pb.MessageReceipt{MsgId: m.ID, Seq: m.Seq}
		if m.GroupID == "" {
			mark := marks[m.Receiver]
			st.mu.RLock()
			readAt := st.readAt
			st.mu.RUnlock()
			r.UserId = m.Receiver
			r.IsPeerRead = readAt != 0 || (mark > 0 && mark >= m.Time.UnixMilli())
			r.TimeMs = mark
		} else {
			snap, ok := snaps[m.GroupID]
			if !ok {
				if snap, ok = e.cfg.Roster.Snapshot(ctx, m.GroupID); !ok {
					return nil, apierr.NotFound("group %s does not exist", m.GroupID)
				}
				snaps[m.GroupID] = snap
			}
			so, sok := e.cfg.Roster.Ordinal(ctx, m.GroupID, user)
			r.GroupId = m.GroupID
			r.ReadCount, r.UnreadCount = st.counts(snap, so, sok)
		}
		out[i] = r
	}
	return out, nil
}

// marksOn returns the C2C marks on user of the receivers of msgs' C2C
// messages (receiver -> ms), read in one GetMany.
func (e *Engine) marksOn(ctx context.Context, user string, msgs []Msg) (map[string]int64, error) {
	var receivers []string
	var keys [][]byte
	for _, m := range msgs {
		if m.GroupID == "" && !slices.Contains(receivers, m.Receiver) {
			receivers = append(receivers, m.Receiver)
			keys = append(keys, markKey(m.Receiver, user))
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vs, err := e.cfg.Store.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	marks := make(map[string]int64, len(receivers))
	for i, r := range receivers {
		if marks[r], err = decodeMark(vs[i]); err != nil {
			return nil, err
		}
	}
	return marks, nil
}

// ReadMembers pages the members who read / have not read a group message
// (GetGroupMessageReadMemberList), by ordinal ascending. NextSeq is the
// ordinal to continue from.
func (e *Engine) ReadMembers(ctx context.Context, user string, req *pb.ReadMembersRequest) (*pb.ReadMembersResponse, error) {
	if req.GetCount() < 1 || req.GetCount() > MaxBatch {
		return nil, apierr.TooMany("count %d, must be 1..%d", req.GetCount(), MaxBatch)
	}
	if req.GetMessage() == nil {
		return nil, apierr.InvalidArgument("no message")
	}
	filter := req.GetFilter()
	if filter != pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ && filter != pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD {
		return nil, apierr.InvalidArgument("unknown filter %d", filter)
	}
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.ops.Done()
	msgs, err := e.cfg.Messages.Resolve(ctx, user, []*pb.MessageRef{req.GetMessage()})
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("receipts: resolve returned %d messages for 1 ref", len(msgs))
	}
	m := msgs[0]
	if m.GroupID == "" {
		return nil, apierr.InvalidArgument("message %s is not a group message", m.ID)
	}
	if m.Sender != user {
		return nil, apierr.PermissionDenied("message %s is not yours", m.ID)
	}
	if !m.NeedReadReceipt {
		return nil, apierr.New(pb.CodeMessageNoReceipt, "message %s was sent without a read receipt request", m.ID)
	}
	snap, ok := e.cfg.Roster.Snapshot(ctx, m.GroupID)
	if !ok {
		return nil, apierr.NotFound("group %s does not exist", m.GroupID)
	}
	resp := &pb.ReadMembersResponse{NextSeq: req.GetNextSeq(), IsFinished: true}
	if req.GetNextSeq() >= uint64(m.Watermark) {
		return resp, nil
	}
	cursor := uint32(req.GetNextSeq())
	st, err := e.cache.acquire(ctx, m)
	if err != nil {
		return nil, storeErr(err)
	}
	n := int(req.GetCount())
	ords := make([]uint32, 0, n)
	more := false
	st.mu.RLock()
	if filter == pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ {
		it := st.read.Iterator()
		it.AdvanceIfNeeded(cursor)
		for it.HasNext() {
			o := it.Next()
			if !snap.Present.Contains(o) {
				continue
			}
			if len(ords) == n {
				more = true
				break
			}
			ords = append(ords, o)
		}
	} else {
		so, sok := e.cfg.Roster.Ordinal(ctx, m.GroupID, m.Sender)
		it := snap.Present.Iterator()
		it.AdvanceIfNeeded(cursor)
		for it.HasNext() {
			o := it.Next()
			if o >= m.Watermark {
				break
			}
			if (sok && o == so) || st.read.Contains(o) {
				continue
			}
			if len(ords) == n {
				more = true
				break
			}
			ords = append(ords, o)
		}
	}
	st.mu.RUnlock()
	e.cache.release(st)

	resp.Members = make([]*pb.GroupMember, len(ords))
	users := make([]string, len(ords))
	for i, o := range ords {
		users[i], _ = snap.User(o)
		resp.Members[i] = &pb.GroupMember{UserId: users[i]}
	}
	if e.cfg.Profiles != nil {
		nicks, faces := e.cfg.Profiles.Profiles(ctx, users)
		for i, gm := range resp.Members {
			gm.NickName, gm.FaceUrl = nicks[i], faces[i]
		}
	}
	if filter == pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ {
		times, err := e.readTimes(ctx, m.GroupID, ords, m.Seq)
		if err != nil {
			return nil, storeErr(err)
		}
		for i, gm := range resp.Members {
			gm.ReadTimeMs = times[i]
		}
	}
	if len(ords) > 0 {
		resp.NextSeq = uint64(ords[len(ords)-1]) + 1
	}
	resp.IsFinished = !more
	return resp, nil
}

// readTimes finds when each member of ords read seq: the newest
// receipt-log entry of the member with first seq <= seq that lists seq.
func (e *Engine) readTimes(ctx context.Context, group string, ords []uint32, seq uint64) ([]int64, error) {
	// Most receipt calls name one message, so a member's entry usually
	// starts at seq: one batched point lookup for the whole page, and a
	// scan only for the members whose entry starts earlier.
	keys := make([][]byte, len(ords))
	for i, o := range ords {
		keys[i] = logKey(group, o, seq)
	}
	vs, err := e.cfg.Store.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(ords))
	for i, v := range vs {
		if t, ok := logContains(seq, v, seq); ok {
			out[i] = t
			continue
		}
		if out[i], err = e.scanReadTime(ctx, group, ords[i], seq); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanReadTime is readTimes for one member whose entry does not start at
// seq: a reverse scan of its log from seq.
func (e *Engine) scanReadTime(ctx context.Context, group string, ord uint32, seq uint64) (int64, error) {
	mk := logMemberKey(group, ord)
	start := append(mk, '/')
	var end []byte
	if seq == math.MaxUint64 {
		end = storage.PrefixEnd(start)
	} else {
		end = storage.AppendUint64(logMemberKey(group, ord), seq+1)
	}
	var t int64
	err := e.cfg.Store.Scan(ctx, start, end, true, func(k, v []byte) bool {
		if len(k) != len(start)+8 {
			return true
		}
		tt, ok := logContains(storage.Uint64Suffix(k), v, seq)
		if ok {
			t = tt
			return false
		}
		return true
	})
	return t, err
}

// MarkC2CRead marks every C2C message from peer to reader up to now as read
// (MarkC2CMessageAsRead) and pushes the mark to peer's sessions. Marks only
// move forward. The two must have a conversation (have exchanged a
// message): no marks and no pushes for arbitrary users.
func (e *Engine) MarkC2CRead(ctx context.Context, reader, peer string) error {
	if peer == "" {
		return apierr.InvalidArgument("no peer")
	}
	if peer == reader {
		return apierr.InvalidArgument("cannot mark a conversation with yourself")
	}
	if err := e.begin(); err != nil {
		return err
	}
	defer e.ops.Done()
	exists, err := conv.C2CExists(ctx, e.cfg.Store, reader, peer)
	if err != nil {
		return storeErr(err)
	}
	if !exists {
		return apierr.NotFound("no conversation with %q", peer)
	}
	t := e.nowMs()
	mu := &e.markMu[maphash.String(markSeed, reader+"\x00"+peer)%uint64(len(e.markMu))]
	mu.Lock()
	cur, err := e.mark(ctx, reader, peer)
	if err == nil && t > cur {
		v := binary.AppendUvarint(nil, uint64(t))
		part := cluster.Of(conv.C2C(reader, peer))
		err = e.cfg.Committer.Commit(ctx, func(b *storage.Batch) {
			b.Fence(part)
			b.Set(markKey(reader, peer), v)
			if wh := e.cfg.Webhooks; wh != nil && wh.Wants(webhook.C2CMarkRead) {
				wh.Add(b, conv.C2C(reader, peer), &webhook.Event{Type: webhook.C2CMarkRead, TimeMs: t, UserID: reader, PeerID: peer, ReadTimeMs: t})
			}
		})
	} else {
		t = max(t, cur)
	}
	mu.Unlock()
	if err != nil {
		return storeErr(err)
	}
	e.cfg.Pusher.Push(peer, &pb.ServerFrame{Body: &pb.ServerFrame_C2CRead{C2CRead: &pb.C2CReadPush{
		Receipts: []*pb.MessageReceipt{{UserId: reader, TimeMs: t}},
	}}})
	return nil
}

var markSeed = maphash.MakeSeed()

// mark returns when reader last marked its conversation with peer read (ms;
// 0 = never).
func (e *Engine) mark(ctx context.Context, reader, peer string) (int64, error) {
	v, err := e.cfg.Store.Get(ctx, markKey(reader, peer))
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return decodeMark(v)
}

// decodeMark parses a stored C2C mark; nil (none stored) is 0.
func decodeMark(v []byte) (int64, error) {
	if v == nil {
		return 0, nil
	}
	t, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, fmt.Errorf("receipts: malformed c2c mark")
	}
	return int64(t), nil
}

// ReceiptSent reports, for messages user received, whether user already sent
// a receipt (or marked the C2C conversation read at or after the message).
// Messages user sent, or without NeedReadReceipt, report false. It reads
// the in-memory state: call it on the node owning the conversations.
func (e *Engine) ReceiptSent(ctx context.Context, user string, msgs []Msg) ([]bool, error) {
	ordinal := func(groupID string) (uint32, bool) { return e.cfg.Roster.Ordinal(ctx, groupID, user) }
	return e.receiptSent(ctx, user, msgs, ordinal, false)
}

// StoredReceiptSent is ReceiptSent from durable state alone, for any node:
// ordinals holds user's ordinal in each of its groups (from the stored user
// index).
func (e *Engine) StoredReceiptSent(ctx context.Context, user string, msgs []Msg, ordinals map[string]uint32) ([]bool, error) {
	ordinal := func(groupID string) (uint32, bool) {
		o, ok := ordinals[groupID]
		return o, ok
	}
	return e.receiptSent(ctx, user, msgs, ordinal, true)
}

// receiptSent answers ReceiptSent from the in-memory state, or with stored
// from durable state alone: there, a group message's read state cached here
// answers from its durable bits, and storage the states not cached.
// Reading each state from storage was most of what a sync cost. Whatever
// the number of messages, it reads the store at most twice: the C2C marks
// (and with stored the uncached read states) in one GetMany, and without
// stored the states the cache misses in another.
func (e *Engine) receiptSent(ctx context.Context, user string, msgs []Msg, ordinal func(groupID string) (uint32, bool), stored bool) ([]bool, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.ops.Done()
	// A message to answer: its reader's ordinal (group messages), the
	// indexes in keys of its C2C mark and (stored) its read state, or -1,
	// and (stored) whether the cache answered it, with what.
	type ask struct {
		i            int
		ord          uint32
		mark, read   int
		cached, sent bool
	}
	var (
		asks  = make([]ask, 0, len(msgs))
		keys  [][]byte
		marks map[string]int // C2C sender -> index of its mark in keys
	)
	for i, m := range msgs {
		if !m.NeedReadReceipt || m.Sender == user {
			continue
		}
		a := ask{i: i, mark: -1, read: -1}
		if m.GroupID != "" {
			var ok bool
			if a.ord, ok = ordinal(m.GroupID); !ok || a.ord >= m.Watermark {
				continue
			}
			if stored {
				if st := e.cache.peek(m); st != nil {
					a.cached, a.sent = true, durableRead(st, a.ord)
				}
			}
		} else {
			if m.Receiver != user {
				continue
			}
			j, ok := marks[m.Sender]
			if !ok {
				if marks == nil {
					marks = make(map[string]int)
				}
				j = len(keys)
				keys = append(keys, markKey(user, m.Sender))
				marks[m.Sender] = j
			}
			a.mark = j
		}
		asks = append(asks, a)
	}
	out := make([]bool, len(msgs))
	if len(asks) == 0 {
		return out, nil
	}
	if stored {
		for j := range asks {
			if a := &asks[j]; !a.cached {
				a.read = len(keys)
				keys = append(keys, stateKey(msgs[a.i]))
			}
		}
	}
	var vals [][]byte
	if len(keys) > 0 {
		var err error
		if vals, err = e.cfg.Store.GetMany(ctx, keys); err != nil {
			return nil, storeErr(err)
		}
	}
	var sts []*readState // in-memory states of the asks, unless stored
	if !stored {
		asked := make([]Msg, len(asks))
		for j, a := range asks {
			asked[j] = msgs[a.i]
		}
		var err error
		if sts, err = e.cache.acquireAll(ctx, asked); err != nil {
			return nil, storeErr(err)
		}
		defer e.cache.releaseAll(sts)
	}
	for j, a := range asks {
		m := msgs[a.i]
		if a.mark >= 0 {
			mark, err := decodeMark(vals[a.mark])
			if err != nil {
				return nil, storeErr(err)
			}
			if mark > 0 && mark >= m.Time.UnixMilli() {
				out[a.i] = true
				continue
			}
		}
		switch {
		case a.cached:
			out[a.i] = a.sent
		case !stored:
			out[a.i] = cachedRead(sts[j], m, a.ord)
		default:
			var err error
			if out[a.i], err = storedRead(m, a.ord, vals[a.read]); err != nil {
				return nil, storeErr(err)
			}
		}
	}
	return out, nil
}

// cachedRead reports from st, m's in-memory state, whether m was read by
// its C2C receiver, or by the group member of ordinal ord.
func cachedRead(st *readState, m Msg, ord uint32) bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if m.GroupID != "" {
		return st.read.Contains(ord)
	}
	return st.readAt != 0
}

// durableRead reports from st, a group message's in-memory state, whether
// the member of ordinal ord read it, durably.
func durableRead(st *readState, ord uint32) bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.read.Contains(ord) && (st.unsettled == nil || !st.unsettled.Contains(ord))
}

// storedRead is cachedRead on m's stored state v (at stateKey(m); nil if
// none).
func storedRead(m Msg, ord uint32, v []byte) (bool, error) {
	if m.GroupID == "" || v == nil {
		return v != nil, nil
	}
	return readSetContains(v, ord)
}

// DropPartition forgets the read states of the conversations of partition
// p (pushing their pending coalesced receipts first), so that they are
// reloaded from storage if p is owned here again. Call it once no
// operation on p is in flight.
func (e *Engine) DropPartition(p uint32) {
	in := func(conv string) bool { return cluster.Of(conv) == p }
	e.cache.drop(in)
	e.co.drop(in)
}
