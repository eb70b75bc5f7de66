package messages

import (
	"context"
	"fmt"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/receipts"
)

// TestResolveOneCheckPerConversation: a receipt call's refs of one
// conversation are checked (membership, key) once, not once per ref, so
// resolving 20 cached messages allocates about the same as resolving one.
func TestResolveOneCheckPerConversation(t *testing.T) {
	ctx := context.Background()
	s := newNode(t, openStore(t))
	if _, err := s.cfg.Groups.Create(ctx, "alice", pb.GroupType_GROUP_TYPE_WORK, "g", "", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	var group, c2c []*pb.MessageRef
	for i := range 20 {
		m, err := s.Send(ctx, Caller{UserID: "alice"}, &pb.SendMessageRequest{
			GroupId: "g", Text: "hi", ClientMsgId: fmt.Sprint("g", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		group = append(group, &pb.MessageRef{Conversation: &pb.Conversation{GroupId: "g"}, MsgId: m.MsgId, Seq: m.Seq})
		m = sendC2C(t, s, "alice", "bob", fmt.Sprint("c", i))
		c2c = append(c2c, &pb.MessageRef{Conversation: &pb.Conversation{PeerId: "alice"}, MsgId: m.MsgId, Seq: m.Seq})
	}
	for _, tt := range []struct {
		name string
		refs []*pb.MessageRef
	}{{"group", group}, {"c2c", c2c}} {
		t.Run(tt.name, func(t *testing.T) {
			resolve := func(refs []*pb.MessageRef) func() {
				return func() {
					if _, err := s.Resolve(ctx, "bob", refs); err != nil {
						t.Fatal(err)
					}
				}
			}
			one := testing.AllocsPerRun(50, resolve(tt.refs[:1]))
			all := testing.AllocsPerRun(50, resolve(tt.refs))
			if all > one {
				t.Fatalf("resolving %d refs of one conversation: %.0f allocations, one ref: %.0f", len(tt.refs), all, one)
			}
		})
	}
}

// TestMarkReceiptSentAllocs: marking a page of one conversation builds
// its key once and its slices once, not per message.
func TestMarkReceiptSentAllocs(t *testing.T) {
	msgs := make([]*pb.Message, 20)
	wms := make([]uint32, len(msgs))
	for i := range msgs {
		msgs[i] = &pb.Message{MsgId: fmt.Sprint("m", i), Seq: uint64(i + 1), Sender: "alice", GroupId: "g", NeedReadReceipt: true}
		wms[i] = 2
	}
	sent := make([]bool, len(msgs))
	allocs := testing.AllocsPerRun(50, func() {
		if err := markReceiptSent("bob", msgs, wms, func(rms []receipts.Msg) ([]bool, error) {
			if rms[0].Conv != conv.Group("g") || rms[19].Conv != rms[0].Conv {
				t.Fatalf("conversation keys %q, %q", rms[0].Conv, rms[19].Conv)
			}
			return sent, nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	// The key, idx and rms; the check above allocates one more key.
	if allocs > 4 {
		t.Fatalf("%.0f allocations to mark %d messages", allocs, len(msgs))
	}
}

// BenchmarkSyncGroup20 is a fresh member's login sync: 20 new messages of
// one group.
func BenchmarkSyncGroup20(b *testing.B) {
	ctx := context.Background()
	s := newNode(b, openStore(b))
	if _, err := s.cfg.Groups.Create(ctx, "alice", pb.GroupType_GROUP_TYPE_WORK, "g", "", []string{"bob"}); err != nil {
		b.Fatal(err)
	}
	for i := range 20 {
		if _, err := s.Send(ctx, Caller{UserID: "alice"}, &pb.SendMessageRequest{
			GroupId: "g", Text: "hi", ClientMsgId: fmt.Sprint(i), NeedReadReceipt: true,
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := s.Sync(ctx, Caller{UserID: "bob"}, &pb.SyncRequest{})
		if err != nil || len(resp.Messages) != 20 {
			b.Fatalf("%d messages, %v", len(resp.GetMessages()), err)
		}
	}
}

// BenchmarkSyncIdle100 is a reconnecting device's sync when nothing is new,
// for a user in 100 groups: the cost that grows with the conversations.
func BenchmarkSyncIdle100(b *testing.B) {
	ctx := context.Background()
	s := newNode(b, openStore(b), func(c *Config) { c.Online = func(string) bool { return true } })
	for i := range 100 {
		g := fmt.Sprint("g", i)
		if _, err := s.cfg.Groups.Create(ctx, "alice", pb.GroupType_GROUP_TYPE_WORK, g, "", []string{"bob"}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Send(ctx, Caller{UserID: "alice"}, &pb.SendMessageRequest{GroupId: g, Text: "hi"}); err != nil {
			b.Fatal(err)
		}
	}
	phone := Caller{UserID: "bob", SessionID: 1, DeviceID: "phone"}
	first, err := s.Sync(ctx, phone, &pb.SyncRequest{})
	if err != nil || len(first.Messages) != 100 {
		b.Fatalf("%d messages, %v", len(first.GetMessages()), err)
	}
	req := &pb.SyncRequest{Cursors: first.Cursors}
	b.ReportAllocs()
	for b.Loop() {
		if resp, err := s.Sync(ctx, phone, req); err != nil || len(resp.Messages) != 0 {
			b.Fatalf("%d messages, %v", len(resp.GetMessages()), err)
		}
	}
}
