package test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/im"
)

// loginDevice logs r in as user from device.
func (r *rawConn) loginDevice(ts *testServer, user, device string) {
	r.t.Helper()
	r.write(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		ProtocolVersion: 1, UserId: user, Token: ts.token(user), DeviceId: device,
	}}})
	if f := r.readResponse(); f.GetLogin() == nil {
		r.t.Fatalf("login: %v", f)
	}
}

// loseSync sends a sync as user from device and makes sure its response
// was built but never reached the client: the response is over the
// connection's tiny read limit, so reading it fails and drops the
// connection.
func loseSync(t *testing.T, ts *testServer, user, device string) {
	t.Helper()
	r := rawDial(t, ts, "readmark.v1.proto")
	r.loginDevice(ts, user, device)
	r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}})
	r.c.SetReadLimit(64)
	for {
		_, data, err := r.c.Read(ctxT(t))
		if err != nil {
			return // the sync response went over the read limit: lost
		}
		// A message stored before the login may still arrive as a push
		// (fan-out is asynchronous; clients drop what they already have):
		// only a response within the limit fails the test.
		var f pb.ServerFrame
		if err := proto.Unmarshal(data, &f); err != nil || f.GetId() != 0 {
			t.Fatalf("read a %d-byte frame (%v); want the sync response, over the read limit", len(data), &f)
		}
	}
}

// sentTexts sends n messages from c to receiver and returns their texts.
func sentTexts(t *testing.T, c *im.Client, receiver string, n int, prefix string) []string {
	t.Helper()
	var out []string
	for i := range n {
		text := fmt.Sprintf("%s %d", prefix, i)
		send(t, c, text, receiver, "", false)
		out = append(out, text)
	}
	return out
}

// syncedTexts waits for r to receive marker (sent after the sync started,
// so after everything the sync delivers) and returns what came before it.
func syncedTexts(t *testing.T, sender *im.Client, r *recorder, receiver string) []string {
	t.Helper()
	send(t, sender, "marker", receiver, "", false)
	waitForMsg(t, "the marker", r, func() bool { return slices.Contains(r.texts(), "marker") })
	got := r.texts()
	return got[:slices.Index(got, "marker")]
}

// TestLostSyncResponseIsDeliveredAgain: a sync response that never reached
// the client moves no cursor; the messages come with the next sync, on the
// same device or on a new one.
func TestLostSyncResponseIsDeliveredAgain(t *testing.T) {
	for _, device := range []string{"phone", ""} {
		name := device
		if name == "" {
			name = "ephemeral"
		}
		t.Run(name, func(t *testing.T) {
			ts := startServer(t)
			alice, _ := ts.dial("alice")
			want := sentTexts(t, alice, "bob", 3, "offline")
			loseSync(t, ts, "bob", device)
			loseSync(t, ts, "bob", device) // twice: still nothing moves
			opts := []im.Option{}
			if device != "" {
				opts = append(opts, im.WithDeviceID(device))
			}
			_, rb := ts.dial("bob", opts...)
			if got := syncedTexts(t, alice, rb, "bob"); !slices.Equal(got, want) {
				t.Fatalf("after lost syncs bob got %v, want %v", got, want)
			}
		})
	}
}

