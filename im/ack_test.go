package im

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// gate is a listener whose OnRecvNewMessage for seq 2 waits for release.
type gate struct {
	BaseAdvancedMsgListener
	release chan struct{}
}

func (g *gate) OnRecvNewMessage(m *Message) {
	if m.Seq == 2 {
		<-g.release
	}
}

// nextAck returns the next AckRequest the fake received.
func nextAck(t *testing.T, fs *fakeServer) *pb.AckRequest {
	t.Helper()
	ctx := ctxT(t)
	for {
		select {
		case f := <-fs.frames:
			if a := f.GetAck(); a != nil {
				return a
			}
		case <-ctx.Done():
			t.Fatal("no acknowledgement")
		}
	}
}

// TestAckAfterListeners: the device ID goes with the login, and a message
// is acknowledged only once the listeners have returned for it.
func TestAckAfterListeners(t *testing.T) {
	fs := newFake(t)
	g := &gate{release: make(chan struct{})}
	c := dial(t, fs, "bob", WithDeviceID("tablet-1"), WithListener(g))
	s := <-fs.ready
	if s.device != "tablet-1" {
		t.Fatalf("device_id %q at login", s.device)
	}
	for seq := range uint64(3) {
		s.push(newMsgFrame(pbMsg(seq+1, "alice", "bob", "", "m")))
	}
	want := func(a *pb.AckRequest, seq uint64) {
		t.Helper()
		cs := a.GetCursors()
		if len(cs) != 1 || cs[0].GetConversation().GetPeerId() != "alice" || cs[0].GetSeq() != seq {
			t.Fatalf("ack %v, want alice up to %d", cs, seq)
		}
	}
	want(nextAck(t, fs), 1) // 2 is still with the listener
	close(g.release)
	want(nextAck(t, fs), 3)
	c.Close()
}

func TestDefaultDeviceIDsDiffer(t *testing.T) {
	fs := newFake(t)
	dial(t, fs, "bob")
	dial(t, fs, "bob")
	a, b := <-fs.ready, <-fs.ready
	if a.device == "" || a.device == b.device {
		t.Fatalf("device IDs %q and %q", a.device, b.device)
	}
}

// TestNoAckerUntilHanded: a client that was handed nothing (no listener)
// runs no acker goroutine.
func TestNoAckerUntilHanded(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob")
	if _, err := c.CreateGroup(ctxT(t), GroupMeeting, "", "team"); err != nil { // the session is up
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if st := buf[:runtime.Stack(buf, true)]; bytes.Contains(st, []byte("im.(*Client).acker")) {
		t.Errorf("an acker runs for a client that was handed nothing")
	}
}

// TestAckerAsksNoReply: the acker's AckRequests ask for no answer and wait
// for none: with a server that answers no ack, it keeps acknowledging, and
// what it wrote counts as acknowledged (Close has nothing left to send).
func TestAckerAsksNoReply(t *testing.T) {
	fs := newFake(t)
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		if f.GetAck() == nil {
			fs.defaultHandle(s, f)
		}
	})
	c := dial(t, fs, "bob", WithListener(&BaseAdvancedMsgListener{}))
	s := <-fs.ready
	for seq := range uint64(2) {
		s.push(newMsgFrame(pbMsg(seq+1, "alice", "bob", "", "m")))
		a := nextAck(t, fs)
		if cs := a.GetCursors(); !a.GetNoReply() || len(cs) != 1 || cs[0].GetSeq() != seq+1 {
			t.Fatalf("acker sent %v, want alice up to %d with no_reply", a, seq+1)
		}
	}
	alice := convKey{peer: "alice"}
	checkFor(t, 10*time.Second, func() error {
		c.acks.mu.Lock()
		defer c.acks.mu.Unlock()
		if got := c.acks.acked[alice]; got != 2 {
			return fmt.Errorf("acknowledged up to %d after writing 2", got)
		}
		return nil
	})
	c.Close()
	for {
		select {
		case f := <-fs.frames:
			if f.GetAck() != nil {
				t.Fatalf("Close acknowledged again: %v", f)
			}
		default:
			return
		}
	}
}

