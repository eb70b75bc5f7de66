package test

import (
	"fmt"
	"slices"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// loginWith sends a login as user carrying sync (nil: none) and returns
// its response.
func (r *rawConn) loginWith(ts *testServer, user string, sync *pb.SyncRequest) *pb.LoginResponse {
	r.t.Helper()
	return r.loginDeviceWith(ts, user, "", nil, sync)
}

// loginDeviceWith is loginWith as user's device, the login frame carrying
// acked.
func (r *rawConn) loginDeviceWith(ts *testServer, user, device string, acked []*pb.SyncCursor, sync *pb.SyncRequest) *pb.LoginResponse {
	r.t.Helper()
	r.write(&pb.ClientFrame{Id: 1, Acked: acked, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		ProtocolVersion: 1, UserId: user, Token: ts.token(user), DeviceId: device, Sync: sync,
	}}})
	f := r.readResponse()
	if f.GetLogin() == nil {
		r.t.Fatalf("login: %v", f)
	}
	return f.GetLogin()
}

func msgTexts(ms []*pb.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetText())
	}
	return out
}

// TestLoginCarriesFirstSyncPage: a login with sync gets the first sync page
// in its response, as a SyncRequest right after it would have; without sync
// the response has none; a sync that fails leaves the login standing.
func TestLoginCarriesFirstSyncPage(t *testing.T) {
	for _, sp := range []string{"readmark.v1.proto", "readmark.v1.json"} {
		t.Run(sp, func(t *testing.T) {
			ts := startServer(t)
			alice, _ := ts.dial("alice")
			want := sentTexts(t, alice, "bob", 5, "stored")
			syncs := func(code string) float64 {
				return ts.metric(fmt.Sprintf(`readmark_requests_total{code=%q,type="sync"}`, code))
			}

			// Without sync: no page.
			if lr := rawDial(t, ts, sp).loginWith(ts, "bob", nil); lr.Sync != nil {
				t.Fatalf("login without sync got a page: %v", lr.Sync)
			}

			// A refused sync: logged in all the same, without a page.
			r := rawDial(t, ts, sp)
			lr := r.loginWith(ts, "bob", &pb.SyncRequest{Limit: 501})
			if lr.Sync != nil {
				t.Fatalf("a refused sync gave a page: %v", lr.Sync)
			}
			if n := syncs("TooMany"); n != 1 {
				t.Fatalf("refused syncs counted: %v, want 1", n)
			}
			r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}})
			if got := msgTexts(r.readResponse().GetSync().GetMessages()); !slices.Equal(got, want) {
				t.Fatalf("sync after a refused login sync: %v, want %v", got, want)
			}

			okBefore := syncs("OK")
			// A page of 3 of the 5, then the rest by SyncRequest from the
			// cursors the page returned.
			r = rawDial(t, ts, sp)
			lr = r.loginWith(ts, "bob", &pb.SyncRequest{Limit: 3})
			if lr.GetSessionId() == "" || lr.GetLimits() == nil {
				t.Fatalf("login response lost its fields: %v", lr)
			}
			page := lr.GetSync()
			if got := msgTexts(page.GetMessages()); !slices.Equal(got, want[:3]) || !page.GetMore() {
				t.Fatalf("login page: %v more=%v; want %v more=true", got, page.GetMore(), want[:3])
			}
			if cs := page.GetCursors(); len(cs) != 1 || cs[0].GetConversation().GetPeerId() != "alice" || cs[0].GetSeq() != page.GetMessages()[2].GetSeq() {
				t.Fatalf("login page cursors: %v", cs)
			}
			r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{Cursors: page.GetCursors(), Limit: 3}}})
			next := r.readResponse().GetSync()
			if got := msgTexts(next.GetMessages()); !slices.Equal(got, want[3:]) || next.GetMore() {
				t.Fatalf("second page: %v more=%v; want %v more=false", got, next.GetMore(), want[3:])
			}
			if n := syncs("OK"); n != okBefore+2 {
				t.Fatalf("sync requests counted: %v, want %v", n, okBefore+2)
			}
		})
	}
}
