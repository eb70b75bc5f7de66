package im

import (
	"context"
	"math"
	"sync"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// ackDelay is how long a handed message waits for a request to carry its
// acknowledgement before the acker sends an AckRequest for it: one
// AckRequest per ackDelay at most. A second keeps acks a small share of a
// busy server's requests; what a lost second costs is a repeat after the
// next login, dropped by seq. A client that reads and sends receipts
// acknowledges on its receipts alone.
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
	riding map[convKey]uint64
	// dueSince: the conversations whose handed seq is neither acked nor
	// riding, and since when (the zero time: due at once).
	dueSince map[convKey]time.Time
	delay    time.Duration // ackDelay; tests stretch it
	wake     chan struct{} // capacity 1
	started  bool          // the acker runs
	closed   bool          // Close began: start no acker
}

func newAcks() *acks {
	return &acks{
		handed:   make(map[convKey]uint64),
		acked:    make(map[convKey]uint64),
		riding:   make(map[convKey]uint64),
		dueSince: make(map[convKey]time.Time),
		delay:    ackDelay,
		wake:     make(chan struct{}, 1),
	}
}

// take returns up to n cursors to acknowledge and marks them riding: per
// conversation the highest seq handed, where it is due (above what was
// acknowledged and what rides already) and was due at dueBy or earlier. A
// request's ride takes what is due (dueBy in the future), the acker what
// no request carried for ackDelay.
func (a *acks) take(dueBy time.Time, n int) []*pb.SyncCursor {
	a.mu.Lock()
	defer a.mu.Unlock()
	var cursors []*pb.SyncCursor
	for k, since := range a.dueSince {
		if since.After(dueBy) {
			continue
		}
		if len(cursors) == n {
			break // still due: the rest
		}
		seq := a.handed[k]
		cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
		a.riding[k] = seq
		delete(a.dueSince, k)
	}
	return cursors
}

// anyDue is the dueBy of a take of everything due.
var anyDue = time.Unix(1<<40, 0)

// takeAll is take for Close: every conversation whose handed seq is above
// what was acknowledged, riding or not (what rides on frames not written
// yet may be dropped by the close).
func (a *acks) takeAll() []*pb.SyncCursor {
	a.mu.Lock()
	defer a.mu.Unlock()
	var cursors []*pb.SyncCursor
	for k, seq := range a.handed {
		if seq > a.acked[k] {
			cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
			a.riding[k] = seq
			delete(a.dueSince, k)
		}
	}
	return cursors
}

// oldestDue reports since when the longest-due conversation is due; false
// if none is.
func (a *acks) oldestDue() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var oldest time.Time
	found := false
	for _, since := range a.dueSince {
		if !found || since.Before(oldest) {
			oldest, found = since, true
		}
	}
	return oldest, found
}

// becameDue records that k is due from since, unless it already was.
// a.mu is held.
func (a *acks) becameDue(k convKey, since time.Time) {
	if _, ok := a.dueSince[k]; !ok {
		a.dueSince[k] = since
	}
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
			if a.handed[k] > a.acked[k] {
				a.becameDue(k, time.Time{}) // a request took it already: at once
			}
		}
	}
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
	now := time.Now()
	for k := range a.handed {
		a.becameDue(k, now)
	}
	due := len(a.handed) > 0
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
		if _, due := a.dueSince[k]; !due {
			a.dueSince[k] = time.Now()
		}
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
	sleep := func(d time.Duration) bool {
		t.Reset(d)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			return true
		}
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.acks.wake:
		}
		// Until nothing is due: wait until the longest-due conversation
		// has waited ackDelay for a request, send what has, then rest
		// ackDelay (one AckRequest per ackDelay at most).
		for {
			oldest, due := c.acks.oldestDue()
			if !due {
				break
			}
			if wait := time.Until(oldest.Add(c.acks.delay)); wait > 0 {
				if !sleep(wait) {
					return
				}
				continue // a request may have carried it meanwhile
			}
			c.sendAcks(c.ctx, false)
			if !sleep(c.acks.delay) {
				return
			}
		}
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
	var cursors []*pb.SyncCursor
	if all {
		cursors = c.acks.takeAll()
	} else {
		cursors = c.acks.take(time.Now().Add(-c.acks.delay), math.MaxInt)
	}
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
