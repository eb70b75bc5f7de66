package messages

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
)

func TestKnownHeads(t *testing.T) {
	h := newKnownHeads(2)
	h.note("a", 5)
	h.note("a", 3) // heads never fall
	h.noteEach([]string{"b", "z"}, []uint64{7, 0})
	for _, tt := range []struct {
		key  string
		seq  uint64
		want bool
	}{
		{"a", 5, true},
		{"a", 6, false},
		{"b", 7, true},
		{"z", 1, false}, // a head of 0 is not recorded
		{"c", 1, false},
	} {
		if got := h.reached(tt.key, tt.seq); got != tt.want {
			t.Errorf("reached(%s, %d) = %v, want %v", tt.key, tt.seq, got, tt.want)
		}
	}
	h.note("a", 9) // known: no room needed
	if !h.reached("a", 9) || !h.reached("b", 7) {
		t.Fatal("raising a known head forgot the others")
	}
	h.note("c", 2) // full: forgets the others to make room
	if !h.reached("c", 2) || h.reached("a", 1) || len(h.m) != 1 {
		t.Fatalf("after a note past the bound: %v, want c only", h.m)
	}
}

// blockingHeads is a store whose LastKeys counts its calls and waits until
// gate is closed: a head read under way.
type blockingHeads struct {
	storage.Store
	calls atomic.Int32
	gate  chan struct{}
}

func (s *blockingHeads) LastKeys(ctx context.Context, prefixes [][]byte) ([][]byte, error) {
	s.calls.Add(1)
	last, err := s.Store.LastKeys(ctx, prefixes) // what the store holds as the read begins
	<-s.gate
	return last, err
}

// TestKnownHeadsReadOnce: acks needing a conversation's head while a read
// of it is under way wait for that read instead of making their own; one
// acking beyond what that read found reads again.
func TestKnownHeadsReadOnce(t *testing.T) {
	st := openStore(t)
	key := conv.Group("g")
	store := func(upTo uint64) {
		b := &storage.Batch{}
		b.Set(conv.MessageKey(key, upTo), []byte("m"))
		if err := st.Apply(context.Background(), b, false); err != nil {
			t.Fatal(err)
		}
	}
	store(1)
	store(2)
	synctest.Test(t, func(t *testing.T) {
		bs := &blockingHeads{Store: st, gate: make(chan struct{})}
		h := newKnownHeads(10)
		ack := func(seq uint64) chan uint64 {
			out := make(chan uint64, 1)
			go func() {
				heads, err := h.read(context.Background(), bs, []string{key}, []uint64{seq})
				if err != nil {
					t.Error(err)
				}
				out <- heads[0]
			}()
			return out
		}
		first := ack(2)
		synctest.Wait() // its read is under way
		var joined []chan uint64
		for range 5 {
			joined = append(joined, ack(2))
		}
		beyond := ack(3) // acks a message stored after the read began
		synctest.Wait()
		if n := bs.calls.Load(); n != 1 {
			t.Fatalf("%d head reads under way for 7 acks of one conversation, want 1", n)
		}
		store(3)
		close(bs.gate)
		for _, c := range append(joined, first) {
			if head := <-c; head != 2 {
				t.Fatalf("head %d, want 2 (as the read found it)", head)
			}
		}
		if head := <-beyond; head != 3 {
			t.Fatalf("the ack beyond the read's head got %d, want 3 (read again)", head)
		}
		if n := bs.calls.Load(); n != 2 {
			t.Fatalf("%d head reads in all, want 2", n)
		}
	})
}
