package messages

import "sync"

// knownHeads remembers, per conversation, a seq its head has reached, so
// that an ack up to it need not read the head. Heads only grow (messages
// are never deleted), so what any node saw once stays a lower bound, on
// every node and after a partition moves: the Ack of a node that does not
// own the conversation (whose recent-message cache never holds its new
// messages) reads a head once per new message, not once per ack.
//
// It learns from the heads Ack and Sync read and the messages this node
// stores. At most max conversations: when full it forgets all of them at
// once, which costs only the reads that refill it.
type knownHeads struct {
	mu  sync.RWMutex
	max int
	m   map[string]uint64
}

func newKnownHeads(max int) *knownHeads {
	return &knownHeads{max: max, m: make(map[string]uint64)}
}

// reached reports whether conversation key's head is at seq or beyond.
func (h *knownHeads) reached(key string, seq uint64) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return seq <= h.m[key]
}

// note records that conversation key's head has reached seq.
func (h *knownHeads) note(key string, seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noteLocked(key, seq)
}

// noteEach is note for each keys[i] and heads[i], under one lock.
func (h *knownHeads) noteEach(keys []string, heads []uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, key := range keys {
		h.noteLocked(key, heads[i])
	}
}

func (h *knownHeads) noteLocked(key string, seq uint64) {
	if seq == 0 {
		return
	}
	cur, ok := h.m[key]
	if !ok && len(h.m) >= h.max {
		clear(h.m)
	}
	if seq > cur {
		h.m[key] = seq
	}
}
