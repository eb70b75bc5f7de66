package im

import (
	"slices"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

func TestInSeqOrder(t *testing.T) {
	m := func(seq uint64, from, group, text string) *pb.Message {
		return &pb.Message{Seq: seq, Sender: from, Receiver: "me", GroupId: group, Text: text}
	}
	tests := []struct {
		name string
		in   []*pb.Message
		want []string
	}{
		{
			// The server synced from its delivery cursor, past pushes to this
			// session still in the buffer: the buffered ones go first.
			name: "synced newer than buffered",
			in:   []*pb.Message{m(4, "a", "", "a4"), m(5, "a", "", "a5"), m(2, "a", "", "a2"), m(3, "a", "", "a3")},
			want: []string{"a2", "a3", "a4", "a5"},
		},
		{
			name: "duplicates keep the first copy, conversations keep their slots",
			in:   []*pb.Message{m(1, "a", "", "a1"), m(1, "x", "g", "g1"), m(1, "a", "", "dup"), m(0, "a", "", "live"), m(2, "a", "", "a2")},
			want: []string{"a1", "g1", "live", "a2"},
		},
		{
			name: "conversations interleave independently",
			in:   []*pb.Message{m(2, "b", "", "b2"), m(9, "x", "g", "g9"), m(1, "b", "", "b1"), m(8, "x", "g", "g8")},
			want: []string{"b1", "g8", "b2", "g9"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, msg := range inSeqOrder(tt.in, "me") {
				got = append(got, msg.Text)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
