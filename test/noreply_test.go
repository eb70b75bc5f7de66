package test

import (
	"testing"

	"github.com/coder/websocket"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// aliceSentToBob starts a server where alice has sent bob n texts and
// closed, and returns it with the OK acks counted since: bob's. Alice's own
// (of her sends) are all counted once her Close returns.
func aliceSentToBob(t *testing.T, n int, prefix string) (*testServer, func() float64) {
	t.Helper()
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	sentTexts(t, alice, "bob", n, prefix)
	alice.Close()
	const okAcks = `readmark_requests_total{code="OK",type="ack"}`
	base := ts.metric(okAcks)
	return ts, func() float64 { return ts.metric(okAcks) - base }
}

// TestNoReplyAck: an AckRequest with no_reply gets no frame back, neither
// on success nor on failure, and still takes effect, also as the last frame
// before the client's close: a new connection of the device does not sync
// the acknowledged messages again. A failing one leaves the connection up
// and is counted.
func TestNoReplyAck(t *testing.T) {
	for _, sp := range []string{"readmark.v1.proto", "readmark.v1.json"} {
		t.Run(sp, func(t *testing.T) {
			ts, bobAcks := aliceSentToBob(t, 3, "before")
			// phone is a connection of bob's phone that synced, and what
			// the sync had.
			phone := func() (*rawConn, []*pb.Message) {
				t.Helper()
				r := rawDial(t, ts, sp)
				r.loginDevice(ts, "bob", "phone")
				r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}})
				f := r.readResponse()
				if f.GetSync() == nil {
					t.Fatalf("sync: %v", f)
				}
				return r, f.GetSync().GetMessages()
			}
			r, synced := phone()
			if len(synced) != 3 {
				t.Fatalf("first sync had %d messages, want 3", len(synced))
			}
			ack := func(id uint64, peer string, seq uint64) {
				t.Helper()
				a := &pb.AckRequest{Cursors: []*pb.SyncCursor{{Conversation: &pb.Conversation{PeerId: peer}, Seq: seq}}, NoReply: true}
				r.write(&pb.ClientFrame{Id: id, Body: &pb.ClientFrame_Ack{Ack: a}})
			}
			// The next response (pushes aside: one of a message stored
			// before the login may still come) is the ping's.
			ping := func(id uint64) {
				t.Helper()
				r.write(&pb.ClientFrame{Id: id, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
				if f := r.readResponse(); f.GetId() != id || f.GetPing() == nil {
					t.Fatalf("after a no_reply ack, got %v; want the answer to ping %d", f, id)
				}
			}
			ack(3, "alice", 2)
			ping(4)
			ack(5, "a:b", 3) // InvalidArgument
			ping(6)
			waitFor(t, "the failed ack counted", func() bool {
				return ts.metric(`readmark_requests_total{code="InvalidArgument",type="ack"}`) == 1
			})
			ack(0, "alice", 3) // its id is not checked
			if err := r.c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "both acks applied", func() bool {
				return bobAcks() == 2
			})
			if _, synced := phone(); len(synced) != 0 {
				t.Fatalf("the next sync of the device had %d acknowledged messages again", len(synced))
			}
		})
	}
}
