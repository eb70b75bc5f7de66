package test

// Per-client limits (docs/security.md), each driven the way an attacker or
// a careless client would: raw WebSocket where the SDK would not do it.

import (
	"bufio"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/server"
)

// metric returns the value of a metric series from /metrics; series is
// the name with its labels as Prometheus prints them, e.g.
// `readmark_requests_total{code="OK",type="history"}`. A series not (yet)
// exported reads as 0.
func (ts *testServer) metric(series string) float64 {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.addr + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				ts.t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// liveHeap is the heap in use by reachable objects.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Issue 7 item 3: a client pipelines history requests and never reads.
func TestPipelinedRequestsNeverReadStayBounded(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	// 100 messages of 12 KiB: every history page below is ~1 MiB (cut at
	// the server's frame limit).
	text := strings.Repeat("x", 12<<10)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 / 8 {
				if _, err := alice.SendMessage(ctxT(t), alice.CreateTextMessage(text), "bob", "", im.PriorityNormal, false); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for range 100 % 8 {
		send(t, alice, text, "bob", "", false)
	}
	base := liveHeap()

	r := rawDial(t, ts, "readmark.v1.proto")
	r.login(ts, "alice")
	// Watch the live heap from the first request until the server ends the
	// session, which it does once its writer has been stuck for the write
	// timeout.
	peak := make(chan uint64)
	go func() {
		var p uint64
		for ts.metric("readmark_sessions") != 1 { // alice's SDK session only
			p = max(p, liveHeap())
			time.Sleep(20 * time.Millisecond)
		}
		peak <- p
	}()
	const requests = 1500
	for i := range requests {
		data := mustMarshal(t, &pb.ClientFrame{Id: uint64(10 + i), Body: &pb.ClientFrame_History{History: &pb.HistoryRequest{
			Conversation: &pb.Conversation{PeerId: "bob"}, Count: 100,
		}}})
		if r.c.Write(ctxT(t), websocket.MessageBinary, data) != nil {
			break // the server cut the connection
		}
	}
	var top uint64
	select {
	case top = <-peak:
	case <-time.After(time.Minute):
		t.Fatal("the server never closed the session that does not read")
	}
	// A request slot is given back only once its response is written, so
	// the reader stalls after DefaultMaxInFlight (32) unwritten responses,
	// plus the few pages of ~1 MiB the kernel's socket buffers took (about
	// 4 with Linux's default 4 MiB send buffer; 8 allowed).
	// Before the fix every request was answered into an unbounded queue,
	// as fast as the server could make pages, until the write timeout cut
	// the session.
	if n := ts.metric(`readmark_requests_total{code="OK",type="history"}`); n > 32+8 {
		t.Fatalf("%v requests were answered though no response was read: the reader did not stall", n)
	}
	// Heap bound: the ~32 MiB of those pages, caches warmed by the reads
	// and garbage between GCs fit well in 200 MiB; the unbounded queue
	// reached ~810 MiB in issue 7.
	const bound = 200 << 20
	if top > base+bound {
		t.Fatalf("live heap grew by %d MiB (bound %d MiB)", (top-base)>>20, bound>>20)
	}
	t.Logf("live heap +%d MiB at most, %v requests answered", (top-base)>>20, ts.metric(`readmark_requests_total{code="OK",type="history"}`))
}

// Issue 7 items 4 and 5: a JSON session that never reads is closed once.
func TestSlowJSONConsumerClosedOnce(t *testing.T) {
	ts := startServerTweaked(t, func(c *server.Config) { c.MaxSessionQueueBytes = 256 << 10 })
	alice, _ := ts.dial("alice")
	r := rawDial(t, ts, "readmark.v1.json")
	r.login(ts, "slow")
	// slow reads nothing more. alice sends until the server gives up on it.
	text := strings.Repeat("y", 8<<10)
	sendOnline := func() error {
		_, err := alice.SendMessage(ctxT(t), alice.CreateTextMessage(text), "slow", "", im.PriorityNormal, true)
		return err
	}
	for i := 0; i%50 != 0 || ts.metric("readmark_slow_consumer_closes_total") == 0; i++ {
		if i == 20_000 { // 160 MiB: far more than socket buffers and the queue hold
			t.Fatal("the session that never reads was never closed")
		}
		if err := sendOnline(); err != nil {
			t.Fatal(err)
		}
	}
	// Pushes to a session already closing are dropped silently, however
	// many arrive at once.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			for range 10 {
				if err := sendOnline(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "the slow session to end", func() bool { return ts.metric("readmark_sessions") == 1 })
	if n := ts.metric("readmark_slow_consumer_closes_total"); n != 1 {
		t.Fatalf("slow consumer closes = %v, want exactly 1", n)
	}
	// The server is fine for others.
	bob, _ := ts.dial("bob")
	send(t, bob, "still up", "alice", "", false)
}

// Issue 7 item 6: one user cannot take every session.
func TestSessionsPerUserCapped(t *testing.T) {
	ts := startServerTweaked(t, func(c *server.Config) { c.MaxSessionsPerUser = 3 })
	var first *im.Client
	for i := range 3 {
		c, _ := ts.dial("alice", im.WithReconnect(false))
		if i == 0 {
			first = c
		}
	}
	r := rawDial(t, ts, "readmark.v1.proto")
	r.write(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		ProtocolVersion: 1, UserId: "alice", Token: ts.token("alice"),
	}}})
	if f := r.readResponse(); f.Error == nil || f.Error.Code != pb.CodeSessionLimit {
		t.Fatalf("4th login: got %v, want SessionLimit", f)
	}
	if _, _, err := r.c.Read(ctxT(t)); err == nil {
		t.Fatal("a refused login left the connection open")
	}
	_, err := im.Dial(ctxT(t), ts.url(), "alice", ts.token("alice"), im.WithReconnect(false))
	wantCode(t, err, im.CodeSessionLimit)
	// Other users are not affected; a closed session frees its place.
	ts.dial("bob")
	first.Close()
	waitFor(t, "a 4th alice session after one closed", func() bool {
		c, err := im.Dial(ctxT(t), ts.url(), "alice", ts.token("alice"), im.WithReconnect(false))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// Issue 7 item 6: at the connection cap, clients are refused clearly and
// the operator's endpoints still answer.
func TestConnectionCapKeepsHealthzAnswering(t *testing.T) {
	ts := startServerTweaked(t, func(c *server.Config) { c.MaxConnections = 3 })
	conns := make([]*rawConn, 3)
	for i := range conns {
		conns[i] = rawDial(t, ts, "readmark.v1.proto")
		conns[i].login(ts, "u"+strconv.Itoa(i))
	}
	_, resp, err := websocket.Dial(ctxT(t), ts.url()+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{"readmark.v1.proto"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("4th connection: err %v, response %v; want HTTP 503", err, resp)
	}
	code, body := ts.adminDo("GET", "/v1/ws", "", "-")
	var e struct{ Code int32 }
	if json.Unmarshal([]byte(body), &e); code != http.StatusServiceUnavailable || e.Code != pb.CodeConnectionLimit {
		t.Fatalf("at the cap: %d %s; want 503 with code %d", code, body, pb.CodeConnectionLimit)
	}
	if code, body := ts.adminDo("GET", "/healthz", "", "-"); code != http.StatusOK {
		t.Fatalf("/healthz at the cap: %d %s", code, body)
	}
	if code, body := ts.adminDo("GET", "/v1/admin/settings", "", ""); code != http.StatusOK {
		t.Fatalf("admin API at the cap: %d %s", code, body)
	}
	conns[0].c.CloseNow()
	waitFor(t, "a connection after one closed", func() bool {
		c, _, err := websocket.Dial(ctxT(t), ts.url()+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{"readmark.v1.proto"}})
		if err == nil {
			c.CloseNow()
		}
		return err == nil
	})
}

// answers writes n frames from frame(i) on r, then reads the n answers and
// counts them by error code (0 = success).
func answers(r *rawConn, n int, frame func(i int) []byte) map[int32]int {
	for i := range n {
		r.writeRaw(frame(i))
	}
	codes := map[int32]int{}
	for range n {
		codes[r.readResponse().GetError().GetCode()]++
	}
	return codes
}

// allowed is how many requests a bucket of burst tokens refilled at rate/s
// can let through in elapsed.
func allowed(burst int, rate float64, elapsed time.Duration) int {
	return burst + int(rate*elapsed.Seconds()) + 1
}

// Issue 7 items 6 and 8: every frame counts, undecodable ones too, and
// the rate is per user, not per session, nor refilled by reconnecting.
func TestRateLimitCountsEveryFramePerUser(t *testing.T) {
	const rate, burst = 0.5, 5
	ping := func(id int) []byte {
		return mustMarshal(t, &pb.ClientFrame{Id: uint64(id + 10), Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	}
	tests := []struct {
		name     string
		sessions int
		frame    func(i int) []byte
		passed   int32 // the code of a frame the limiter let through
		serial   bool  // each session ends, on the server too, before the next logs in
	}{
		{"garbage frames", 1, func(int) []byte { return []byte{0xff, 0xff, 0xff} }, pb.CodeProtocol, false},
		{"pings from many sessions", 6, ping, 0, false},
		{"pings from one session after another", 6, ping, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServerTweaked(t, func(c *server.Config) { c.RateLimit, c.RateBurst = rate, burst })
			start := time.Now()
			var mu sync.Mutex
			total := map[int32]int{}
			var wg sync.WaitGroup
			for range tt.sessions {
				r := rawDial(t, ts, "readmark.v1.proto")
				r.login(ts, "alice")
				count := func() {
					codes := answers(r, 20, tt.frame)
					mu.Lock()
					defer mu.Unlock()
					for c, n := range codes {
						total[c] += n
					}
				}
				if !tt.serial {
					wg.Go(count)
					continue
				}
				count()
				r.c.Close(websocket.StatusNormalClosure, "")
				waitFor(t, "the session to end", func() bool { return ts.metric("readmark_sessions") == 0 })
			}
			wg.Wait()
			limit := allowed(burst, rate, time.Since(start))
			if total[tt.passed] > limit || total[tt.passed]+total[pb.CodeRateLimited] != 20*tt.sessions {
				t.Fatalf("answers by code %v: want at most %d passed (code %d), the rest RateLimited", total, limit, tt.passed)
			}
		})
	}
}

// Issue 7 item 10: fields from a later v1 schema are ignored in both
// encodings.
func TestUnknownFieldsIgnored(t *testing.T) {
	ts := startServer(t)
	bin := rawDial(t, ts, "readmark.v1.proto")
	bin.login(ts, "alice")
	frame := mustMarshal(t, &pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	frame = protowire.AppendVarint(protowire.AppendTag(frame, 999, protowire.VarintType), 42)
	bin.writeRaw(frame)
	if f := bin.readResponse(); f.GetPing() == nil {
		t.Fatalf("binary frame with an unknown field: %v", f)
	}
	js := rawDial(t, ts, "readmark.v1.json")
	js.login(ts, "bob")
	js.writeRaw([]byte(`{"id":"2","ping":{"laterField":true},"laterTopLevel":{"x":1}}`))
	if f := js.readResponse(); f.GetPing() == nil {
		t.Fatalf("JSON frame with unknown fields: %v", f)
	}
}

// Issue 7 item 7: a user with many JSON sessions receiving large messages
// does not hold up delivery to others. The JSON sessions read nothing until
// bob has his message, so their writers stall on full sockets after a few
// dozen pushes: if delivery to others waited for their JSON encoding (the
// bug: it ran on the one shared delivery goroutine), bob's message would
// come after every push was encoded.
func TestJSONSessionsDoNotDelayOthers(t *testing.T) {
	const tabs, pushes = 6, 100
	ts := startServerTweaked(t, func(c *server.Config) {
		c.MaxSessionsPerUser = tabs
		c.MaxSessionQueueBytes = 64 << 20 // not slow consumers here
	})
	alice, _ := ts.dial("alice")
	carol, _ := ts.dial("carol")
	_, bobRec := ts.dial("bob")
	conns := make([]*rawConn, tabs)
	for i := range conns {
		conns[i] = rawDial(t, ts, "readmark.v1.json")
		conns[i].c.SetReadLimit(1 << 20)
		conns[i].login(ts, "tabs")
	}
	// Control characters grow sixfold in JSON (\u0001): ~72 KiB per push,
	// ~7 MiB per tab, more than a socket holds unread.
	text := strings.Repeat("\x01", 12<<10)
	for range pushes {
		if _, err := alice.SendMessage(ctxT(t), alice.CreateTextMessage(text), "tabs", "", im.PriorityNormal, true); err != nil {
			t.Fatal(err)
		}
	}
	send(t, carol, "unrelated", "bob", "", false)
	waitForMsg(t, "bob's message", bobRec, func() bool { return len(bobRec.messages()) == 1 })
	if n := ts.metric("readmark_push_json_encodings_total"); n >= pushes {
		t.Fatalf("bob's message came after all %d pushes to the JSON sessions were encoded (%v)", pushes, n)
	}
	// Every tab gets every push; each push was encoded to JSON once.
	var wg sync.WaitGroup
	for _, r := range conns {
		wg.Go(func() {
			for got := 0; got < pushes; {
				_, data, err := r.c.Read(ctxT(t))
				if err != nil {
					t.Errorf("tab after %d pushes: %v", got, err)
					return
				}
				if strings.Contains(string(data), `"newMessage"`) {
					got++
				}
			}
		})
	}
	wg.Wait()
	if n := ts.metric("readmark_push_json_encodings_total"); n != pushes {
		t.Fatalf("JSON encodings = %v for %d pushes to %d sessions, want one per push", n, pushes, tabs)
	}
}
