package receipts

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/webhooks"
	"github.com/readmark/readmark/webhook"
)

// MaxBatch is the most messages one Send or Get call may name, and the
// largest ReadMembers page.
const MaxBatch = 100

// Config configures an Engine.
type Config struct {
	Store     storage.Store
	Committer *storage.Committer // shared group-commit queue; the engine does not close it
	Messages  Messages
	Roster    Roster
	Pusher    Pusher
	// Profiles, if set, fills nick names and avatars in member lists.
	Profiles Profiles
	// Now is the clock for read times and C2C marks (nil = time.Now).
	Now func() time.Time
	// PushBurst and PushInterval bound the receipt push frames to each
	// sender: PushBurst at once, then one per PushInterval; receipts that
	// come faster are held and go out together, with their newest counts, in
	// the next frame (0 = 3 and just over 1/18 s: at most 20 frames in any
	// second, and a held receipt waits at most ~56 ms).
	PushBurst    int
	PushInterval time.Duration
	// OnPushWait, if set, is called for each message in each receipt push
	// frame with how long the message's oldest receipt in the frame was
	// held for it (0 for a receipt pushed at once). It runs under the
	// coalescer's lock: it must be quick (a histogram).
	OnPushWait func(time.Duration)
	// CacheMessages: read states kept in memory (0 = 20000); LRU; misses load
	// from Store.
	CacheMessages int
	Logger        *slog.Logger
	// Webhooks, if set, records group.read_receipt and c2c.read_receipt
	// events in the batch of the receipts they report, and c2c.mark_read
	// events with the mark.
	Webhooks webhooks.Recorder
}

// Engine records and serves read receipts. All methods are safe for
// concurrent use.
type Engine struct {
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	cache *stateCache
	co    *coalescer

	closeMu sync.RWMutex
	closed  bool
	ops     sync.WaitGroup // operations in flight

	pmu       sync.Mutex
	pending   []*sendReq
	submitted bool // a submission is queued whose prepare has not run yet

	share *commitShare // of the batch being gathered; commit goroutine only

	markMu [64]sync.Mutex // striped by (reader, peer)
}

// New returns a running engine. Call Close when done with it, before
// closing the Committer.
func New(cfg Config) (*Engine, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("receipts: Config.Store is nil")
	case cfg.Committer == nil:
		return nil, errors.New("receipts: Config.Committer is nil")
	case cfg.Messages == nil:
		return nil, errors.New("receipts: Config.Messages is nil")
	case cfg.Roster == nil:
		return nil, errors.New("receipts: Config.Roster is nil")
	case cfg.Pusher == nil:
		return nil, errors.New("receipts: Config.Pusher is nil")
	}
	if cfg.PushBurst <= 0 {
		cfg.PushBurst = defaultPushBurst
	}
	if cfg.PushInterval <= 0 {
		cfg.PushInterval = defaultPushInterval
	}
	if cfg.CacheMessages <= 0 {
		cfg.CacheMessages = 20000
	}
	e := &Engine{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.cache = newStateCache(cfg.Store, cfg.CacheMessages)
	e.co = newCoalescer(cfg.Pusher, time.Now, cfg.PushBurst, cfg.PushInterval)
	e.co.onWait = cfg.OnPushWait
	e.co.start()
	return e, nil
}

// Close waits for calls in flight, flushes pending coalesced pushes and
// stops the engine's goroutine. Later calls fail with CodeUnavailable.
func (e *Engine) Close() {
	e.closeMu.Lock()
	if e.closed {
		e.closeMu.Unlock()
		return
	}
	e.closed = true
	e.closeMu.Unlock()
	e.ops.Wait()
	e.co.close()
}

// begin registers an operation; the caller must call e.ops.Done.
func (e *Engine) begin() error {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return apierr.New(pb.CodeUnavailable, "server is shutting down")
	}
	e.ops.Add(1)
	return nil
}

func (e *Engine) nowMs() int64 { return max(e.now().UnixMilli(), 1) }

// storeErr maps a storage failure to what the caller sees.
func storeErr(err error) error {
	if errors.Is(err, storage.ErrClosed) {
		return apierr.New(pb.CodeUnavailable, "server is shutting down")
	}
	return err
}

