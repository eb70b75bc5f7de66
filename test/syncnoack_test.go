package test

import (
	"fmt"
	"testing"

	"github.com/coder/websocket"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// TestSyncNoAck: the cursors of a SyncRequest (the login's and a later
// one's) acknowledge, moving the device's delivery cursors, unless no_ack
// is set: then they only say where the page starts, and the device's next
// login syncs the messages again.
func TestSyncNoAck(t *testing.T) {
	for _, tc := range []struct {
		noAck bool
		next  []uint64 // what the device's next login syncs
	}{
		{noAck: false, next: []uint64{4}},
		{noAck: true, next: []uint64{1, 2, 3, 4}},
	} {
		t.Run(fmt.Sprintf("no_ack=%v", tc.noAck), func(t *testing.T) {
			// A server of its own: another device's acknowledgements would
			// be the baseline of this one.
			ts := startServer(t)
			alice, _ := ts.dial("alice")
			sentTexts(t, alice, "bob", 4, "m")
			const device = "phone"
			login := func(sync *pb.SyncRequest) (*rawConn, []uint64) {
				t.Helper()
				return loginSynced(t, ts, "readmark.v1.proto", "bob", device, nil, sync)
			}
			r, got := login(&pb.SyncRequest{Cursors: upTo("alice", 2), NoAck: tc.noAck})
			wantSeqs(t, "a login from 2", got, 3, 4)
			r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{Cursors: upTo("alice", 3), NoAck: tc.noAck}}})
			f := r.readResponse()
			if f.GetSync() == nil {
				t.Fatalf("sync: %v", f)
			}
			wantSeqs(t, "a sync from 3", seqs(f.GetSync()), 4)
			if err := r.c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatal(err)
			}
			_, got = login(&pb.SyncRequest{})
			wantSeqs(t, "the next login of the device", got, tc.next...)
		})
	}
}
