package messages

import (
	"testing"

	"github.com/readmark/readmark/internal/receipts"
)

func TestMsgCacheEvictsLeastRecent(t *testing.T) {
	c := newMsgCache(2)
	c.put(receipts.Msg{Conv: "g:a", Seq: 1, ID: "1"})
	c.put(receipts.Msg{Conv: "g:a", Seq: 2, ID: "2"})
	if _, ok := c.get("g:a", 1); !ok { // 1 becomes the most recent
		t.Fatal("seq 1 missing")
	}
	c.put(receipts.Msg{Conv: "g:a", Seq: 3, ID: "3"})
	for _, tt := range []struct {
		seq  uint64
		want bool
	}{{1, true}, {2, false}, {3, true}} {
		if m, ok := c.get("g:a", tt.seq); ok != tt.want || (ok && m.Seq != tt.seq) {
			t.Errorf("seq %d: got %v %v, want present=%v", tt.seq, m, ok, tt.want)
		}
	}
	if _, ok := c.get("g:b", 1); ok {
		t.Error("conversations mixed up")
	}
}

// TestMsgCacheSharedGets: lookups share the lock (every receipt makes
// them), and eviction still ends when every entry was used.
func TestMsgCacheSharedGets(t *testing.T) {
	c := newMsgCache(2)
	c.put(receipts.Msg{Conv: "g:a", Seq: 1})
	c.put(receipts.Msg{Conv: "g:a", Seq: 2})
	c.mu.RLock() // another lookup in progress
	for _, seq := range []uint64{1, 2} {
		if _, ok := c.get("g:a", seq); !ok {
			t.Fatalf("seq %d missing", seq)
		}
	}
	c.mu.RUnlock()
	c.put(receipts.Msg{Conv: "g:a", Seq: 3})
	if n := c.ll.Len(); n != 2 || len(c.items) != 2 {
		t.Fatalf("%d entries listed, %d mapped; want 2", n, len(c.items))
	}
	if _, ok := c.get("g:a", 3); !ok {
		t.Fatal("the newest entry was evicted")
	}
}
