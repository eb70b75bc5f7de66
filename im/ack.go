package im

import (
	"context"
	"math"
	"sync"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// ackDelay is how long the client collects handed messages before it
// acknowledges them: one AckRequest per ackDelay at most. A second keeps
// acks a small share of a busy server's requests; what a lost second costs
// is a repeat after the next login, dropped by seq.
const ackDelay = time.Second

// maxCursorsPerFrame keeps a request's cursors well within the 64 KiB frame
// limit in either encoding (a JSON cursor with a 64-byte ID is ~110 bytes).
const maxCursorsPerFrame = 256

// ack sends cursors in AckRequests of at most maxCursorsPerFrame. With
// noReply the server answers none of them: ack returns once they are
// written, and a failure is only the server's to see. Without, it waits for
// the answers, so the server has applied them when it returns.
func (s *session) ack(ctx context.Context, cursors []*pb.SyncCursor, noReply bool) error {
	for len(cursors) > 0 {
		n := min(len(cursors), maxCursorsPerFrame)
		f := &pb.ClientFrame{Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{Cursors: cursors[:n], NoReply: noReply}}}
		var err error
		if noReply {
			err = s.send(ctx, f)
		} else {
			var sent bool
			if _, err, sent = s.roundTrip(ctx, f); err == nil && !sent {
				err = errUnavailable("connection lost")
			}
		}
		if err != nil {
			return err
		}
		cursors = cursors[n:]
	}
	return nil
}

// acks tracks what the application was handed and what the server was told.
// Its lock is taken alone (see Client).
type acks struct {
	mu     sync.Mutex
	handed map[convKey]uint64
	acked  map[convKey]uint64 // in a frame written (or an ack answered)
	// riding: on a frame queued but not written yet, so that the next
	// request or the acker does not send the same again.
	riding  map[convKey]uint64
	due     bool          // handed may hold seqs neither acked nor riding
	wake    chan struct{} // capacity 1
	started bool          // the acker runs
	closed  bool          // Close began: start no acker
}

func newAcks() *acks {
	return &acks{
		handed: make(map[convKey]uint64),
		acked:  make(map[convKey]uint64),
		riding: make(map[convKey]uint64),
		wake:   make(chan struct{}, 1),
	}
}

// take returns up to n cursors to acknowledge and marks them riding: per
// conversation the highest seq handed, where it is above what was
// acknowledged and, unless all, above what rides already. The periodic ack
// and a request's ride take what is due; Close takes all.
func (a *acks) take(all bool, n int) []*pb.SyncCursor {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !all && !a.due {
		return nil // a request costs no walk of handed while nothing is due
	}
	var cursors []*pb.SyncCursor
	for k, seq := range a.handed {
		if seq <= a.acked[k] || !all && seq <= a.riding[k] {
			continue
		}
		if len(cursors) == n {
			return cursors // still due: the rest
		}
		cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
		a.riding[k] = max(a.riding[k], seq)
	}
	a.due = false
	return cursors
}

// sent records that cursors reached the server: their frame was written
// (or answered).
func (a *acks) sent(cursors []*pb.SyncCursor) {
	if len(cursors) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cur := range cursors {
		k := convFromPB(cur.GetConversation())
		a.acked[k] = max(a.acked[k], cur.GetSeq())
		if a.riding[k] <= cur.GetSeq() {
			delete(a.riding, k)
		}
	}
}

// unsent records that the frame with cursors was not written: they are due
// again, and the acker sends them unless a request takes them first.
func (a *acks) unsent(cursors []*pb.SyncCursor) {
	if len(cursors) == 0 {
		return
	}
	a.mu.Lock()
	for _, cur := range cursors {
		if k := convFromPB(cur.GetConversation()); a.riding[k] <= cur.GetSeq() {
			delete(a.riding, k)
		}
	}
	a.due = true
	a.mu.Unlock()
	a.poke()
}

// handAll records cursors as handed, for Close of a client without
// listeners.
func (a *acks) handAll(cursors []*pb.SyncCursor) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cur := range cursors {
		if k := convFromPB(cur.GetConversation()); cur.GetSeq() > a.handed[k] {
			a.handed[k] = cur.GetSeq()
			a.due = true
		}
	}
}

// newSession makes everything handed due again for a new session: what
// rode on frames of the ended one that were never written, and what was
// written but may have been lost with the connection. The sync cursors do
// not acknowledge (no_ack), so the first requests of the new session carry
// it, or the acker sends it.
func (a *acks) newSession() {
	a.mu.Lock()
	clear(a.riding)
	clear(a.acked)
	due := len(a.handed) > 0
	a.due = due
	a.mu.Unlock()
	if due {
		a.poke()
	}
}

// poke wakes the acker.
func (a *acks) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// handed records that the listeners have seen the stored message seq of
// conversation k (or that it was this client's own), and wakes the acker,
// started by the first call: a client that is never handed anything (no
// listener, as a load tool's) runs no acker goroutine and timer.
// It runs on the dispatcher goroutine, in delivery order.
func (c *Client) handed(k convKey, seq uint64) {
	a := c.acks
	a.mu.Lock()
	if seq > a.handed[k] {
		a.handed[k] = seq
		a.due = true
	}
	if !a.started && !a.closed {
		a.started = true
		c.wg.Add(1) // under a.mu: before Close's wg.Wait (see stopAcker)
		go c.acker()
	}
	a.mu.Unlock()
	a.poke()
}

// stopAcker keeps handed from starting an acker once Close waits for the
// client's goroutines.
func (c *Client) stopAcker() {
	c.acks.mu.Lock()
	c.acks.closed = true
	c.acks.mu.Unlock()
}

// acker sends the acknowledgements that no request carried (see
// session.prepare), at most one AckRequest per ackDelay, until the client
// closes.
func (c *Client) acker() {
	defer c.wg.Done()
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.acks.wake:
		}
		t.Reset(ackDelay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c.sendAcks(c.ctx, false)
	}
}

// sendAcks tells the server, on the current session, the highest seq handed
// per conversation where it grew since the last acknowledgement, in
// AckRequests with no_reply: unconfirmed, as an answer would cost the server
// a write, and a lost ack only a repeat, dropped by seq. The acker's sends
// what no request took on its way; Close's (all) also what rides on frames
// not written yet, which the close may drop. Without a session it does
// nothing: the next login makes it all due again (newSession).
func (c *Client) sendAcks(ctx context.Context, all bool) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return
	}
	cursors := c.acks.take(all, math.MaxInt)
	if len(cursors) == 0 {
		return
	}
	if err := s.ack(ctx, cursors, true); err != nil {
		c.log.Debug("im: acknowledgement not sent", "err", err)
		c.acks.unsent(cursors)
		return
	}
	c.acks.sent(cursors)
}