// TestAckRidesOnRequests: once messages are handed over, the next request
// carries their acknowledgement (ClientFrame.acked), which counts as sent
// once the frame is written, and the acker sends no AckRequest for it; a
// request that would be over the frame limit with it goes alone, and the
// acker sends it. What no request carries still goes in an AckRequest.
func TestAckRidesOnRequests(t *testing.T) {
	// bigText makes a send's frame fit the fake's 64 KiB limit just alone
	// (its id takes at most 3 bytes), not with an acknowledgement.
	sendSize := func(text int) int {
		return proto.Size(&pb.ClientFrame{Id: 1 << 20, Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{
			Receiver: "carol", Text: strings.Repeat("x", text), ClientMsgId: newClientMsgID(),
		}}})
	}
	n := 65536 - sendSize(0)
	for sendSize(n) > 65536 {
		n--
	}
	bigText := strings.Repeat("x", n)
	for _, tc := range []struct {
		name    string
		request func(ctx context.Context, c *Client) error
		rides   bool
	}{
		{"mark read", func(ctx context.Context, c *Client) error { return c.MarkC2CMessageAsRead(ctx, "alice") }, true},
		{"send", func(ctx context.Context, c *Client) error {
			_, err := c.SendMessage(ctx, c.CreateTextMessage("hi"), "carol", "", PriorityDefault, false)
			return err
		}, true},
		{"send, too large with the ack", func(ctx context.Context, c *Client) error {
			_, err := c.SendMessage(ctx, c.CreateTextMessage(bigText), "carol", "", PriorityDefault, false)
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFake(t)
			c := dial(t, fs, "bob", WithListener(&BaseAdvancedMsgListener{}))
			s := <-fs.ready
			alice := convKey{peer: "alice"}
			counted := func(what string, m map[convKey]uint64, seq uint64) func() error {
				return func() error {
					c.acks.mu.Lock()
					defer c.acks.mu.Unlock()
					if got := m[alice]; got != seq {
						return fmt.Errorf("%s up to %d, want %d", what, got, seq)
					}
					return nil
				}
			}
			s.push(newMsgFrame(pbMsg(1, "alice", "bob", "", "m")))
			checkFor(t, 10*time.Second, counted("handed", c.acks.handed, 1))
			if err := tc.request(ctxT(t), c); err != nil {
				t.Fatal(err)
			}
			f := fs.waitFrame(t, func(f *pb.ClientFrame) bool {
				if f.GetAck() != nil && tc.rides {
					t.Fatalf("an AckRequest before the request: %v", f)
				}
				return f.GetMarkC2CRead() != nil || f.GetSendMessage() != nil
			})
			want := ""
			if tc.rides {
				want = "[alice:1]"
			}
			if got := cursorsString(f.GetAcked()); got != want {
				t.Fatalf("the request carried acked %s, want %q", got, want)
			}
			if !tc.rides {
				a := nextAck(t, fs)
				if got := cursorsString(a.GetCursors()); got != "[alice:1]" || !a.GetNoReply() {
					t.Fatalf("the acker sent %v, want alice:1 with no_reply", a)
				}
				return
			}
			checkFor(t, 10*time.Second, counted("acknowledged", c.acks.acked, 1))
			// The acker, woken by the handing, finds nothing left to send
			// when its period is up (an absence needs a bound).
			quiet := time.After(ackDelay + ackDelay/2)
			for done := false; !done; {
				select {
				case f := <-fs.frames:
					if f.GetAck() != nil {
						t.Fatalf("an AckRequest besides the carried ack: %v", f)
					}
				case <-quiet:
					done = true
				}
			}
			s.push(newMsgFrame(pbMsg(2, "alice", "bob", "", "m")))
			if got := cursorsString(nextAck(t, fs).GetCursors()); got != "[alice:2]" {
				t.Fatalf("with no request to carry it, the acker sent %s, want alice:2", got)
			}
		})
	}
}