// sendReq is one Send call waiting for the commit.
type sendReq struct {
	reader string
	group  string // "" for C2C
	ord    uint32 // reader's ordinal (group)
	part   uint32 // partition of the conversation (fences the writes)
	msgs   []Msg
	refs   []*pb.MessageRef
	states []*readState
	// Set by prepare (commit goroutine), read after done.
	fresh []int // indexes into msgs of receipts that were new
	done  chan error
}

// submission is one engine prepare/done pair in the Committer.
type submission struct {
	reqs []*sendReq
}

// commitShare is the engine's part of one Committer batch: what the
// submissions prepared into it changed. The batch's OnSeal hook writes each
// dirtied state once and snapshots the counts to push.
type commitShare struct {
	t       int64        // read time of every receipt in the batch
	dirty   []*readState // states to serialize
	touched []*readState // states with new receipts, each once
	mark    map[*readState]struct{}
	readers map[*readState][]string // new readers per message, for webhook events (nil: nobody wants them)
}

// Send records that reader has read the referenced messages
// (SendMessageReadReceipts). It returns once the receipts are durable.
func (e *Engine) Send(ctx context.Context, reader string, refs []*pb.MessageRef) error {
	return e.SendFrom(ctx, reader, 0, refs)
}

// SendFrom is Send for receipts that came from the reader's session
// session: that session already knows, so only the reader's other sessions
// are told (self_receipts).
func (e *Engine) SendFrom(ctx context.Context, reader string, session uint64, refs []*pb.MessageRef) error {
	if err := checkBatch(refs); err != nil {
		return err
	}
	first := refs[0].GetConversation()
	for _, r := range refs {
		c := r.GetConversation()
		if c == nil {
			return apierr.InvalidArgument("message ref without conversation")
		}
		if c.GetPeerId() != first.GetPeerId() || c.GetGroupId() != first.GetGroupId() {
			return apierr.InvalidArgument("receipts of one call must name one conversation")
		}
	}
	if err := e.begin(); err != nil {
		return err
	}
	defer e.ops.Done()

	msgs, err := e.cfg.Messages.Resolve(ctx, reader, refs)
	if err != nil {
		return err
	}
	if len(msgs) != len(refs) {
		return fmt.Errorf("receipts: resolve returned %d messages for %d refs", len(msgs), len(refs))
	}
	req := &sendReq{reader: reader, msgs: msgs, refs: refs, part: cluster.Of(msgs[0].Conv), done: make(chan error, 1)}
	for _, m := range msgs {
		if m.Sender == reader {
			return apierr.New(pb.CodeReceiptOwnMessage, "message %s is your own", m.ID)
		}
		if !m.NeedReadReceipt {
			return apierr.New(pb.CodeMessageNoReceipt, "message %s was sent without a read receipt request", m.ID)
		}
		if m.GroupID != msgs[0].GroupID || m.Conv != msgs[0].Conv {
			return apierr.InvalidArgument("receipts of one call must name one conversation")
		}
	}
	if g := msgs[0].GroupID; g != "" {
		ord, ok := e.cfg.Roster.Ordinal(ctx, g, reader)
		if !ok {
			return apierr.PermissionDenied("not a member of group %s", g)
		}
		for _, m := range msgs {
			if ord >= m.Watermark {
				return apierr.PermissionDenied("message %s was sent before you joined", m.ID)
			}
		}
		req.group, req.ord = g, ord
	}

	if req.states, err = e.cache.acquireAll(ctx, msgs); err != nil {
		return storeErr(err)
	}
	defer e.cache.releaseAll(req.states)

	if err := e.enqueue(req); err != nil {
		return storeErr(err)
	}
	if len(req.fresh) > 0 && e.cfg.Pusher.MayReach(reader, session) {
		mine := make([]*pb.MessageRef, len(req.fresh))
		for i, j := range req.fresh {
			mine[i] = refs[j]
		}
		e.cfg.Pusher.PushExcept(reader, session, &pb.ServerFrame{Body: &pb.ServerFrame_SelfReceipts{
			SelfReceipts: &pb.SelfReceiptsPush{Messages: mine},
		}})
	}
	return nil
}

func checkBatch(refs []*pb.MessageRef) error {
	if len(refs) == 0 {
		return apierr.InvalidArgument("no messages")
	}
	if len(refs) > MaxBatch {
		return apierr.TooMany("%d messages, at most %d per call", len(refs), MaxBatch)
	}
	for _, r := range refs {
		if r == nil {
			return apierr.InvalidArgument("nil message ref")
		}
	}
	return nil
}

