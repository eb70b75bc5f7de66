package im

import (
	"errors"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// sync fetches the stored messages this client's device has not
// acknowledged, after a login, and delivers them page by page; pushes
// received meanwhile are buffered and delivered after the last page, merged
// in seq order per conversation. The first page comes with the login
// response when the login asked for it (see connect) and the server
// answered it; the others by SyncRequest. Each request's cursors are the
// highest seqs delivered (or held) per conversation, which the server
// continues after; for a conversation not listed it starts after the
// device's last acknowledgement (or the user's, for a device it has never
// seen). They are sent with no_ack: delivered is not yet handed (queued for
// the listeners, or held), and only what was handed may be acknowledged
// (acks, riding on the next requests or sent by the acker), or a client that
// ends before handing them would never get them again on this device. Buffered pushes continue where the sync ends (the session was
// registered for pushes before the sync started), so delivering them after
// the last page keeps every conversation in seq order. It runs on the run
// goroutine while the reader keeps routing responses.
func (c *Client) sync(s *session) {
	sr := s.loginSync
	for {
		if sr == nil {
			var ended bool
			if sr, ended = c.fetchSyncPage(s); ended {
				return // the session ended; the next one syncs again
			}
			if sr == nil {
				break // refused: go live without the backlog
			}
		}
		if !c.syncPage(sr) {
			break
		}
		sr = nil
	}
	c.dmu.Lock()
	for _, m := range c.buffered { // in seq order per conversation, as pushed
		c.deliverLocked(m)
	}
	c.buffered = nil
	c.syncing = false
	c.dmu.Unlock()
}

// syncCursors are the cursors of the next sync request: the highest seqs
// delivered, or held, per conversation. They are not acknowledgements (see
// syncRequest).
func (c *Client) syncCursors() []*pb.SyncCursor {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	cursors := make([]*pb.SyncCursor, 0, len(c.delivered)+len(c.held))
	for k, seq := range c.delivered {
		if c.held[k] == nil {
			cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
		}
	}
	// Held messages count as received: continue after them, or the
	// server would send them again, page after page, while they wait.
	for k, h := range c.held {
		cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: h.top})
	}
	return cursors
}

// fetchSyncPage requests the next sync page. It returns nil when the server
// refused the sync (rather than reconnecting in a loop, the client goes live
// without the backlog), and ended when the session ended.
func (c *Client) fetchSyncPage(s *session) (sr *pb.SyncResponse, ended bool) {
	cursors := c.syncCursors()
	if len(cursors) > maxCursorsPerFrame {
		// Too many for one frame: acknowledge them first; the sync then
		// starts from the device's cursors, which they moved.
		// Confirmed: the sync must start after the cursors they move.
		// The one exception to acknowledging only what was handed (a
		// backlog in over 256 conversations): what is still queued or
		// held is lost to this device if the client ends before handing
		// it.
		if err := s.ack(s.ctx, cursors, false); err != nil {
			var ie *Error
			if !errors.As(err, &ie) || ie.Code == CodeUnavailable {
				return nil, true
			}
			// Refused: sync anyway; repeats are dropped here.
			c.log.Warn("im: acknowledgement before sync failed", "err", err)
		}
		cursors = nil
	}
	resp, err, sent := s.roundTrip(s.ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Sync{
		Sync: syncRequest(cursors),
	}})
	if !sent {
		return nil, true
	}
	if err != nil {
		var ie *Error
		if !errors.As(err, &ie) || ie.Code == CodeUnavailable {
			return nil, true
		}
		c.log.Warn("im: sync failed", "err", err)
		return nil, false
	}
	return resp.GetSync(), false
}

// syncRequest asks for the page after cursors, without taking them as
// acknowledgements (no_ack). A server that predates no_ack takes them as
// acknowledgements still: there, what is delivered but not handed when the
// client ends is not synced to this device again.
func syncRequest(cursors []*pb.SyncCursor) *pb.SyncRequest {
	return &pb.SyncRequest{Cursors: cursors, Limit: syncPageSize, NoAck: true}
}

// syncPage delivers a sync page, whichever frame carried it, and reports
// whether more follow.
func (c *Client) syncPage(sr *pb.SyncResponse) bool {
	c.dmu.Lock()
	for _, m := range sr.GetMessages() {
		c.deliverLocked(m)
	}
	c.dmu.Unlock()
	return sr.GetMore() && len(sr.GetMessages()) > 0
}

