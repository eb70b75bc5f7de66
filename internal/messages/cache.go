package messages

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/readmark/readmark/internal/receipts"
)

// msgCache keeps the receipt-relevant part of recently sent or resolved
// messages, so that receipts for a fresh message (the common case: everyone
// reads what was just sent) do not read and decode it from storage each time.
// Only committed messages enter it. mu is a leaf lock.
//
// Every receipt looks its messages up here, so get takes only a read lock:
// it marks the entry used instead of moving it, and eviction gives a used
// entry a second chance (CLOCK), which approximates least-recently-used.
type msgCache struct {
	mu    sync.RWMutex
	max   int
	ll    *list.List // front = most recently inserted or spared; values are *cacheEntry
	items map[msgKey]*list.Element
}

type cacheEntry struct {
	m    receipts.Msg
	used atomic.Bool // got since it was inserted or last spared
}

type msgKey struct {
	conv string
	seq  uint64
}

func newMsgCache(max int) *msgCache {
	return &msgCache{max: max, ll: list.New(), items: make(map[msgKey]*list.Element)}
}

func (c *msgCache) get(conv string, seq uint64) (receipts.Msg, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.items[msgKey{conv, seq}]
	if !ok {
		return receipts.Msg{}, false
	}
	ce := e.Value.(*cacheEntry)
	ce.used.Store(true)
	return ce.m, true
}

func (c *msgCache) put(m receipts.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := msgKey{m.Conv, m.Seq}
	if e, ok := c.items[k]; ok {
		e.Value.(*cacheEntry).used.Store(true)
		return
	}
	// Make room first, so that the new entry is not the one spared
	// entries rotate past. Ends: each turn evicts or clears a used mark.
	for c.ll.Len() >= c.max && c.ll.Len() > 0 {
		last := c.ll.Back()
		old := last.Value.(*cacheEntry)
		if old.used.Swap(false) {
			c.ll.MoveToFront(last)
			continue
		}
		c.ll.Remove(last)
		delete(c.items, msgKey{old.m.Conv, old.m.Seq})
	}
	c.items[k] = c.ll.PushFront(&cacheEntry{m: m})
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
