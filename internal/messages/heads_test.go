package messages

import "testing"

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