// TestAckerLeavesRecentToRequests: the acker sends only what no request
// carried for ackDelay. A message handed shortly before its turn is left
// to the next request, as a reader's receipt soon follows the message:
// reading and sending receipts, a client sends no AckRequest at all.
func TestAckerLeavesRecentToRequests(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob", WithListener(&BaseAdvancedMsgListener{}))
	const delay = 3 * time.Second // stretched: the margins below are a quarter of it
	c.acks.mu.Lock()
	c.acks.delay = delay // before anything is handed: the acker starts then
	c.acks.mu.Unlock()
	s := <-fs.ready
	alice := convKey{peer: "alice"}
	hand := func(seq uint64) time.Time {
		t.Helper()
		s.push(newMsgFrame(pbMsg(seq, "alice", "bob", "", "m")))
		checkFor(t, 10*time.Second, func() error {
			c.acks.mu.Lock()
			defer c.acks.mu.Unlock()
			if got := c.acks.handed[alice]; got != seq {
				return fmt.Errorf("handed up to %d, want %d", got, seq)
			}
			return nil
		})
		return time.Now()
	}
	request := func(want string) {
		t.Helper()
		if err := c.MarkC2CMessageAsRead(ctxT(t), "alice"); err != nil {
			t.Fatal(err)
		}
		f := fs.waitFrame(t, func(f *pb.ClientFrame) bool {
			if f.GetAck() != nil {
				t.Fatalf("the acker sent %v", f)
			}
			return f.GetMarkC2CRead() != nil
		})
		if got := cursorsString(f.GetAcked()); got != want {
			t.Fatalf("the request carried acked %s, want %s", got, want)
		}
	}
	first := hand(1)
	request("[alice:1]")
	time.Sleep(time.Until(first.Add(delay / 2)))
	second := hand(2)
	// The acker's turn, delay after the first message, finds the second due
	// for only half of it: it waits, and the request takes it.
	time.Sleep(time.Until(second.Add(delay * 3 / 4)))
	request("[alice:2]")
	c.Close()
}

// cursorsString is cursors as "[peer:seq ...]", "" for none.
func cursorsString(cursors []*pb.SyncCursor) string {
	if len(cursors) == 0 {
		return ""
	}
	var parts []string
	for _, c := range cursors {
		parts = append(parts, fmt.Sprintf("%s%s:%d", c.GetConversation().GetPeerId(), c.GetConversation().GetGroupId(), c.GetSeq()))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestAckAgainAfterReconnect: what was handed is acknowledged again on the
// next session (an ack written just before a connection dies may be lost,
// and the sync cursors, sent with no_ack, acknowledge nothing).
func TestAckAgainAfterReconnect(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob", WithListener(&BaseAdvancedMsgListener{}))
	s := fs.waitSession(t)
	for seq := range uint64(2) {
		s.push(newMsgFrame(pbMsg(seq+1, "alice", "bob", "", "m")))
	}
	ackedUpTo2 := func(cs []*pb.SyncCursor) bool {
		return len(cs) == 1 && cs[0].GetConversation().GetPeerId() == "alice" && cs[0].GetSeq() == 2
	}
	for !ackedUpTo2(nextAck(t, fs).GetCursors()) {
	}
	fs.dropAll()
	fs.waitSession(t)
	fs.waitFrame(t, func(f *pb.ClientFrame) bool {
		return ackedUpTo2(f.GetAck().GetCursors()) || ackedUpTo2(f.GetAcked())
	})
	c.Close()
}

// TestCloseWithoutListenerAcks: a client that never had a listener takes no
// events, so Close acknowledges what it was delivered; otherwise each login
// of its device would sync it all again.
func TestCloseWithoutListenerAcks(t *testing.T) {
	fs := newFake(t)
	c := dial(t, fs, "bob")
	s := fs.waitSession(t)
	for seq := range uint64(3) {
		s.push(newMsgFrame(pbMsg(seq+1, "alice", "bob", "", "m")))
	}
	k := convKey{peer: "alice"}
	checkFor(t, 10*time.Second, func() error {
		c.dmu.Lock()
		defer c.dmu.Unlock()
		if c.delivered[k] != 3 {
			return fmt.Errorf("delivered up to %d, want 3", c.delivered[k])
		}
		return nil
	})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close()
	}()
	if got := cursorsString(nextAck(t, fs).GetCursors()); got != "[alice:3]" {
		t.Fatalf("Close acknowledged %s, want alice:3", got)
	}
	<-closed
}
