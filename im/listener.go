package im

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
)

// AdvancedMsgListener receives pushed messages and read receipts. Embed
// BaseAdvancedMsgListener to implement only some methods. A listener may
// also implement SelfReceiptListener.
type AdvancedMsgListener interface {
	// OnRecvNewMessage reports a message that reached this user: new ones as
	// they are sent, and at every (re)connection the stored ones this client
	// has not seen yet. Each stored message is reported at most once per Client.
	OnRecvNewMessage(msg *Message)
	// OnRecvMessageReadReceipts reports new read counts (group) or peer read
	// state (C2C) of messages this user sent with NeedReadReceipt.
	OnRecvMessageReadReceipts(receipts []*MessageReceipt)
	// OnRecvC2CReadReceipt reports that a peer marked the C2C conversation
	// read (MarkC2CMessageAsRead): UserID is the reader, Timestamp the time up
	// to which everything is read.
	OnRecvC2CReadReceipt(receipts []*MessageReceipt)
}

// BaseAdvancedMsgListener implements AdvancedMsgListener with methods that
// do nothing; embed it and override what you need.
type BaseAdvancedMsgListener struct{}

// OnRecvNewMessage does nothing.
func (BaseAdvancedMsgListener) OnRecvNewMessage(*Message) {}

// OnRecvMessageReadReceipts does nothing.
func (BaseAdvancedMsgListener) OnRecvMessageReadReceipts([]*MessageReceipt) {}

// OnRecvC2CReadReceipt does nothing.
func (BaseAdvancedMsgListener) OnRecvC2CReadReceipt([]*MessageReceipt) {}

var _ AdvancedMsgListener = BaseAdvancedMsgListener{}

// SelfReceiptListener may be implemented by an AdvancedMsgListener to learn
// about read receipts this same user sent from another device (so that a UI
// can stop asking for them). The messages carry MsgID, Seq and UserID or
// GroupID, with ReceiptSent set.
type SelfReceiptListener interface {
	OnRecvSelfReadReceipts(msgs []*Message)
}

// GroupListener receives membership changes of the user's groups.
type GroupListener interface {
	OnGroupEvent(ev *GroupEvent)
}

// ConnListener follows the state of the client's connection.
type ConnListener interface {
	// OnConnected reports a successful login (first or after a reconnection).
	OnConnected()
	// OnDisconnected reports that the connection was lost or closed; err
	// says why (an *Error for a server kickoff).
	OnDisconnected(err error)
	// OnReconnecting reports the start of a reconnection attempt.
	OnReconnecting()
}

// listeners holds the registered listeners. Callbacks take a snapshot and
// run without any lock held.
type listeners struct {
	mu       sync.Mutex
	advanced []AdvancedMsgListener
	group    []GroupListener
	conn     []ConnListener
}

func same(a, b any) (eq bool) {
	defer func() {
		if recover() != nil { // uncomparable dynamic types
			eq = false
		}
	}()
	return a == b
}

func add[T any](mu *sync.Mutex, s *[]T, l T) {
	mu.Lock()
	defer mu.Unlock()
	for _, x := range *s {
		if same(x, l) {
			return
		}
	}
	*s = append(*s, l)
}

func remove[T any](mu *sync.Mutex, s *[]T, l T) {
	mu.Lock()
	defer mu.Unlock()
	out := (*s)[:0:0]
	for _, x := range *s {
		if !same(x, l) {
			out = append(out, x)
		}
	}
	*s = out
}

func snapshot[T any](mu *sync.Mutex, s []T) []T {
	mu.Lock()
	defer mu.Unlock()
	return s // never mutated in place: add appends to a fresh or unshared tail, remove copies
}

// AddAdvancedMsgListener registers l; adding the same listener twice has no
// effect. Events are held until the first listener of any kind is added, so
// a listener added right after Dial sees the messages synced at login.
func (c *Client) AddAdvancedMsgListener(l AdvancedMsgListener) {
	if l == nil {
		return
	}
	add(&c.ls.mu, &c.ls.advanced, l)
	c.q.release()
}

// RemoveAdvancedMsgListener unregisters l. It gets no event dispatched after
// the call returns (except one whose callback is already running).
func (c *Client) RemoveAdvancedMsgListener(l AdvancedMsgListener) {
	remove(&c.ls.mu, &c.ls.advanced, l)
}

// AddGroupListener registers l for group membership events.
func (c *Client) AddGroupListener(l GroupListener) {
	if l == nil {
		return
	}
	add(&c.ls.mu, &c.ls.group, l)
	c.q.release()
}

// RemoveGroupListener unregisters l.
func (c *Client) RemoveGroupListener(l GroupListener) {
	remove(&c.ls.mu, &c.ls.group, l)
}

