package messages

import (
	"container/list"
	"sync"

	"github.com/readmark/readmark/internal/receipts"
)

// msgCache keeps the receipt-relevant part of recently sent or resolved
// messages, so that receipts for a fresh message (the common case: everyone
// reads what was just sent) do not read and decode it from storage each time.
// Only committed messages enter it. mu is a leaf lock.
type msgCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recent; values are *receipts.Msg
	items map[msgKey]*list.Element
}

type msgKey struct {
	conv string
	seq  uint64
}

func newMsgCache(max int) *msgCache {
	return &msgCache{max: max, ll: list.New(), items: make(map[msgKey]*list.Element)}
}

func (c *msgCache) get(conv string, seq uint64) (receipts.Msg, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[msgKey{conv, seq}]
	if !ok {
		return receipts.Msg{}, false
	}
	c.ll.MoveToFront(e)
	return *e.Value.(*receipts.Msg), true
}

func (c *msgCache) put(m receipts.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := msgKey{m.Conv, m.Seq}
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[k] = c.ll.PushFront(&m)
	if c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		old := last.Value.(*receipts.Msg)
		delete(c.items, msgKey{old.Conv, old.Seq})
	}
}

// drop removes the messages of the conversations for which in is true.
func (c *msgCache) drop(in func(conv string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.items {
		if in(k.conv) {
			c.ll.Remove(e)
			delete(c.items, k)
		}
	}
}
