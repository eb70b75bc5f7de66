package page

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

func TestBudget(t *testing.T) {
	controls := &pb.Message{MsgId: "m", Text: strings.Repeat("\x01", 12*1024)}
	plain := &pb.Message{MsgId: "m", Text: strings.Repeat("a", 12*1024)}
	tests := []struct {
		name string
		json bool
		item *pb.Message
	}{
		{"binary plain", false, plain},
		{"binary control characters", false, controls},
		{"json plain", true, plain},
		{"json control characters", true, controls},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.json)
			page := &pb.HistoryResponse{}
			for b.Take(tt.item) {
				page.Messages = append(page.Messages, tt.item)
			}
			var size int
			if tt.json {
				data, err := protojson.Marshal(&pb.ServerFrame{Id: 1 << 60, Body: &pb.ServerFrame_History{History: page}})
				if err != nil {
					t.Fatal(err)
				}
				size = len(data)
			} else {
				size = proto.Size(&pb.ServerFrame{Id: 1 << 60, Body: &pb.ServerFrame_History{History: page}})
			}
			if size > MaxFrameBytes {
				t.Fatalf("page of %d items is %d bytes, over %d", len(page.Messages), size, MaxFrameBytes)
			}
			// Full: one more item would not have fitted under the limit
			// less the reserve.
			if size+b.size(tt.item) < MaxFrameBytes-reserve {
				t.Fatalf("page of %d items (%d bytes) stopped early", len(page.Messages), size)
			}
		})
	}
}

func TestFirstItemAlwaysFits(t *testing.T) {
	huge := &pb.Message{Text: strings.Repeat("\x00", MaxFrameBytes)}
	b := New(true)
	if !b.Take(huge) {
		t.Fatal("the first item was refused")
	}
	if b.Take(&pb.Message{Text: "x"}) {
		t.Fatal("an item fitted after the budget was spent")
	}
}