// AddConnListener registers l for connection state changes.
func (c *Client) AddConnListener(l ConnListener) {
	if l == nil {
		return
	}
	add(&c.ls.mu, &c.ls.conn, l)
	c.q.release()
}

// RemoveConnListener unregisters l.
func (c *Client) RemoveConnListener(l ConnListener) {
	remove(&c.ls.mu, &c.ls.conn, l)
}

func (c *Client) addAny(l any) {
	if a, ok := l.(AdvancedMsgListener); ok {
		add(&c.ls.mu, &c.ls.advanced, a)
	}
	if g, ok := l.(GroupListener); ok {
		add(&c.ls.mu, &c.ls.group, g)
	}
	if cl, ok := l.(ConnListener); ok {
		add(&c.ls.mu, &c.ls.conn, cl)
	}
	c.q.release()
}

func (c *Client) advancedListeners() []AdvancedMsgListener {
	return snapshot(&c.ls.mu, c.ls.advanced)
}

// The emit functions queue a callback for the dispatcher. The listener set is
// read when the callback runs, so a removed listener gets no later events.

// emitNewMessage queues m for the listeners; a stored message (k set)
// counts as handed to the application, to be acknowledged, once they ran.
func (c *Client) emitNewMessage(m *Message, k convKey) {
	c.q.push(func() {
		for _, l := range c.advancedListeners() {
			l.OnRecvNewMessage(m)
		}
		if m.Seq > 0 {
			c.handed(k, m.Seq)
		}
	})
}

func (c *Client) emitReceipts(rs []*MessageReceipt) {
	c.q.push(func() {
		for _, l := range c.advancedListeners() {
			l.OnRecvMessageReadReceipts(rs)
		}
	})
}

func (c *Client) emitC2CRead(rs []*MessageReceipt) {
	c.q.push(func() {
		for _, l := range c.advancedListeners() {
			l.OnRecvC2CReadReceipt(rs)
		}
	})
}

func (c *Client) emitSelfReceipts(ms []*Message) {
	c.q.push(func() {
		for _, l := range c.advancedListeners() {
			if s, ok := l.(SelfReceiptListener); ok {
				s.OnRecvSelfReadReceipts(ms)
			}
		}
	})
}

func (c *Client) emitGroupEvent(ev *GroupEvent) {
	c.q.push(func() {
		for _, l := range snapshot(&c.ls.mu, c.ls.group) {
			l.OnGroupEvent(ev)
		}
	})
}

func (c *Client) emitConn(f func(ConnListener)) {
	c.q.push(func() {
		for _, l := range snapshot(&c.ls.mu, c.ls.conn) {
			f(l)
		}
	})
}

// maxHeld bounds the events kept while no listener has been added yet; the
// oldest are dropped beyond it.
const maxHeld = 10000

// queue is the unbounded FIFO of callbacks between the connection
// goroutines (which never block on it) and the dispatcher.
type queue struct {
	mu     sync.Mutex
	items  []func()
	held   bool // no listener added yet
	closed bool
	wake   chan struct{}
}

func newQueue(held bool) *queue {
	return &queue{held: held, wake: make(chan struct{}, 1)}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) push(f func()) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.held && len(q.items) >= maxHeld {
		q.items = q.items[1:]
	}
	q.items = append(q.items, f)
	q.mu.Unlock()
	q.signal()
}

// isHeld reports whether no listener was added yet.
func (q *queue) isHeld() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held
}

func (q *queue) release() {
	q.mu.Lock()
	q.held = false
	q.mu.Unlock()
	q.signal()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.mu.Unlock()
	q.signal()
}

// next blocks until a callback can run; ok is false once the queue is closed.
func (q *queue) next() (f func(), ok bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		if !q.held && len(q.items) > 0 {
			f = q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return f, true
		}
		q.mu.Unlock()
		<-q.wake
	}
}

// dispatch runs callbacks one at a time, in order, until the queue closes.
// It records its goroutine id before the first callback only: goid costs a
// stack trace, and a client whose events are never dispatched (no listener)
// need not pay it.
func (c *Client) dispatch() {
	for {
		f, ok := c.q.next()
		if !ok {
			return
		}
		if c.dispatcherGID.Load() == 0 {
			c.dispatcherGID.Store(goid())
		}
		f()
	}
}

// inCallback reports whether the caller is a listener callback, i.e. runs on
// the dispatcher goroutine. Before the first callback it answers false
// without computing the caller's goroutine id.
func (c *Client) inCallback() bool {
	gid := c.dispatcherGID.Load()
	return gid != 0 && gid == goid()
}

// goid returns the current goroutine's id, used only so that Close called
// from a callback does not wait for the dispatcher running it.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	n, _ := strconv.ParseUint(string(b), 10, 64)
	return n
}