// enqueue adds req to the pending list, makes sure a submission will take
// it, and waits until it is durable.
func (e *Engine) enqueue(req *sendReq) error {
	e.pmu.Lock()
	e.pending = append(e.pending, req)
	need := !e.submitted
	e.submitted = true
	e.pmu.Unlock()
	if need {
		sub := &submission{}
		err := e.cfg.Committer.Submit(context.Background(),
			func(b *storage.Batch) { e.prepare(sub, b) },
			func(err error) { e.done(sub, err) })
		if err != nil {
			e.pmu.Lock()
			reqs := e.pending
			e.pending, e.submitted = nil, false
			e.pmu.Unlock()
			for _, r := range reqs {
				r.done <- err
			}
		}
	}
	return <-req.done
}

// prepare runs on the commit goroutine: it applies every pending request to
// the in-memory states and adds the receipt logs to b; the batch's OnSeal
// hook (seal) adds the states, once each.
func (e *Engine) prepare(sub *submission, b *storage.Batch) {
	e.pmu.Lock()
	sub.reqs = e.pending
	e.pending, e.submitted = nil, false
	e.pmu.Unlock()
	if len(sub.reqs) == 0 {
		return
	}
	sh := e.share
	if sh == nil {
		sh = &commitShare{t: e.nowMs(), mark: make(map[*readState]struct{})}
		if wh := e.cfg.Webhooks; wh != nil && (wh.Wants(webhook.GroupReadReceipt) || wh.Wants(webhook.C2CReadReceipt)) {
			sh.readers = make(map[*readState][]string)
		}
		e.share = sh
		b.OnSeal(func(b *storage.Batch) { e.seal(sh, b) })
	}
	t := sh.t
	// The requests' groups are loaded (resolving their messages loaded
	// them), so the roster is not read from storage on this goroutine.
	ctx := context.Background()
	var seqs []uint64
	for _, req := range sub.reqs {
		var snap RosterSnapshot
		var snapOK bool
		if req.group != "" {
			snap, snapOK = e.cfg.Roster.Snapshot(ctx, req.group)
		}
		seqs = seqs[:0]
		for i, st := range req.states {
			fresh := false
			st.mu.Lock()
			if req.group != "" {
				if st.read.CheckedAdd(req.ord) {
					fresh = true
					if st.unsettled == nil {
						st.unsettled = roaring.New()
					}
					st.unsettled.Add(req.ord)
					if st.countOK && snapOK && st.countDep == snap.Departures && snap.Present.Contains(req.ord) {
						st.count++
					} else {
						st.countOK = false
					}
				}
			} else if st.readAt == 0 {
				st.readAt = t
				fresh = true
			}
			if fresh && !st.dirty {
				st.dirty = true
				sh.dirty = append(sh.dirty, st)
			}
			st.mu.Unlock()
			if !fresh {
				continue
			}
			req.fresh = append(req.fresh, i)
			seqs = append(seqs, req.msgs[i].Seq)
			if sh.readers != nil {
				sh.readers[st] = append(sh.readers[st], req.reader)
			}
			if _, ok := sh.mark[st]; !ok {
				sh.mark[st] = struct{}{}
				sh.touched = append(sh.touched, st)
			}
		}
		if len(seqs) > 0 {
			b.Fence(req.part)
		}
		if req.group != "" && len(seqs) > 0 {
			sortSeqs(seqs)
			b.Set(logKey(req.group, req.ord, seqs[0]), encodeLog(t, seqs))
		}
	}
}

// seal runs on the commit goroutine once the batch holds its last prepare:
// it serializes each state dirtied in the batch once, with all of its
// receipts applied, records the webhook events and snapshots the counts to
// push. The snapshot is the durable state once the batch is applied: the
// receipts in memory are those of this batch and of the batches before it,
// and if one of those fails, this one fails too (see storage.Committer).
func (e *Engine) seal(sh *commitShare, b *storage.Batch) {
	e.share = nil
	for _, st := range sh.dirty {
		st.mu.Lock()
		var k, v []byte
		if st.isGroup() {
			k, v = readSetKey(st.msg.Conv, st.msg.Seq), encodeReadSet(st.read, st.msg.Watermark)
		} else {
			k, v = c2cReadKey(st.msg.Conv, st.msg.Seq), encodeC2C(st.readAt)
		}
		st.dirty = false
		st.mu.Unlock()
		b.Set(k, v)
	}
	ctx := context.Background()
	if sh.readers != nil {
		e.recordEvents(ctx, b, sh.touched, sh.readers, sh.t)
	}
	items := e.receiptsFor(sh.touched)
	b.OnApplied(func(err error) {
		if err == nil {
			e.co.note(items)
		}
	})
}

