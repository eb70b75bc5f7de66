package messages

import (
	"context"
	"slices"
	"sync"

	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
)

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
	mu       sync.RWMutex
	max      int
	m        map[string]uint64
	inflight map[string]*headRead // reads under way, by conversation
}

// headRead is one read of a conversation's head that acks arriving while
// it is under way wait for, rather than read it again: a new group
// message is acked by its members all at once, and on a busy store each of
// those reads would queue behind the others.
type headRead struct {
	done chan struct{}
	head uint64
	err  error
}

func newKnownHeads(max int) *knownHeads {
	return &knownHeads{max: max, m: make(map[string]uint64), inflight: make(map[string]*headRead)}
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

// read returns the heads of conversations keys, at least seqs[i] where
// the head has reached it by now. The conversations no read is under way
// for are read in one lookup; the others wait for the read under way.
// That read may have begun before the message acked was stored: where it
// returns less than seqs[i], the head is read again. Every head read is
// noted.
func (h *knownHeads) read(ctx context.Context, s storage.Store, keys []string, seqs []uint64) ([]uint64, error) {
	heads := make([]uint64, len(keys))
	waits := make([]*headRead, len(keys))
	var mine []string
	var reads []*headRead
	h.mu.Lock()
	for i, k := range keys {
		r := h.inflight[k]
		if r == nil {
			r = &headRead{done: make(chan struct{})}
			h.inflight[k] = r
			mine, reads = append(mine, k), append(reads, r)
		}
		waits[i] = r
	}
	h.mu.Unlock()
	if len(mine) > 0 {
		// Not cancelled with this ack's request: others wait for it.
		got, err := conv.HeadSeqs(context.WithoutCancel(ctx), s, mine)
		h.mu.Lock()
		for j, k := range mine {
			r := reads[j]
			if err != nil {
				r.err = err
			} else {
				r.head = got[j]
				h.noteLocked(k, got[j])
			}
			delete(h.inflight, k)
			close(r.done)
		}
		h.mu.Unlock()
	}
	var again []int // waited for a read that fell short of the seq acked
	for i, r := range waits {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.err != nil {
			return nil, r.err
		}
		heads[i] = r.head
		if heads[i] < seqs[i] && !slices.Contains(reads, r) {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return heads, nil
	}
	ks := make([]string, len(again))
	for j, i := range again {
		ks[j] = keys[i]
	}
	got, err := conv.HeadSeqs(ctx, s, ks)
	if err != nil {
		return nil, err
	}
	h.noteEach(ks, got)
	for j, i := range again {
		heads[i] = got[j]
	}
	return heads, nil
}
