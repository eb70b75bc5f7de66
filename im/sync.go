package im

import (
	"errors"
	"sort"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// sync fetches the stored messages this client has not delivered yet, after
// a login, then delivers them together with the pushes buffered meanwhile,
// merged in seq order per conversation. Merging matters: for a conversation
// the client sends no cursor for, the server starts after what it already
// pushed to the user's sessions — pushes to this very session that are still
// in the buffer — so synced messages can be newer than buffered ones. It runs
// on the run goroutine while the reader keeps routing responses.
func (c *Client) sync(s *session) {
	c.dmu.Lock()
	cursors := make([]*pb.SyncCursor, 0, len(c.delivered))
	for k, seq := range c.delivered {
		cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
	}
	c.dmu.Unlock()
	var synced []*pb.Message
	for {
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
		synced = append(synced, sr.GetMessages()...)
		if !sr.GetMore() || len(sr.GetMessages()) == 0 {
			break
		}
		cursors = sr.GetCursors()
	}
	c.dmu.Lock()
	// Synced copies first, so that of two copies of one message the synced
	// one (which carries receipt_sent) is the one delivered.
	for _, m := range inSeqOrder(append(synced, c.buffered...), c.userID) {
		c.deliverLocked(m)
	}
	c.buffered = nil
	c.syncing = false
	c.dmu.Unlock()
}

// inSeqOrder drops repeated copies of a message (keeping the first) and
// reorders the rest so that each conversation's messages are in seq order,
// keeping the positions each conversation occupies (and online-only
// messages, seq 0, where they are): interleaving across conversations is
// preserved, order within one is fixed.
func inSeqOrder(msgs []*pb.Message, me string) []*pb.Message {
	type id struct {
		k   convKey
		seq uint64
	}
	seen := make(map[id]bool)
	unique := msgs[:0:0]
	byConv := make(map[convKey][]*pb.Message)
	for _, m := range msgs {
		if m.GetSeq() != 0 {
			k := convOf(m, me)
			if seen[id{k, m.GetSeq()}] {
				continue // a later copy of one already listed
			}
			seen[id{k, m.GetSeq()}] = true
			byConv[k] = append(byConv[k], m)
		}
		unique = append(unique, m)
	}
	msgs = unique
	for _, ms := range byConv {
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].GetSeq() < ms[j].GetSeq() })
	}
	out := make([]*pb.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.GetSeq() == 0 {
			out = append(out, m)
			continue
		}
		k := convOf(m, me)
		out = append(out, byConv[k][0])
		byConv[k] = byConv[k][1:]
	}
	return out
}

// deliverLocked reports m to the listeners unless it was delivered before.
// c.dmu must be held.
func (c *Client) deliverLocked(m *pb.Message) {
	if m.GetSeq() == 0 { // online_user_only: never stored, never synced
		c.emitNewMessage(messageFromPB(m, c.userID))
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
			return // sent by this client: SendMessage returned it
		}
	}
	c.emitNewMessage(messageFromPB(m, c.userID))
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
