package receipts

import (
	"container/heap"
	"slices"
	"sync"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Default push rate per receiver: a burst of 3 frames, then one every 1/18 s
// rounded up to the nanosecond. Any one second (both ends included) then
// holds at most 3 + 17 = 20 frames: 18 intervals are just over a second.
// (Rounded down, 18 intervals fit in a second and it could hold 21.) A
// receipt held back waits at most one interval (~56 ms).
const (
	defaultPushBurst    = 3
	defaultPushInterval = time.Second/18 + 1
)

// coalescer pushes receipts to their receivers (the senders of the
// messages) through a token bucket per receiver. A receipt whose receiver
// has a token is pushed at once, together with anything held for that
// receiver; otherwise it is held, replacing an older held receipt of the same
// message, and everything held goes out in one frame when the next token
// comes. Pushes happen in order under mu, so counts never go backwards, and
// the newest receipt of every message is always pushed: the last push
// carries the exact final counts. Buckets are per engine: in a cluster each
// node limits the pushes for the conversations it owns.
//
// The bucket is kept as a theoretical arrival time (GCRA): a frame may go
// once now >= tat - tolerance, and moves tat to max(tat, now) + interval.
// Receivers are ordered by when they next need the flush loop (their next
// token if they hold receipts, else tat, when their bucket is full again
// and they are forgotten), so the loop looks only at receivers that are due.
type coalescer struct {
	pusher    Pusher
	now       func() time.Time
	onWait    func(time.Duration) // Config.OnPushWait; nil = not observed
	interval  time.Duration       // one token per interval
	tolerance time.Duration       // (burst-1) * interval

	mu      sync.Mutex
	rcv     map[string]*receiver
	queue   rcvQueue  // every receiver of rcv, by due
	nextDue time.Time // when the loop will next wake (zero: idle)
	epoch   uint64    // note calls, to find each receiver once per call

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// receiver is the bucket and the held receipts of one user.
type receiver struct {
	user  string
	tat   time.Time
	held  []noteItem     // newest receipt per message, in first-held order
	at    map[msgKey]int // index in held
	due   time.Time      // held: next token (tat - tolerance); else tat
	index int            // in queue
	noted uint64         // epoch of the last note call that touched it
}

// noteItem is one message's receipt to deliver to its sender.
type noteItem struct {
	key    msgKey
	sender string
	r      *pb.MessageReceipt
	held   time.Time // when the oldest receipt of the message now held came (hold)
}

// newCoalescer returns a coalescer whose flush loop is not started yet (see
// start). burst and interval are the bucket's size and refill period.
func newCoalescer(p Pusher, now func() time.Time, burst int, interval time.Duration) *coalescer {
	return &coalescer{
		pusher:    p,
		now:       now,
		interval:  interval,
		tolerance: time.Duration(burst-1) * interval,
		rcv:       make(map[string]*receiver),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// start runs the flush loop until close.
func (c *coalescer) start() { go c.loop() }

// note takes the receipts of one group commit, in commit order.
func (c *coalescer) note(items []noteItem) {
	if len(items) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.epoch++
	var touched []*receiver
	for _, it := range items {
		r := c.rcv[it.sender]
		if r == nil {
			r = &receiver{user: it.sender, index: -1}
			c.rcv[it.sender] = r
		}
		r.hold(it, now)
		if r.noted != c.epoch {
			r.noted = c.epoch
			touched = append(touched, r)
		}
	}
	for _, r := range touched {
		if next := r.tat.Add(-c.tolerance); next.After(now) {
			c.schedule(r, next)
		} else {
			c.send(r, now)
		}
	}
}

// hold keeps it as the newest receipt of its message, which has been held
// since the first of its receipts not pushed yet came.
func (r *receiver) hold(it noteItem, now time.Time) {
	if i, ok := r.at[it.key]; ok {
		it.held = r.held[i].held
		r.held[i] = it
		return
	}
	it.held = now
	if r.at == nil {
		r.at = make(map[msgKey]int)
	}
	r.at[it.key] = len(r.held)
	r.held = append(r.held, it)
}

// send pushes everything r holds in one frame and takes a token. c.mu must
// be held.
func (c *coalescer) send(r *receiver, now time.Time) {
	rs := make([]*pb.MessageReceipt, len(r.held))
	for i, it := range r.held {
		rs[i] = it.r
		if c.onWait != nil {
			c.onWait(now.Sub(it.held))
		}
	}
	c.pusher.Push(r.user, &pb.ServerFrame{Body: &pb.ServerFrame_Receipts_{
		Receipts_: &pb.ReceiptsPush{Receipts: rs},
	}})
	clear(r.held)
	r.held = r.held[:0]
	clear(r.at)
	if r.tat.Before(now) {
		r.tat = now
	}
	r.tat = r.tat.Add(c.interval)
	c.schedule(r, r.tat)
}

// schedule sets when r next needs the loop, and wakes the loop if that is
// earlier than it planned. c.mu must be held.
func (c *coalescer) schedule(r *receiver, due time.Time) {
	r.due = due
	if r.index < 0 {
		heap.Push(&c.queue, r)
	} else {
		heap.Fix(&c.queue, r.index)
	}
	if c.nextDue.IsZero() || due.Before(c.nextDue) {
		c.nextDue = due
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *coalescer) loop() {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var tc <-chan time.Time
		if next := c.flush(); !next.IsZero() {
			timer.Reset(next.Sub(c.now()))
			tc = timer.C
		}
		select {
		case <-tc:
		case <-c.wake:
			timer.Stop()
		case <-c.stop:
			timer.Stop()
			c.flushAll()
			return
		}
	}
}

// flush pushes the held receipts of receivers whose next token has come,
// forgets receivers whose bucket is full again, and returns when it should
// run next (zero: nothing to wait for).
func (c *coalescer) flush() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for len(c.queue) > 0 {
		r := c.queue[0]
		if r.due.After(now) {
			break
		}
		if len(r.held) > 0 {
			c.send(r, now) // moves r.due past now
			continue
		}
		heap.Pop(&c.queue)
		delete(c.rcv, r.user)
	}
	c.nextDue = time.Time{}
	if len(c.queue) > 0 {
		c.nextDue = c.queue[0].due
	}
	return c.nextDue
}

// flushAll pushes everything held, tokens or not (on close).
func (c *coalescer) flushAll() {
	c.sendIf(func(*receiver) bool { return true })
}

// sendIf pushes at once what every receiver for which f is true holds.
// It looks at every receiver: it is for closing and partition handoff only.
func (c *coalescer) sendIf(f func(*receiver) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, r := range c.rcv {
		if len(r.held) > 0 && f(r) {
			c.send(r, now)
		}
	}
}

func (c *coalescer) close() {
	close(c.stop)
	<-c.done
}

// drop pushes at once what receivers hold for the conversations for which
// in is true, beside anything else they hold: the partition moves to
// another node, whose coalescer takes over, and a receipt held here must
// not arrive after that node's newer counts.
func (c *coalescer) drop(in func(conv string) bool) {
	c.sendIf(func(r *receiver) bool {
		return slices.ContainsFunc(r.held, func(it noteItem) bool { return in(it.key.conv) })
	})
}

// rcvQueue is a min-heap of receivers by due.
type rcvQueue []*receiver

func (q rcvQueue) Len() int           { return len(q) }
func (q rcvQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q rcvQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

func (q *rcvQueue) Push(x any) {
	r := x.(*receiver)
	r.index = len(*q)
	*q = append(*q, r)
}

func (q *rcvQueue) Pop() any {
	old := *q
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	r.index = -1
	return r
}
