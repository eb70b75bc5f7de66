package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/usersig"
)

// adminJSON calls the admin API with the admin token, wants status and
// decodes the answer into out (if not nil).
func (ts *testServer) adminJSON(t *testing.T, path string, status int, out any) {
	t.Helper()
	code, body := ts.adminDo("GET", path, "", "")
	if code != status {
		t.Fatalf("GET %s: %d %s, want %d", path, code, body, status)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
}

type lookupResult struct {
	Message struct {
		MsgID           string `json:"msg_id"`
		Seq             uint64 `json:"seq"`
		Sender          string `json:"sender"`
		Receiver        string `json:"receiver"`
		GroupID         string `json:"group_id"`
		TimeMs          int64  `json:"time_ms"`
		NeedReadReceipt bool   `json:"need_read_receipt"`
		Text            string `json:"text"`
	} `json:"message"`
	Receipt *struct {
		ReadCount      *uint64 `json:"read_count"`
		UnreadCount    *uint64 `json:"unread_count"`
		IsPeerRead     *bool   `json:"is_peer_read"`
		PeerReadTimeMs int64   `json:"peer_read_time_ms"`
	} `json:"receipt"`
}

type readMembersPage struct {
	Members []struct {
		UserID     string `json:"user_id"`
		ReadTimeMs *int64 `json:"read_time_ms"`
	} `json:"members"`
	NextSeq    *uint64 `json:"next_seq"`
	IsFinished *bool   `json:"is_finished"`
}

func TestAdminMessageLookup(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	bob, rb := ts.dial("bob")
	if _, err := alice.CreateGroup(ctxT(t), im.GroupWork, "lk", "Lookup", "bob", "carol", "dave"); err != nil {
		t.Fatal(err)
	}
	plain := send(t, alice, "no receipt", "", "lk", false)
	m := send(t, alice, "hello team", "", "lk", true)
	waitForMsg(t, "bob gets the message", rb, func() bool { return len(rb.messages()) == 2 })
	if err := bob.SendMessageReadReceipts(ctxT(t), []*im.Message{rb.messages()[1]}); err != nil {
		t.Fatal(err)
	}

	var r lookupResult
	ts.adminJSON(t, fmt.Sprintf("/v1/admin/messages/lookup?group_id=lk&seq=%d", m.Seq), 200, &r)
	if r.Message.MsgID != m.MsgID || r.Message.Text != "hello team" || r.Message.Sender != "alice" || !r.Message.NeedReadReceipt {
		t.Fatalf("message = %+v", r.Message)
	}
	if r.Receipt == nil || r.Receipt.ReadCount == nil || *r.Receipt.ReadCount != 1 || *r.Receipt.UnreadCount != 2 {
		t.Fatalf("receipt = %+v, want 1 read 2 unread", r.Receipt)
	}
	var byID lookupResult
	ts.adminJSON(t, "/v1/admin/messages/lookup?group_id=lk&msg_id="+m.MsgID, 200, &byID)
	if byID.Message.Seq != m.Seq {
		t.Fatalf("by ID: seq %d, want %d", byID.Message.Seq, m.Seq)
	}
	var noReceipt lookupResult
	ts.adminJSON(t, fmt.Sprintf("/v1/admin/messages/lookup?group_id=lk&seq=%d", plain.Seq), 200, &noReceipt)
	if noReceipt.Receipt != nil || noReceipt.Message.Text != "no receipt" {
		t.Fatalf("message without receipt: %+v", noReceipt)
	}

	// C2C: before and after bob marks the conversation read.
	c := send(t, alice, "psst", "bob", "", true)
	var cr lookupResult
	ts.adminJSON(t, fmt.Sprintf("/v1/admin/messages/lookup?from=bob&to=alice&seq=%d", c.Seq), 200, &cr)
	if cr.Receipt == nil || cr.Receipt.IsPeerRead == nil || *cr.Receipt.IsPeerRead || cr.Message.Receiver != "bob" {
		t.Fatalf("C2C unread: %+v", cr)
	}
	if err := bob.MarkC2CMessageAsRead(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	ts.adminJSON(t, "/v1/admin/messages/lookup?from=alice&to=bob&msg_id="+c.MsgID, 200, &cr)
	if cr.Receipt == nil || cr.Receipt.IsPeerRead == nil || !*cr.Receipt.IsPeerRead || cr.Receipt.PeerReadTimeMs < c.Timestamp.UnixMilli() {
		t.Fatalf("C2C read: %+v", cr.Receipt)
	}

	for _, tt := range []struct {
		name, query string
		status      int
	}{
		{"no conversation", "seq=1", 400},
		{"group and users", "group_id=lk&from=a&to=b&seq=1", 400},
		{"bad group ID", "group_id=a:b&seq=1", 400},
		{"same user", "from=bob&to=bob&seq=1", 400},
		{"no seq or ID", "group_id=lk", 400},
		{"bad seq", "group_id=lk&seq=-1", 400},
		{"foreign ID", "group_id=lk&msg_id=nothex", 400},
		{"no such seq", "group_id=lk&seq=99", 404},
		{"no such ID", "group_id=lk&msg_id=" + c.MsgID, 404},
		{"ID not at seq", fmt.Sprintf("group_id=lk&seq=%d&msg_id=%s", plain.Seq, m.MsgID), 404},
		{"no such group", "group_id=nope&seq=1", 404},
	} {
		t.Run(tt.name, func(t *testing.T) { ts.adminJSON(t, "/v1/admin/messages/lookup?"+tt.query, tt.status, nil) })
	}
	if code, _ := ts.adminDo("GET", "/v1/admin/messages/lookup?group_id=lk&seq=1", "", ts.token("alice")); code != 403 {
		t.Fatalf("a user's token: %d, want 403", code)
	}
}

func TestAdminReadMembers(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	members := users("m", 5)
	if _, err := alice.CreateGroup(ctxT(t), im.GroupWork, "rm", "", members...); err != nil {
		t.Fatal(err)
	}
	m := send(t, alice, "read me", "", "rm", true)
	for _, u := range members[:3] {
		c, r := ts.dial(u)
		waitForMsg(t, u+" gets the message", r, func() bool { return len(r.messages()) == 1 })
		if err := c.SendMessageReadReceipts(ctxT(t), r.messages()); err != nil {
			t.Fatal(err)
		}
	}
	walk := func(filter string) []string {
		var got []string
		next := uint64(0)
		for range 10 {
			var p readMembersPage
			ts.adminJSON(t, fmt.Sprintf("/v1/admin/groups/rm/messages/%d/read-members?filter=%s&next_seq=%d&count=2", m.Seq, filter, next), 200, &p)
			if p.NextSeq == nil || p.IsFinished == nil {
				t.Fatalf("page without next_seq/is_finished: %+v", p)
			}
			for _, mb := range p.Members {
				if mb.ReadTimeMs == nil || (filter == "read") != (*mb.ReadTimeMs > 0) {
					t.Fatalf("%s list: %s has read_time_ms %v", filter, mb.UserID, mb.ReadTimeMs)
				}
				got = append(got, mb.UserID)
			}
			if *p.IsFinished {
				return got
			}
			next = *p.NextSeq
		}
		t.Fatalf("%s list did not finish", filter)
		return nil
	}
	if got := strings.Join(walk("read"), ","); got != "m0,m1,m2" {
		t.Fatalf("read = %s", got)
	}
	if got := strings.Join(walk("unread"), ","); got != "m3,m4" {
		t.Fatalf("unread = %s", got)
	}
	base := fmt.Sprintf("/v1/admin/groups/rm/messages/%d/read-members?", m.Seq)
	for _, tt := range []struct {
		name, path string
		status     int
	}{
		{"no filter", base, 400},
		{"bad filter", base + "filter=all", 400},
		{"count 0", base + "filter=read&count=0", 400},
		{"count over limit", base + "filter=read&count=101", 400},
		{"bad next_seq", base + "filter=read&next_seq=x", 400},
		{"seq 0", "/v1/admin/groups/rm/messages/0/read-members?filter=read", 400},
		{"no such seq", "/v1/admin/groups/rm/messages/99/read-members?filter=read", 404},
		{"no such group", "/v1/admin/groups/none/messages/1/read-members?filter=read", 404},
	} {
		t.Run(tt.name, func(t *testing.T) { ts.adminJSON(t, tt.path, tt.status, nil) })
	}
	plain := send(t, alice, "no receipt", "", "rm", false)
	ts.adminJSON(t, fmt.Sprintf("/v1/admin/groups/rm/messages/%d/read-members?filter=read", plain.Seq), 400, nil)
}

func TestAdminOverview(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	send(t, alice, "hi", "bob", "", false)
	var o struct {
		Version  string `json:"version"`
		Storage  string `json:"storage"`
		UptimeMs int64  `json:"uptime_ms"`
		Sessions int64  `json:"sessions"`
		Requests []struct {
			Type  string `json:"type"`
			Code  string `json:"code"`
			Count uint64 `json:"count"`
		} `json:"requests"`
		GroupCommits struct {
			Count   uint64   `json:"count"`
			Buckets []uint64 `json:"buckets"`
		} `json:"group_commits"`
	}
	ts.adminJSON(t, "/v1/admin/overview", 200, &o)
	if o.Sessions != 1 || o.Version == "" || !strings.Contains(o.Storage, "Pebble") || o.UptimeMs < 0 {
		t.Fatalf("overview = %+v", o)
	}
	sent := uint64(0)
	for _, r := range o.Requests {
		if r.Type == "send_message" && r.Code == "OK" {
			sent = r.Count
		}
	}
	if sent != 1 || o.GroupCommits.Count == 0 || len(o.GroupCommits.Buckets) == 0 {
		t.Fatalf("overview: %d sends, commits %+v; requests %+v", sent, o.GroupCommits, o.Requests)
	}
}

func TestPagesServed(t *testing.T) {
	ts := startServer(t)
	for _, p := range []string{"/console/", "/demo/"} {
		code, body := ts.adminDo("GET", p, "", "-")
		if code != 200 || !strings.Contains(body, `<script type="module"`) {
			t.Fatalf("GET %s: %d %.300s", p, code, body)
		}
	}
	if code, _ := ts.adminDo("GET", "/v1/dev/token", "", "-"); code != 404 && code != 405 {
		t.Fatalf("dev token endpoint without --dev-tokens: %d", code)
	}
	if code, _ := ts.adminDo("POST", "/v1/dev/token", `{"user_id":"alice"}`, "-"); code != 404 && code != 405 {
		t.Fatalf("dev token endpoint without --dev-tokens: %d", code)
	}
}

func TestDevTokens(t *testing.T) {
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", devTokens: true}
	ts.start()
	t.Cleanup(ts.stop)
	code, body := ts.adminDo("POST", "/v1/dev/token", `{"user_id":"alice"}`, "-")
	var got struct{ Token string }
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("mint: %d %s", code, body)
	}
	if user, err := usersig.Verify(ts.srv.Secret(), got.Token, time.Now()); err != nil || user != "alice" {
		t.Fatalf("minted token: %q %v", user, err)
	}
	c, err := im.Dial(ctxT(t), ts.url(), "alice", got.Token)
	if err != nil {
		t.Fatalf("dial with a dev token: %v", err)
	}
	c.Close()
	for _, bad := range []string{`{"user_id":"a:b"}`, `{"user_id":""}`, `{"user":"alice"}`, `nope`} {
		if code, body := ts.adminDo("POST", "/v1/dev/token", bad, "-"); code != 400 {
			t.Fatalf("mint %s: %d %s, want 400", bad, code, body)
		}
	}

	_, err = server.Start(context.Background(), server.Config{
		Listen: "0.0.0.0:0", DataDir: t.TempDir(), DevTokens: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dev tokens on 0.0.0.0: %v, want a refusal", err)
	}
}
