package receipts

import (
	"sync"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// coalescer limits receipt pushes to one per message per window. The first
// receipt of a quiet message is pushed at once; later ones within the window
// replace each other and the newest is pushed when the window ends. Pushes of
// one message happen in order under mu, so counts never go backwards.
type coalescer struct {
	pusher Pusher
	window time.Duration

	mu      sync.Mutex
	entries map[msgKey]*coEntry
	nextDue time.Time // when the loop will next wake (zero: idle)

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type coEntry struct {
	sender  string
	last    time.Time          // last push
	pending *pb.MessageReceipt // newest receipt not yet pushed
	due     time.Time          // when pending goes out
}

// noteItem is one message's receipt to deliver to its sender.
type noteItem struct {
	key    msgKey
	sender string
	r      *pb.MessageReceipt
}

func newCoalescer(p Pusher, window time.Duration) *coalescer {
	c := &coalescer{
		pusher:  p,
		window:  window,
		entries: make(map[msgKey]*coEntry),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.loop()
	return c
}

// note takes the receipts of one group commit, in commit order.
func (c *coalescer) note(items []noteItem) {
	if len(items) == 0 {
		return
	}
	now := time.Now()
	var out map[string][]*pb.MessageReceipt
	signal := false
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		e := c.entries[it.key]
		switch {
		case e == nil:
			c.entries[it.key] = &coEntry{sender: it.sender, last: now}
		case e.pending != nil:
			e.pending = it.r
			continue
		case now.Sub(e.last) >= c.window:
			e.last = now
		default:
			e.pending = it.r
			e.due = e.last.Add(c.window)
			if c.nextDue.IsZero() || e.due.Before(c.nextDue) {
				signal = true
			}
			continue
		}
		if out == nil {
			out = make(map[string][]*pb.MessageReceipt)
		}
		out[it.sender] = append(out[it.sender], it.r)
		if c.nextDue.IsZero() {
			signal = true // so the loop forgets the entry later
		}
	}
	c.pushLocked(out)
	if signal {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// pushLocked sends one frame per sender. c.mu must be held.
func (c *coalescer) pushLocked(out map[string][]*pb.MessageReceipt) {
	for sender, rs := range out {
		c.pusher.Push(sender, &pb.ServerFrame{Body: &pb.ServerFrame_Receipts_{
			Receipts_: &pb.ReceiptsPush{Receipts: rs},
		}})
	}
}

func (c *coalescer) loop() {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		next := c.flush(false)
		var tc <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tc = timer.C
		}
		select {
		case <-tc:
		case <-c.wake:
			timer.Stop()
		case <-c.stop:
			timer.Stop()
			c.flush(true)
			return
		}
	}
}

// flush pushes due receipts (all, if final), forgets quiet entries and
// returns when it should run next (zero: nothing to wait for).
func (c *coalescer) flush(final bool) time.Time {
	now := time.Now()
	var out map[string][]*pb.MessageReceipt
	var next time.Time
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.pending != nil {
			if final || !e.due.After(now) {
				if out == nil {
					out = make(map[string][]*pb.MessageReceipt)
				}
				out[e.sender] = append(out[e.sender], e.pending)
				e.pending = nil
				e.last = now
			} else {
				if next.IsZero() || e.due.Before(next) {
					next = e.due
				}
				continue
			}
		}
		forget := e.last.Add(c.window)
		if !forget.After(now) {
			delete(c.entries, k)
			continue
		}
		if next.IsZero() || forget.Before(next) {
			next = forget
		}
	}
	c.pushLocked(out)
	c.nextDue = next
	return next
}

func (c *coalescer) close() {
	close(c.stop)
	<-c.done
}

// drop pushes the pending receipts of the conversations for which in is
// true at once and forgets them: their partition moves to another node,
// whose coalescer takes over.
func (c *coalescer) drop(in func(conv string) bool) {
	var out map[string][]*pb.MessageReceipt
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if !in(k.conv) {
			continue
		}
		if e.pending != nil {
			if out == nil {
				out = make(map[string][]*pb.MessageReceipt)
			}
			out[e.sender] = append(out[e.sender], e.pending)
		}
		delete(c.entries, k)
	}
	c.pushLocked(out)
}
