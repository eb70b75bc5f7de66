package im

import (
	"errors"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// sync fetches the stored messages this client's device has not
// acknowledged, after a login, and delivers them page by page; pushes
// received meanwhile are buffered and delivered after the last page, merged
// in seq order per conversation. Each request's cursors are the highest seqs
// delivered per conversation, which the server takes as acknowledgements
// and continues after; for a conversation not listed it starts after the
// device's last acknowledgement (or the user's, for a device it has never
// seen). Buffered pushes continue where the sync ends (the session was
// registered for pushes before the sync started), so delivering them after
// the last page keeps every conversation in seq order. It runs on the run
// goroutine while the reader keeps routing responses.
func (c *Client) sync(s *session) {
	for {
		c.dmu.Lock()
		cursors := make([]*pb.SyncCursor, 0, len(c.delivered))
		for k, seq := range c.delivered {
			cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
		}
		c.dmu.Unlock()
		if len(cursors) > maxCursorsPerFrame {
			// Too many for one frame: acknowledge them first; the sync then
			// starts from the device's cursors, which they moved.
			// Confirmed: the sync must start after the cursors they move.
			if err := s.ack(s.ctx, cursors, false); err != nil {
				var ie *Error
				if !errors.As(err, &ie) || ie.Code == CodeUnavailable {
					return // the session ended; the next one syncs again
				}
				// Refused: sync anyway; repeats are dropped here.
				c.log.Warn("im: acknowledgement before sync failed", "err", err)
			}
			cursors = nil
		}
		resp, err, sent := s.roundTrip(s.ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Sync{
			Sync: &pb.SyncRequest{Cursors: cursors, Limit: syncPageSize},
		}})
		if !sent {
			return // the session ended; the next one syncs again
		}
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) || ie.Code == CodeUnavailable {
				return
			}
			// The server refused: go live without the backlog rather than
			// reconnecting in a loop.
			c.log.Warn("im: sync failed", "err", err)
			break
		}
		sr := resp.GetSync()
		c.dmu.Lock()
		for _, m := range sr.GetMessages() {
			c.deliverLocked(m)
		}
		c.dmu.Unlock()
		if !sr.GetMore() || len(sr.GetMessages()) == 0 {
			break
		}
	}
	c.dmu.Lock()
	for _, m := range c.buffered { // in seq order per conversation, as pushed
		c.deliverLocked(m)
	}
	c.buffered = nil
	c.syncing = false
	c.dmu.Unlock()
}

// deliverLocked reports m to the listeners unless it was delivered before.
// c.dmu must be held.
func (c *Client) deliverLocked(m *pb.Message) {
	if m.GetSeq() == 0 { // online_user_only: never stored, never synced
		c.emitNewMessage(messageFromPB(m, c.userID), convKey{})
		return
	}
	k := convOf(m, c.userID)
	if m.GetSeq() <= c.delivered[k] {
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

// sentOwn records a message this client sent, so that its echo by push or
// sync is not reported as new.
func (c *Client) sentOwn(m *pb.Message) {
	if m.GetSeq() == 0 {
		return
	}
	k := convOf(m, c.userID)
	c.dmu.Lock()
	defer c.dmu.Unlock()
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