// TestAckIsPerDevice: one device's acknowledgements do not hide messages
// from another device the server has seen; a new device starts after the
// user's acknowledgements.
func TestAckIsPerDevice(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	send(t, alice, "hello", "bob", "", false)
	tablet, rt := ts.dial("bob", im.WithDeviceID("tablet"))
	waitForMsg(t, "tablet gets hello", rt, func() bool { return len(rt.messages()) == 1 })
	tablet.Close() // acknowledges hello

	// A new device starts after the tablet's acknowledgement.
	phone, rp := ts.dial("bob", im.WithDeviceID("phone"))
	want := sentTexts(t, alice, "bob", 3, "while the tablet is off")
	waitForMsg(t, "phone gets them", rp, func() bool { return len(rp.messages()) == 3 })
	if got := rp.texts(); !slices.Equal(got, want) {
		t.Fatalf("phone got %v, want %v", got, want)
	}
	phone.Close() // acknowledges them

	tablet2, rt2 := ts.dial("bob", im.WithDeviceID("tablet"))
	if got := syncedTexts(t, alice, rt2, "bob"); !slices.Equal(got, want) {
		t.Fatalf("tablet synced %v, want %v", got, want)
	}
	tablet2.Close() // acknowledges up to the marker

	_, rl := ts.dial("bob", im.WithDeviceID("laptop"))
	if got := syncedTexts(t, alice, rl, "bob"); len(got) != 0 {
		t.Fatalf("new device synced %v, want nothing the other devices acknowledged", got)
	}
}

// TestCursorsSurviveRestart: a device resumes after a restart where it
// acknowledged, getting neither repeats nor gaps.
func TestCursorsSurviveRestart(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	before := sentTexts(t, alice, "bob", 3, "before")
	bob, rb := ts.dial("bob", im.WithDeviceID("phone"))
	waitForMsg(t, "bob gets them", rb, func() bool { return slices.Equal(rb.texts(), before) })
	bob.Close()
	ts.restart()
	want := sentTexts(t, alice, "bob", 2, "after")
	_, rb2 := ts.dial("bob", im.WithDeviceID("phone"))
	if got := syncedTexts(t, alice, rb2, "bob"); !slices.Equal(got, want) {
		t.Fatalf("after restart bob synced %v, want %v", got, want)
	}
}

// TestAckWhileOnline: messages pushed to an online client are acknowledged
// by it without a Close, so a crash afterwards does not repeat them.
func TestAckWhileOnline(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	_, rb := ts.dial("bob", im.WithDeviceID("phone"))
	want := sentTexts(t, alice, "bob", 2, "pushed")
	waitForMsg(t, "pushes", rb, func() bool { return slices.Equal(rb.texts(), want) })
	// The SDK acknowledges within a fraction of a second: a raw session of
	// the same device then syncs nothing.
	waitFor(t, "the acknowledgement", func() bool {
		r := rawDial(t, ts, "readmark.v1.proto")
		r.loginDevice(ts, "bob", "phone")
		r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}})
		f := r.readResponse()
		r.c.CloseNow()
		if f.GetSync() == nil {
			t.Fatalf("sync: %v", f)
		}
		return len(f.GetSync().GetMessages()) == 0
	})
}

