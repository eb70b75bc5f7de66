package test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/webhooks/webhooktest"
	"github.com/readmark/readmark/webhook"
)

const pSettings = "/v1/admin/settings"

// startWebhookServer starts a server with fast webhook retries.
func startWebhookServer(t testing.TB, wh server.WebhookConfig) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", adminRate: 1e6, webhooks: wh}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) setWebhooks(t testing.TB, hooks ...obj) {
	t.Helper()
	ts.rest(t, "PUT", pSettings, pSettings, obj{"read_receipt_group_types": []string{"Work"}, "webhooks": hooks}, "", 200)
}

func waitEvents(t *testing.T, r *webhooktest.Receiver, what string, timeout time.Duration, cond func([]webhook.Event) bool) []webhook.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := r.Events()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; have %d events", what, len(evs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkEvents validates every event received against api/openapi.yaml.
func checkEvents(t *testing.T, r *webhooktest.Receiver) {
	t.Helper()
	loadSpec(t)
	s := schemaAt(t, "/components/schemas/WebhookEvent")
	for _, raw := range r.Raw() {
		validate(t, "webhook event", s, raw)
	}
}

func ofType(evs []webhook.Event, typ string) []webhook.Event {
	var out []webhook.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// A crowd of 1,000 members reads one message while the receiver fails,
// times out and answers slowly at random: every receipt arrives at least
// once, duplicates are identical, and the last event has the exact counts.
func TestWebhooksCrowdWithFlakyReceiver(t *testing.T) {
	rcv := webhooktest.New("crowd-secret", 42, webhooktest.Behaviour{
		Fail: 0.2, Hang: 0.1, Slow: 0.2, HangFor: 2 * time.Second, SlowFor: 50 * time.Millisecond,
	})
	defer rcv.Close()
	ts := startWebhookServer(t, server.WebhookConfig{
		Timeout: 300 * time.Millisecond, BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond, MaxAttempts: 1000,
	})
	ts.setWebhooks(t, obj{"url": rcv.URL(), "events": webhook.Types, "secret": "crowd-secret"})
	const n = 1000
	members := users("wc", n)
	ts.rest(t, "POST", pGroups, pGroups, obj{"owner_id": "boss", "type": "Work", "group_id": "crowd", "member_ids": members}, "", 200)
	sent := ts.rest(t, "POST", pMessages, pMessages, obj{"from": "boss", "group_id": "crowd", "text": "all read this", "need_read_receipt": true}, "", 200)
	seq := num(t, sent, "seq")
	var wg sync.WaitGroup
	work := make(chan string)
	for range 16 {
		wg.Go(func() {
			for u := range work {
				ts.rest(t, "POST", pReceipts, pReceipts, obj{"user_id": u, "group_id": "crowd", "seqs": []uint64{seq}}, "", 200)
			}
		})
	}
	for _, u := range members {
		work <- u
	}
	close(work)
	wg.Wait()
	// C2C events too.
	c := ts.rest(t, "POST", pMessages, pMessages, obj{"from": "boss", "to": "wc0", "text": "hi", "need_read_receipt": true}, "", 200)
	ts.rest(t, "POST", pReceipts, pReceipts, obj{"user_id": "wc0", "peer_id": "boss", "seqs": []uint64{num(t, c, "seq")}}, "", 200)
	ts.rest(t, "POST", pMarkRead, pMarkRead, obj{"user_id": "wc0", "peer_id": "boss"}, "", 200)

	readers := func(evs []webhook.Event) map[string]int {
		got := map[string]int{}
		for _, e := range ofType(evs, webhook.GroupReadReceipt) {
			for _, r := range e.Readers {
				got[r]++
			}
		}
		return got
	}
	evs := waitEvents(t, rcv, "every receipt", 3*time.Minute, func(evs []webhook.Event) bool {
		return len(readers(evs)) == n && len(ofType(evs, webhook.C2CMarkRead)) == 1 && len(ofType(evs, webhook.C2CReadReceipt)) == 1
	})
	for u, k := range readers(evs) {
		if k != 1 {
			t.Fatalf("reader %s in %d distinct events", u, k)
		}
	}
	group := ofType(evs, webhook.GroupReadReceipt)
	var prev uint64
	for _, e := range group {
		if e.GroupID != "crowd" || e.Seq != seq || e.MsgID != sent["msg_id"] || e.Sender != "boss" || e.ReadCount == nil || e.UnreadCount == nil {
			t.Fatalf("event %+v", e)
		}
		if *e.ReadCount < prev || *e.ReadCount+*e.UnreadCount != n {
			t.Fatalf("counts go back or do not add up: %d then %d+%d", prev, *e.ReadCount, *e.UnreadCount)
		}
		prev = *e.ReadCount
	}
	if last := group[len(group)-1]; *last.ReadCount != n || *last.UnreadCount != 0 {
		t.Fatalf("last event counts %d/%d", *last.ReadCount, *last.UnreadCount)
	}
	sentEvs := ofType(evs, webhook.MessageSent)
	if len(sentEvs) != 2 || sentEvs[0].MsgID != sent["msg_id"] || sentEvs[0].Text != "all read this" || !sentEvs[0].NeedReadReceipt {
		t.Fatalf("message.sent events %+v", sentEvs)
	}
	if cr := ofType(evs, webhook.C2CReadReceipt)[0]; cr.MsgID != c["msg_id"] || cr.Receiver != "wc0" || cr.ReadTimeMs == 0 {
		t.Fatalf("c2c.read_receipt %+v", cr)
	}
	if mr := ofType(evs, webhook.C2CMarkRead)[0]; mr.UserID != "wc0" || mr.PeerID != "boss" || mr.ReadTimeMs == 0 {
		t.Fatalf("c2c.mark_read %+v", mr)
	}
	ids := map[string]bool{}
	for _, e := range evs {
		if ids[e.EventID] || e.TimeMs == 0 {
			t.Fatalf("event %+v: duplicate ID or no time", e)
		}
		ids[e.EventID] = true
	}
	checkEvents(t, rcv)
	posts, dups, bad := rcv.Stats()
	t.Logf("%d events (%d group receipt events for %d readers) in %d POSTs; %d duplicates", len(evs), len(group), n, posts, dups)
	if bad != 0 {
		t.Fatalf("%d POSTs with a bad signature", bad)
	}
	if posts >= n {
		t.Fatalf("%d POSTs for %d receipts: not batched", posts, n)
	}
	// The delivered counter follows the last POST's answer.
	waitFor(t, "the status to count every event delivered", func() bool {
		st := ts.rest(t, "GET", "/v1/admin/webhooks/status", "/v1/admin/webhooks/status", nil, "", 200)
		if num(t, st, "parked") != 0 || num(t, st, "dropped_total") != 0 {
			t.Fatalf("status %v", st)
		}
		return num(t, st, "delivered_total") >= uint64(len(evs))
	})
}

func TestWebhooksSettingsParkingAndReplay(t *testing.T) {
	rcv := webhooktest.New("s1", 1, webhooktest.Behaviour{Status: 500})
	defer rcv.Close()
	ts := startWebhookServer(t, server.WebhookConfig{
		Timeout: time.Second, BackoffBase: 5 * time.Millisecond, BackoffMax: 10 * time.Millisecond, MaxAttempts: 3,
	})
	ts.setWebhooks(t, obj{"url": rcv.URL(), "events": []string{webhook.MessageSent}, "secret": "s1"})
	// Secrets are write-only; a PUT without one keeps it, and a PUT of the
	// group types alone keeps the webhooks.
	got := ts.rest(t, "GET", pSettings, pSettings, nil, "", 200)
	hooks := got["webhooks"].([]any)
	if len(hooks) != 1 || hooks[0].(obj)["secret"] != nil || hooks[0].(obj)["url"] != rcv.URL() {
		t.Fatalf("settings %v", got)
	}
	ts.setWebhooks(t, obj{"url": rcv.URL(), "events": []string{webhook.MessageSent, webhook.C2CMarkRead}})
	ts.rest(t, "PUT", pSettings, pSettings, obj{"read_receipt_group_types": []string{"Work"}}, "", 200)
	if h := ts.rest(t, "GET", pSettings, pSettings, nil, "", 200)["webhooks"].([]any); len(h) != 1 || len(h[0].(obj)["events"].([]any)) != 2 {
		t.Fatalf("webhooks after PUTs: %v", h)
	}
	for _, tt := range []struct {
		name string
		hook obj
	}{
		{"new url without secret", obj{"url": "http://127.0.0.1:1/x", "events": []string{webhook.MessageSent}}},
		{"not a url", obj{"url": "ftp://x", "events": []string{webhook.MessageSent}, "secret": "s"}},
		{"unknown event", obj{"url": rcv.URL(), "events": []string{"message.deleted"}, "secret": "s"}},
		{"no events", obj{"url": rcv.URL(), "events": []string{}, "secret": "s"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := ts.rest(t, "PUT", pSettings, pSettings, obj{"read_receipt_group_types": []string{"Work"}, "webhooks": []obj{tt.hook}}, "", 400)
			if int(num(t, e, "code")) != im.CodeInvalidArgument {
				t.Fatalf("got %v", e)
			}
		})
	}

	// An endpoint answering 500 gets its events parked after 3 attempts.
	for i := range 3 {
		ts.rest(t, "POST", pMessages, pMessages, obj{"from": "a", "to": "b", "text": fmt.Sprint("m", i)}, "", 200)
	}
	pParked := "/v1/admin/webhooks/parked"
	waitFor(t, "3 parked events", func() bool {
		return len(ts.rest(t, "GET", pParked, pParked, nil, "", 200)["parked"].([]any)) == 3
	})
	page := ts.rest(t, "GET", pParked, pParked+"?limit=2", nil, "", 200)
	ps := list(page, "parked")
	if len(ps) != 2 || ps[0]["url"] != rcv.URL() || num(t, ps[0], "attempts") != 3 || ps[0]["last_error"] != "HTTP 500" || ps[0]["event"].(obj)["text"] != "m0" {
		t.Fatalf("parked page %v", page)
	}
	if rest := list(ts.rest(t, "GET", pParked, fmt.Sprintf("%s?after=%d", pParked, num(t, page, "next")), nil, "", 200), "parked"); len(rest) != 1 || rest[0]["event"].(obj)["text"] != "m2" {
		t.Fatalf("second page %v", rest)
	}
	// The counters follow the parked records' commit.
	waitFor(t, "the status to count 3 parked", func() bool {
		st := ts.rest(t, "GET", "/v1/admin/webhooks/status", "/v1/admin/webhooks/status", nil, "", 200)
		return num(t, st, "parked") == 3 && num(t, st, "parked_total") == 3 && num(t, st, "outbox_depth") == 0
	})
	// A 4xx is not retried.
	rcv.SetBehaviour(webhooktest.Behaviour{Status: 400})
	ts.rest(t, "POST", pMarkRead, pMarkRead, obj{"user_id": "b", "peer_id": "a"}, "", 200)
	waitFor(t, "the 400 event parked", func() bool {
		ps := list(ts.rest(t, "GET", pParked, pParked, nil, "", 200), "parked")
		return len(ps) == 4 && num(t, ps[3], "attempts") == 1
	})
	// Once the endpoint works, a replay delivers them, with their IDs.
	rcv.SetBehaviour(webhooktest.Behaviour{})
	if r := ts.rest(t, "POST", "/v1/admin/webhooks/parked/replay", "/v1/admin/webhooks/parked/replay", obj{"limit": 10}, "", 200); num(t, r, "replayed") != 4 {
		t.Fatalf("replay %v", r)
	}
	evs := waitEvents(t, rcv, "the replayed events", 30*time.Second, func(evs []webhook.Event) bool { return len(evs) == 4 })
	if evs[0].EventID != ps[0]["event"].(obj)["event_id"] || evs[3].Type != webhook.C2CMarkRead {
		t.Fatalf("replayed %+v", evs)
	}
	checkEvents(t, rcv)
	if len(list(ts.rest(t, "GET", pParked, pParked, nil, "", 200), "parked")) != 0 {
		t.Fatal("parked list not empty after replay")
	}
	ts.rest(t, "POST", "/v1/admin/webhooks/parked/replay", "/v1/admin/webhooks/parked/replay", obj{"limit": 1001}, "", 400)
	ts.rest(t, "GET", pParked, pParked+"?limit=0", nil, "", 400)
}

// A dead endpoint never slows sends: the outbox fills to its bound, later
// events are dropped and counted, and messages go on.
func TestWebhooksOutboxFullDoesNotBlock(t *testing.T) {
	rcv := webhooktest.New("s", 1, webhooktest.Behaviour{Status: 503})
	defer rcv.Close()
	ts := startWebhookServer(t, server.WebhookConfig{
		Timeout: time.Second, BackoffBase: time.Hour, BackoffMax: time.Hour, MaxAttempts: 100, MaxOutbox: 5,
	})
	ts.setWebhooks(t, obj{"url": rcv.URL(), "events": []string{webhook.MessageSent}, "secret": "s"})
	_, rb := ts.dial("fb")
	for i := range 20 {
		ts.rest(t, "POST", pMessages, pMessages, obj{"from": "fa", "to": "fb", "text": fmt.Sprint("m", i)}, "", 200)
	}
	waitForMsg(t, "all 20 messages", rb, func() bool { return len(rb.messages()) == 20 })
	st := ts.rest(t, "GET", "/v1/admin/webhooks/status", "/v1/admin/webhooks/status", nil, "", 200)
	if num(t, st, "outbox_depth") != 5 || num(t, st, "dropped_total") != 15 || num(t, st, "outbox_max") != 5 {
		t.Fatalf("status %v", st)
	}
	code, body := ts.adminDo("GET", "/metrics", "", "-")
	if code != 200 || !strings.Contains(body, "readmark_webhook_dropped_total 15") || !strings.Contains(body, "readmark_webhook_outbox_depth 5") {
		t.Fatalf("metrics %d", code)
	}
}
