package multinode

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
)

func send(t *testing.T, c *im.Client, text, receiver, group string) *im.Message {
	t.Helper()
	m := c.CreateTextMessage(text)
	m.NeedReadReceipt = true
	out, err := c.SendMessage(ctxT(t), m, receiver, group, im.PriorityNormal, false)
	if err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return out
}

func find(ms []*im.Message, msgID string) *im.Message {
	for _, m := range ms {
		if m.MsgID == msgID {
			return m
		}
	}
	return nil
}

// TestThreeNodes is the read-receipt flow with every party on a different
// node: the sender on n0, reader a on n1, reader b on n2 with a second
// device on n0, and the sender's second device on n2. Several groups, so that their partitions are owned by
// different nodes and most requests are forwarded. Counts must be exact in
// pushes and pulls, from every node.
func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	owner, ro := c.dial(n0, "owner")
	a, ra := c.dial(n1, "a")
	b, rb := c.dial(n2, "b")
	b2, rb2 := c.dial(n0, "b")
	owner2, _ := c.dial(n2, "owner") // the sender's second device
	ctx := ctxT(t)

	const groups = 6
	for g := range groups {
		gid := fmt.Sprintf("accept-%d", g)
		if _, err := owner.CreateGroup(ctx, im.GroupWork, gid, gid, "a", "b"); err != nil {
			t.Fatalf("create %s: %v", gid, err)
		}
		msg := send(t, owner, "hello "+gid, "", gid)
		// Pushed to every device, whichever node it is on.
		for _, r := range []*recorder{ra, rb, rb2} {
			waitFor(t, 20*time.Second, "push of "+gid, func() bool { return find(r.messages(), msg.MsgID) != nil })
		}
		got := find(ra.messages(), msg.MsgID)
		if got.Seq != msg.Seq || got.GroupID != gid || got.Sender != "owner" {
			t.Fatalf("a got %+v, sent %+v", got, msg)
		}
		if err := a.SendMessageReadReceipts(ctx, []*im.Message{got}); err != nil {
			t.Fatalf("a reads %s: %v", gid, err)
		}
		waitFor(t, 20*time.Second, "receipt push 1/2", func() bool {
			r := ro.lastReceipt(msg.MsgID)
			return r != nil && r.ReadCount == 1 && r.UnreadCount == 1
		})
		// b reads on its second device (n0).
		if err := b2.SendMessageReadReceipts(ctx, []*im.Message{find(rb2.messages(), msg.MsgID)}); err != nil {
			t.Fatalf("b reads %s: %v", gid, err)
		}
		waitFor(t, 20*time.Second, "receipt push 2/2", func() bool {
			r := ro.lastReceipt(msg.MsgID)
			return r != nil && r.ReadCount == 2 && r.UnreadCount == 0
		})
		// Pulls agree, from both of the sender's devices.
		for _, cl := range []*im.Client{owner, owner2} {
			rs, err := cl.GetMessageReadReceipts(ctx, []*im.Message{msg})
			if err != nil {
				t.Fatalf("%s pulls receipts: %v", cl.UserID(), err)
			}
			if rs[0].ReadCount != 2 || rs[0].UnreadCount != 0 {
				t.Errorf("%s pulls %s: read %d unread %d, want 2/0", cl.UserID(), gid, rs[0].ReadCount, rs[0].UnreadCount)
			}
		}
		list, err := owner.GetGroupMessageReadMemberList(ctx, msg, im.ReadMembersFilterRead, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var readers []string
		for _, m := range list.Members {
			readers = append(readers, m.UserID)
		}
		slices.Sort(readers)
		if !slices.Equal(readers, []string{"a", "b"}) || !list.IsFinished {
			t.Errorf("read members of %s: %v (finished %v)", gid, readers, list.IsFinished)
		}
		// History from the node of each reader.
		for _, cl := range []*im.Client{a, b} {
			h, err := cl.GetGroupHistoryMessageList(ctx, gid, 10, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(h) != 1 || h[0].MsgID != msg.MsgID {
				t.Errorf("%s's history of %s: %d messages", cl.UserID(), gid, len(h))
			}
		}
	}

	// C2C across nodes: a (n1) → b (n2); b reads on n0; a learns it.
	m := send(t, a, "c2c across nodes", "b", "")
	waitFor(t, 20*time.Second, "c2c push", func() bool { return find(rb.messages(), m.MsgID) != nil })
	if err := b2.MarkC2CMessageAsRead(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "c2c read push", func() bool {
		for _, r := range ra.c2cReceipts() {
			if r.UserID == "b" && !r.Timestamp.IsZero() {
				return true
			}
		}
		return false
	})
	rs, err := a.GetMessageReadReceipts(ctx, []*im.Message{m})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].IsPeerRead {
		t.Errorf("a pulls its c2c receipt: %+v, want peer read", rs[0])
	}
	// Requests were forwarded (the partitions are spread over three nodes).
	var fwd float64
	for _, nd := range c.nodes {
		fwd += nd.metric("readmark_cluster_forwarded_served_total")
	}
	if fwd == 0 {
		t.Error("no request was forwarded between nodes")
	}
}