// heldMsgs are the messages of a conversation held until this client's
// sends to it resolve, in seq order.
type heldMsgs struct {
	msgs []*pb.Message
	top  uint64 // highest seq in msgs
}

// deliverLocked reports m to the listeners unless it was delivered before.
// A message of this user, in a conversation with a SendMessage unresolved,
// may be that send's own, by sync or push ahead of its response: it is held,
// and the conversation's later messages after it (to keep seq order), until
// the sends resolve (sendEnd), so that sentOwnLocked can tell first.
// c.dmu must be held.
func (c *Client) deliverLocked(m *pb.Message) {
	if m.GetSeq() == 0 { // online_user_only: never stored, never synced
		c.emitNewMessage(messageFromPB(m, c.userID), convKey{})
		return
	}
	k := convOf(m, c.userID)
	if h := c.held[k]; h != nil {
		if m.GetSeq() > h.top {
			h.msgs = append(h.msgs, m)
			h.top = m.GetSeq()
		}
		return
	}
	if m.GetSeq() <= c.delivered[k] {
		return
	}
	if c.sending[k] > 0 && m.GetSender() == c.userID && !c.ownSent[k][m.GetSeq()] {
		c.held[k] = &heldMsgs{msgs: []*pb.Message{m}, top: m.GetSeq()}
		return
	}
	c.delivered[k] = m.GetSeq()
	if own := c.ownSent[k]; own != nil {
		mine := own[m.GetSeq()]
		for seq := range own {
			if seq <= m.GetSeq() {
				delete(own, seq)
			}
		}
		if len(own) == 0 {
			delete(c.ownSent, k)
		}
		if mine {
			// Sent by this client: SendMessage returned it.
			c.q.push(func() { c.handed(k, m.GetSeq()) })
			return
		}
	}
	c.emitNewMessage(messageFromPB(m, c.userID), k)
}

// sendBegin records a SendMessage to conversation k in progress.
func (c *Client) sendBegin(k convKey) {
	c.dmu.Lock()
	c.sending[k]++
	c.dmu.Unlock()
}

// sendEnd resolves a SendMessage to k: m is the message stored, nil if the
// send failed. When no send to k is left, the messages held for them are
// delivered, the own ones recognised.
func (c *Client) sendEnd(k convKey, m *pb.Message) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if m != nil {
		c.sentOwnLocked(m)
	}
	if c.sending[k]--; c.sending[k] > 0 {
		return
	}
	delete(c.sending, k)
	if h := c.held[k]; h != nil {
		delete(c.held, k)
		for _, hm := range h.msgs {
			c.deliverLocked(hm)
		}
	}
}

// sentOwnLocked records a message this client sent, so that its echo by
// push or sync is not reported as new. c.dmu must be held.
func (c *Client) sentOwnLocked(m *pb.Message) {
	if m.GetSeq() == 0 {
		return
	}
	k := convOf(m, c.userID)
	d := c.delivered[k]
	switch {
	case m.GetSeq() <= d:
	case m.GetSeq() == d+1:
		c.delivered[k] = m.GetSeq()
		seq := m.GetSeq()
		c.q.push(func() { c.handed(k, seq) }) // after what is queued before it
	default:
		if c.ownSent[k] == nil {
			c.ownSent[k] = make(map[uint64]bool)
		}
		c.ownSent[k][m.GetSeq()] = true
	}
}

// push handles a frame with id 0 (other than kickoff).
func (c *Client) push(f *pb.ServerFrame) {
	switch b := f.GetBody().(type) {
	case *pb.ServerFrame_NewMessage:
		c.dmu.Lock()
		if c.syncing {
			c.buffered = append(c.buffered, b.NewMessage)
		} else {
			c.deliverLocked(b.NewMessage)
		}
		c.dmu.Unlock()
	case *pb.ServerFrame_Receipts_:
		c.emitReceipts(receiptsFromPB(b.Receipts_.GetReceipts()))
	case *pb.ServerFrame_C2CRead:
		c.emitC2CRead(receiptsFromPB(b.C2CRead.GetReceipts()))
	case *pb.ServerFrame_SelfReceipts:
		refs := b.SelfReceipts.GetMessages()
		ms := make([]*Message, 0, len(refs))
		for _, r := range refs {
			ms = append(ms, selfReceiptFromPB(r))
		}
		c.emitSelfReceipts(ms)
	case *pb.ServerFrame_GroupEvent:
		c.emitGroupEvent(groupEventFromPB(b.GroupEvent))
	default:
		c.log.Debug("im: ignoring unknown push", "frame", f)
	}
}
