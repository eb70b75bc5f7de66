package im

import (
	"fmt"
	"testing"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// noSyncRequests fails if the client sent a SyncRequest before a ping it
// sends now was answered.
func noSyncRequests(t *testing.T, fs *fakeServer, c *Client) {
	t.Helper()
	if _, err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case f := <-fs.frames:
			if f.GetSync() != nil {
				t.Fatalf("sent a SyncRequest: %v", f)
			}
		default:
			return
		}
	}
}

func wantSyncRequest(t *testing.T, r *pb.SyncRequest, cursors map[string]uint64) {
	t.Helper()
	got := map[string]uint64{}
	for _, cu := range r.GetCursors() {
		got[cu.GetConversation().GetPeerId()+"/"+cu.GetConversation().GetGroupId()] = cu.GetSeq()
	}
	if len(got) != len(cursors) || r.GetLimit() != syncPageSize || !r.GetNoAck() {
		t.Fatalf("sync request %v, want cursors %v", r, cursors)
	}
	for k, seq := range cursors {
		if got[k] != seq {
			t.Fatalf("sync request %v, want cursors %v", r, cursors)
		}
	}
}

// TestLoginSyncPage: a login response carrying the whole sync is the sync:
// no SyncRequest follows, pushes that came before the response are
// delivered after the page, and the next login sends the cursors after it.
func TestLoginSyncPage(t *testing.T) {
	fs := newFake(t)
	fs.loginSync = func(s *fakeSess, r *pb.SyncRequest) *pb.SyncResponse {
		s.push(newMsgFrame(pbMsg(3, "alice", "bob", "", "a3"))) // ahead of the login response
		return &pb.SyncResponse{Messages: []*pb.Message{pbMsg(1, "alice", "bob", "", "a1"), pbMsg(2, "alice", "bob", "", "a2")}}
	}
	r := &recorder{}
	c := dial(t, fs, "bob", WithListener(r))
	fs.waitSession(t)
	r.waitTexts(t, []string{"a1", "a2", "a3"})
	wantSyncRequest(t, (<-fs.loginReqs).GetSync(), nil)
	noSyncRequests(t, fs, c)

	fs.dropAll()
	s := fs.waitSession(t)
	wantSyncRequest(t, (<-fs.loginReqs).GetSync(), map[string]uint64{"alice/": 3})
	s.push(newMsgFrame(pbMsg(4, "alice", "bob", "", "a4")))
	r.waitTexts(t, []string{"a1", "a2", "a3", "a4"}) // the page and push again: dropped
	noSyncRequests(t, fs, c)
}

// TestLoginSyncPageMore: after a login page with more, the sync continues
// with SyncRequests from the cursors after the page.
func TestLoginSyncPageMore(t *testing.T) {
	fs := newFake(t)
	fs.loginSync = func(s *fakeSess, r *pb.SyncRequest) *pb.SyncResponse {
		return &pb.SyncResponse{More: true, Messages: []*pb.Message{pbMsg(1, "alice", "bob", "", "a1"), pbMsg(2, "alice", "bob", "", "a2")}}
	}
	syncs := answerSyncs(fs, pbMsg(3, "alice", "bob", "", "a3"))
	r := &recorder{}
	dial(t, fs, "bob", WithListener(r))
	r.waitTexts(t, []string{"a1", "a2", "a3"})
	wantSyncRequest(t, <-syncs, map[string]uint64{"alice/": 2})
}

// TestLoginWithoutSyncPage: a login response without the page (a server
// that did not answer it) is followed by the SyncRequest of before.
func TestLoginWithoutSyncPage(t *testing.T) {
	fs := newFake(t)
	syncs := answerSyncs(fs, pbMsg(1, "alice", "bob", "", "a1"))
	r := &recorder{}
	dial(t, fs, "bob", WithListener(r))
	r.waitTexts(t, []string{"a1"})
	wantSyncRequest(t, (<-fs.loginReqs).GetSync(), nil)
	wantSyncRequest(t, <-syncs, nil)
}

// TestLoginSyncTooManyCursors: with more cursors than a frame takes, the
// login asks for no page: the sync acknowledges them first, then requests
// its first page without cursors.
func TestLoginSyncTooManyCursors(t *testing.T) {
	fs := newFake(t)
	var msgs []*pb.Message
	for i := range maxCursorsPerFrame + 1 {
		msgs = append(msgs, pbMsg(1, fmt.Sprintf("u%d", i), "bob", "", "hi"))
	}
	fs.loginSync = func(s *fakeSess, r *pb.SyncRequest) *pb.SyncResponse {
		return &pb.SyncResponse{Messages: msgs}
	}
	r := &recorder{}
	dial(t, fs, "bob", WithListener(r))
	checkFor(t, 10*time.Second, func() error {
		if n := len(r.texts()); n != len(msgs) {
			return fmt.Errorf("%d messages, want %d", n, len(msgs))
		}
		return nil
	})
	wantSyncRequest(t, (<-fs.loginReqs).GetSync(), nil)

	fs.dropAll()
	if lr := <-fs.loginReqs; lr.GetSync() != nil {
		t.Fatalf("login with %d cursors asked for a page", len(msgs))
	}
	acked := 0
	f := fs.waitFrame(t, func(f *pb.ClientFrame) bool {
		acked += len(f.GetAck().GetCursors())
		return f.GetSync() != nil
	})
	if acked < len(msgs) || len(f.GetSync().GetCursors()) != 0 {
		t.Fatalf("acknowledged %d cursors, then synced with %v", acked, f.GetSync())
	}
}

// answerSyncs makes fs answer every SyncRequest with one last page of ms,
// and returns the requests as they come.
func answerSyncs(fs *fakeServer, ms ...*pb.Message) <-chan *pb.SyncRequest {
	syncs := make(chan *pb.SyncRequest, 10)
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		if f.GetSync() == nil {
			fs.defaultHandle(s, f)
			return
		}
		syncs <- f.GetSync()
		s.send(syncResp(f.GetId(), false, nil, ms...))
	})
	return syncs
}
