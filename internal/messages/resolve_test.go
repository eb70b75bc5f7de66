package messages

import (
	"context"
	"fmt"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
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
