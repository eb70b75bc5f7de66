package gateway

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/membus"
)

// fanoutEnv is a hub on an in-process bus with one session for each of n
// users, as a group's members online on this node.
type fanoutEnv struct {
	reg      *prometheus.Registry
	pusher   *bus.Pusher
	sessions []*session
	users    []string
	batch    []outFrame // drain's, reused
	pushes   []*push    // drain's, reused
}

func newFanoutEnv(t testing.TB, n int, json bool) *fanoutEnv {
	b := membus.New()
	t.Cleanup(func() { b.Close() })
	e := &fanoutEnv{reg: prometheus.NewRegistry(), pusher: &bus.Pusher{Bus: b}}
	hub := NewHub(b, HubConfig{})
	g := New(Config{Hub: hub, Metrics: NewMetrics(e.reg), MaxQueueBytes: 1 << 30})
	for i := range n {
		s := newSession(context.Background(), g, nil, json)
		s.user = fmt.Sprintf("member%d", i)
		if _, err := hub.add(s); err != nil {
			t.Fatal(err)
		}
		e.sessions = append(e.sessions, s)
		e.users = append(e.users, s.user)
	}
	return e
}

// drain does what each session's writer does with its queued pushes
// (encode, account as written) and returns them, until the next drain.
func (e *fanoutEnv) drain(t testing.TB, s *session) []*push {
	e.batch, _ = s.take(e.batch)
	e.pushes = e.pushes[:0]
	for _, f := range e.batch {
		if _, err := f.push.encoded(s.json, s.g.cfg.Metrics); err != nil {
			t.Fatal(err)
		}
		e.pushes = append(e.pushes, f.push)
	}
	s.written(e.batch)
	return e.pushes
}

// A push to a group's members is one push on this node, encoded to JSON
// once for all of their JSON sessions; the sending session is skipped.
func TestFanOutEncodedOnce(t *testing.T) {
	const members = 100
	e := newFanoutEnv(t, members, true)
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: &pb.Message{Seq: 7, GroupId: "g", Text: "hi"}}}
	sender := e.sessions[0]
	e.pusher.PushEachExcept(slices.Values(e.users), sender.id, frame)
	var shared *push
	for i, s := range e.sessions {
		got := e.drain(t, s)
		switch {
		case s == sender:
			if len(got) != 0 {
				t.Fatalf("the sending session got %d pushes", len(got))
			}
		case len(got) != 1:
			t.Fatalf("member %d got %d pushes, want 1", i, len(got))
		case shared == nil:
			shared = got[0]
		case got[0] != shared:
			t.Fatalf("member %d got a push of its own", i)
		}
	}
	if n := counter(t, e.reg, "readmark_push_json_encodings_total"); n != 1 {
		t.Fatalf("%v JSON encodings for one fan-out, want 1", n)
	}
}

// BenchmarkFanOut100 measures one group message's fan-out on a node: the
// publish to 100 members, each with one session here (JSON or binary
// protobuf), and what their writers do with it short of the socket (take,
// encode, account), per fan-out; JSON encodings per fan-out are reported
// as encodings/op.
func BenchmarkFanOut100(b *testing.B) {
	eachEncoding(b, func(b *testing.B, json bool) {
		e := newFanoutEnv(b, 100, json)
		frame := messagePush()
		b.ReportAllocs()
		for b.Loop() {
			e.pusher.PushEach(slices.Values(e.users), frame)
			for _, s := range e.sessions {
				e.drain(b, s)
			}
		}
		b.ReportMetric(counter(b, e.reg, "readmark_push_json_encodings_total")/float64(b.N), "encodings/op")
	})
}