// recordEvents adds one webhook event per message with new receipts in
// this commit (all of its new readers, the counts after them) to b.
func (e *Engine) recordEvents(ctx context.Context, b *storage.Batch, touched []*readState, readers map[*readState][]string, t int64) {
	wh := e.cfg.Webhooks
	for _, st := range touched {
		m := &st.msg
		if !st.isGroup() {
			if wh.Wants(webhook.C2CReadReceipt) {
				wh.Add(b, m.Conv, &webhook.Event{Type: webhook.C2CReadReceipt, TimeMs: t, Seq: m.Seq, MsgID: m.ID,
					Sender: m.Sender, Receiver: m.Receiver, ReadTimeMs: t})
			}
			continue
		}
		if !wh.Wants(webhook.GroupReadReceipt) {
			continue
		}
		snap, ok := e.cfg.Roster.Snapshot(ctx, m.GroupID)
		if !ok {
			continue // group gone
		}
		so, sok := e.cfg.Roster.Ordinal(ctx, m.GroupID, m.Sender)
		read, unread := st.counts(snap, so, sok)
		wh.Add(b, m.Conv, &webhook.Event{Type: webhook.GroupReadReceipt, TimeMs: t, GroupID: m.GroupID, Seq: m.Seq, MsgID: m.ID,
			Sender: m.Sender, Readers: readers[st], ReadCount: &read, UnreadCount: &unread})
	}
}

// done runs on the commit goroutine after the batch was applied (err nil)
// or failed, after the batch's counts went to the coalescer (seal).
func (e *Engine) done(sub *submission, err error) {
	settle(sub, err != nil)
	if err != nil {
		e.log.Error("receipts: commit failed", "err", err, "requests", len(sub.reqs))
	}
	for _, r := range sub.reqs {
		r.done <- err
	}
}

// settle ends what a submission's receipts did to the in-memory states:
// their ordinals leave the states' unsettled sets, and if the submission
// failed the receipts are undone. Nothing later was applied then: the batch
// prepared on top of it fails too, and its done rolls back its own receipts
// (those new after this one's), before any further prepare.
func settle(sub *submission, failed bool) {
	for _, req := range sub.reqs {
		for _, i := range req.fresh {
			st := req.states[i]
			st.mu.Lock()
			switch {
			case req.group != "":
				st.unsettle(req.ord)
				if failed {
					st.read.Remove(req.ord)
					st.countOK = false
				}
			case failed:
				st.readAt = 0
			}
			st.mu.Unlock()
		}
		if failed {
			req.fresh = nil
		}
	}
}

// receiptsFor builds the current receipt of each state, for its sender.
func (e *Engine) receiptsFor(states []*readState) []noteItem {
	ctx := context.Background() // the groups are loaded, as in prepare
	items := make([]noteItem, 0, len(states))
	type gsnap struct {
		snap RosterSnapshot
		ok   bool
	}
	snaps := make(map[string]gsnap)
	for _, st := range states {
		m := &st.msg
		r := &pb.MessageReceipt{MsgId: m.ID, Seq: m.Seq}
		if m.GroupID == "" {
			r.UserId = m.Receiver
			r.IsPeerRead = true
		} else {
			g, ok := snaps[m.GroupID]
			if !ok {
				g.snap, g.ok = e.cfg.Roster.Snapshot(ctx, m.GroupID)
				snaps[m.GroupID] = g
			}
			if !g.ok {
				continue // group gone
			}
			so, sok := e.cfg.Roster.Ordinal(ctx, m.GroupID, m.Sender)
			r.GroupId = m.GroupID
			r.ReadCount, r.UnreadCount = st.counts(g.snap, so, sok)
		}
		items = append(items, noteItem{key: st.key, sender: m.Sender, r: r})
	}
	return items
}

func encodeC2C(t int64) []byte {
	return binary.AppendUvarint(nil, uint64(t))
}
