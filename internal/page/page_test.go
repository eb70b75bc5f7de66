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
			var msgs []*pb.Message
			for b.Take(tt.item) {
				msgs = append(msgs, tt.item)
			}
			frameSize := func(f *pb.ServerFrame) int {
				if !tt.json {
					return proto.Size(f)
				}
				data, err := protojson.Marshal(f)
				if err != nil {
					t.Fatal(err)
				}
				return len(data)
			}
			size := frameSize(&pb.ServerFrame{Id: 1 << 60, Body: &pb.ServerFrame_History{History: &pb.HistoryResponse{Messages: msgs}}})
			// A sync page also rides on a login response, whose own fields
			// share the frame.
			cursor := &pb.SyncCursor{Conversation: &pb.Conversation{GroupId: strings.Repeat("g", 64)}, Seq: 1 << 60}
			login := frameSize(&pb.ServerFrame{Id: 1 << 60, Body: &pb.ServerFrame_Login{Login: &pb.LoginResponse{
				ServerTimeMs: 1 << 60, SessionId: strings.Repeat("f", 16), ProtocolVersion: 1,
				Limits: &pb.Limits{MaxFrameBytes: 1 << 31, MaxTextBytes: 1 << 31, MaxCustomDataBytes: 1 << 31, MaxBatch: 1 << 31,
					MaxGroupMembers: 1 << 31, MaxMembersPerCall: 1 << 31, HeartbeatSeconds: 1 << 31, MaxServerFrameBytes: 1 << 31},
				Sync: &pb.SyncResponse{Messages: msgs, More: true, Cursors: []*pb.SyncCursor{cursor}},
			}}})
			for name, n := range map[string]int{"history": size, "login sync": login} {
				if n > MaxFrameBytes {
					t.Fatalf("%s page of %d items is %d bytes, over %d", name, len(msgs), n, MaxFrameBytes)
				}
			}
			// Full: one more item would not have fitted under the limit
			// less the reserve.
			if size+b.size(tt.item) < MaxFrameBytes-reserve {
				t.Fatalf("page of %d items (%d bytes) stopped early", len(msgs), size)
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
