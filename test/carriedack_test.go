package test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/coder/websocket"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// upTo is an acknowledgement of the C2C conversation with peer up to seq.
func upTo(peer string, seq uint64) []*pb.SyncCursor {
	return []*pb.SyncCursor{{Conversation: &pb.Conversation{PeerId: peer}, Seq: seq}}
}

// seqs are the seqs of the messages of a sync page.
func seqs(sr *pb.SyncResponse) []uint64 {
	var out []uint64
	for _, m := range sr.GetMessages() {
		out = append(out, m.GetSeq())
	}
	return out
}

// wantSeqs fails t unless got are the seqs want.
func wantSeqs(t *testing.T, what string, got []uint64, want ...uint64) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s synced seqs %v, want %v", what, got, want)
	}
}

// loginSynced dials ts and logs in as user's device with acked and a
// first sync page (sync), and returns the connection and the page's seqs.
func loginSynced(t *testing.T, ts *testServer, subprotocol, user, device string, acked []*pb.SyncCursor, sync *pb.SyncRequest) (*rawConn, []uint64) {
	t.Helper()
	r := rawDial(t, ts, subprotocol)
	lr := r.loginDeviceWith(ts, user, device, acked, sync)
	if lr.GetSync() == nil {
		t.Fatalf("login without a sync page: %v", lr)
	}
	return r, seqs(lr.GetSync())
}

// TestCarriedAck: the cursors a request carries (ClientFrame.acked) move
// the device's delivery cursors before the request's body runs, whatever
// the request, whose response is its body's own: a sync carrying them
// continues after them, and the next connection of the device does not
// sync the acknowledged messages again, also when the carrying frame was
// the last before the close. A login's are applied before its sync.
func TestCarriedAck(t *testing.T) {
	for _, sp := range []string{"readmark.v1.proto", "readmark.v1.json"} {
		t.Run(sp, func(t *testing.T) {
			ts, bobAcks := aliceSentToBob(t, 4, "m")
			acks := func(n float64) {
				t.Helper()
				waitFor(t, fmt.Sprintf("%v carried acks applied", n), func() bool { return bobAcks() == n })
			}
			// phone logs in as bob's phone, with login.sync and acked, and
			// returns the connection and the login's sync page.
			phone := func(acked []*pb.SyncCursor) (*rawConn, []uint64) {
				t.Helper()
				return loginSynced(t, ts, sp, "bob", "phone", acked, &pb.SyncRequest{})
			}
			r, got := phone(nil)
			wantSeqs(t, "the first login", got, 1, 2, 3, 4)
			sync := func(id uint64, acked []*pb.SyncCursor) []uint64 {
				t.Helper()
				r.write(&pb.ClientFrame{Id: id, Acked: acked, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}})
				f := r.readResponse()
				if f.GetId() != id || f.GetSync() == nil {
					t.Fatalf("sync %d: %v", id, f)
				}
				return seqs(f.GetSync())
			}
			ping := &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}

			r.write(&pb.ClientFrame{Id: 2, Acked: upTo("alice", 1), Body: ping})
			if f := r.readResponse(); f.GetId() != 2 || f.GetPing() == nil {
				t.Fatalf("a ping carrying an ack: got %v, want its ping response", f)
			}
			wantSeqs(t, "after a ping carrying 1, a sync", sync(3, nil), 2, 3, 4)
			wantSeqs(t, "a sync carrying 2", sync(4, upTo("alice", 2)), 3, 4)

			r.write(&pb.ClientFrame{Id: 5, Acked: upTo("alice", 3), Body: ping})
			if err := r.c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatal(err)
			}
			acks(3)
			r, got = phone(nil)
			wantSeqs(t, "the next login of the device", got, 4)
			r.c.CloseNow()

			_, got = phone(upTo("alice", 4))
			wantSeqs(t, "a login carrying 4", got)
			acks(4)
		})
	}
}

// TestCarriedAckInvalid: invalid cursors carried by a request fail the
// acknowledgement alone, as they would fail an AckRequest with no_reply:
// counted, never answered; the request is answered as without them.
func TestCarriedAckInvalid(t *testing.T) {
	ts := startServer(t)
	r := rawDial(t, ts, "readmark.v1.proto")
	r.loginDevice(ts, "bob", "phone")
	bad := []*pb.Conversation{
		{PeerId: "a:b"}, // an invalid ID
		{PeerId: "alice", GroupId: "team"},
		{},
		{PeerId: "bob"}, // oneself
	}
	requests := []struct {
		name  string
		frame func() *pb.ClientFrame // the request, without id and acked
		ok    func(*pb.ServerFrame) bool
	}{
		{"ping", func() *pb.ClientFrame { return &pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}} },
			func(f *pb.ServerFrame) bool { return f.GetPing() != nil }},
		{"sync", func() *pb.ClientFrame { return &pb.ClientFrame{Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}} },
			func(f *pb.ServerFrame) bool { return f.GetSync() != nil }},
		{"set_profile", func() *pb.ClientFrame {
			return &pb.ClientFrame{Body: &pb.ClientFrame_SetProfile{SetProfile: &pb.SetProfileRequest{NickName: "Bob"}}}
		}, func(f *pb.ServerFrame) bool { return f.GetOk() != nil }},
	}
	id := uint64(1)
	for _, req := range requests {
		for _, c := range bad {
			id++
			f := req.frame()
			f.Id, f.Acked = id, []*pb.SyncCursor{{Conversation: c, Seq: 1}}
			r.write(f)
			if f := r.readResponse(); f.GetId() != id || !req.ok(f) {
				t.Fatalf("%s carrying the ack %v: got %v, want its own response", req.name, c, f)
			}
		}
	}
	failed := len(requests) * len(bad)
	waitFor(t, "the failed acks counted", func() bool {
		return ts.metric(`readmark_requests_total{code="InvalidArgument",type="ack"}`) == float64(failed)
	})
}
