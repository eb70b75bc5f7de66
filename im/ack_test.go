package im

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

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
