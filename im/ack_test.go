package im

import (
	"bytes"
	"runtime"
	"testing"

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
