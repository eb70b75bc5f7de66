package im

import (
	"context"
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
	mu      sync.Mutex
	handed  map[convKey]uint64
	acked   map[convKey]uint64
	wake    chan struct{} // capacity 1
	started bool          // the acker runs
	closed  bool          // Close began: start no acker
}

func newAcks() *acks {
	return &acks{
		handed: make(map[convKey]uint64),
		acked:  make(map[convKey]uint64),
		wake:   make(chan struct{}, 1),
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
	}
	if !a.started && !a.closed {
		a.started = true
		c.wg.Add(1) // under a.mu: before Close's wg.Wait (see stopAcker)
		go c.acker()
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// stopAcker keeps handed from starting an acker once Close waits for the
// client's goroutines.
func (c *Client) stopAcker() {
	c.acks.mu.Lock()
	c.acks.closed = true
	c.acks.mu.Unlock()
}

// acker sends the acknowledgements, at most one AckRequest per ackDelay,
// until the client closes.
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
		// Unconfirmed: an answer per second would cost the server a write
		// per client, and a lost ack only a repeat, dropped by seq.
		c.sendAcks(c.ctx, true)
	}
}

// sendAcks tells the server, on the current session, the highest seq handed
// per conversation where it grew since the last acknowledgement; noReply as
// in session.ack. Without a session it does nothing: the sync after the next
// login acknowledges.
func (c *Client) sendAcks(ctx context.Context, noReply bool) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return
	}
	a := c.acks
	a.mu.Lock()
	var cursors []*pb.SyncCursor
	for k, seq := range a.handed {
		if seq > a.acked[k] {
			cursors = append(cursors, &pb.SyncCursor{Conversation: k.pb(), Seq: seq})
		}
	}
	a.mu.Unlock()
	if len(cursors) == 0 {
		return
	}
	if err := s.ack(ctx, cursors, noReply); err != nil {
		c.log.Debug("im: acknowledgement not sent", "err", err)
		return
	}
	a.mu.Lock()
	for _, cur := range cursors {
		k := convFromPB(cur.GetConversation())
		a.acked[k] = max(a.acked[k], cur.GetSeq())
	}
	a.mu.Unlock()
}