// TestHugeBacklogToJSONClient: 200 offline messages full of control
// characters (about 85 KB each in JSON, 17 MB together: over the SDK's
// 16 MiB read limit in one page) reach a JSON client, in pages below the
// announced frame limit; history pages are cut the same way.
func TestHugeBacklogToJSONClient(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	custom := bytes.Repeat([]byte{0xff}, 8*1024)
	var want []string
	for i := range 200 {
		m := alice.CreateTextMessage(fmt.Sprintf("%03d", i) + strings.Repeat("\x01", 12*1024-3))
		m.CustomData = custom
		if _, err := alice.SendMessage(ctxT(t), m, "bob", "", im.PriorityNormal, false); err != nil {
			t.Fatal(err)
		}
		want = append(want, m.Text)
	}
	bob, rb := ts.dial("bob", im.WithJSON())
	// 17 MB of JSON, encoded twice on the server (measured, then sent) and
	// decoded once: slow under the race detector on a loaded machine, so
	// this wait is longer than waitFor's.
	deadline := time.Now().Add(2 * time.Minute)
	for len(rb.messages()) < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of 200 messages", len(rb.messages()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rb.texts(); !slices.Equal(got, want) {
		t.Fatalf("got %d messages, not the 200 sent in order", len(got))
	}
	if max := bob.Limits().MaxServerFrameBytes; max <= 0 || max > 16<<20 {
		t.Fatalf("announced max_server_frame_bytes %d", max)
	}
	// The SDK fills the count from several pages.
	hist, err := bob.GetC2CHistoryMessageList(ctxT(t), "alice", 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 100 || hist[0].Text != want[199] || hist[99].Text != want[100] {
		t.Fatalf("history: %d messages", len(hist))
	}

	// On the wire: one page is below the limit, with fewer messages.
	c, _, err := websocket.Dial(ctxT(t), ts.url()+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{"readmark.v1.json"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	var limit int
	for i, f := range []*pb.ClientFrame{
		{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{ProtocolVersion: 1, UserId: "bob", Token: ts.token("bob")}}},
		{Id: 2, Body: &pb.ClientFrame_History{History: &pb.HistoryRequest{Conversation: &pb.Conversation{PeerId: "alice"}, Count: 100}}},
		{Id: 3, Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{Limit: 500, Cursors: []*pb.SyncCursor{
			{Conversation: &pb.Conversation{PeerId: "alice"}, Seq: 0}, // from the start
		}}}},
	} {
		data, _ := protojson.Marshal(f)
		if err := c.Write(ctxT(t), websocket.MessageText, data); err != nil {
			t.Fatal(err)
		}
		_, data, err = c.Read(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		resp := &pb.ServerFrame{}
		if err := protojson.Unmarshal(data, resp); err != nil || resp.Error != nil {
			t.Fatalf("frame %d: %v %v", i, err, resp.Error)
		}
		if i == 0 {
			limit = int(resp.GetLogin().GetLimits().GetMaxServerFrameBytes())
			continue
		}
		n := len(resp.GetHistory().GetMessages()) + len(resp.GetSync().GetMessages())
		if len(data) > limit || n == 0 || n >= 100 {
			t.Fatalf("frame %d: %d bytes with %d messages; the limit is %d", i, len(data), n, limit)
		}
		if i == 2 && !resp.GetSync().GetMore() {
			t.Fatal("a cut sync page without more")
		}
	}
}

// blockFirst is a listener that, on the first message, waits for release
// and then closes its client from the callback, so that the messages
// synced after it are never handed.
type blockFirst struct {
	im.BaseAdvancedMsgListener
	c       chan *im.Client // the client, once Dial returned
	release chan struct{}
	seen    []uint64 // seqs handed; read after Close returned
}

func (l *blockFirst) OnRecvNewMessage(m *im.Message) {
	l.seen = append(l.seen, m.Seq)
	if len(l.seen) == 1 {
		<-l.release
		(<-l.c).Close()
	}
}

// TestSyncedNotHandedComeAgain: messages a client synced but had not handed
// to the application when it was closed (its listener still busy with the
// first one) are synced again to the next client of the same device, also
// those of pages after the first (whose SyncRequest carried cursors past
// them).
func TestSyncedNotHandedComeAgain(t *testing.T) {
	ts := startServer(t)
	alice, _ := ts.dial("alice")
	const n = 201 // more than the SDK's sync page
	sentTexts(t, alice, "bob", n, "m")

	syncs := `readmark_requests_total{code="OK",type="sync"}`
	base := ts.metric(syncs)
	l := &blockFirst{c: make(chan *im.Client, 1), release: make(chan struct{})}
	bob, _ := ts.dial("bob", im.WithDeviceID("phone"), im.WithListener(l))
	l.c <- bob
	// The login's page and the SyncRequest for the second one.
	waitFor(t, "two sync pages", func() bool { return ts.metric(syncs) == base+2 })
	close(l.release)
	bob.Close()
	if !slices.Equal(l.seen, []uint64{1}) {
		t.Fatalf("the first client was handed %v, want [1]", l.seen)
	}

	_, rec := ts.dial("bob", im.WithDeviceID("phone"))
	waitForMsg(t, "the messages again", rec, func() bool { return len(rec.messages()) >= n })
	for i, m := range rec.messages() {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d, want %d", i, m.Seq, i+1)
		}
	}
}
