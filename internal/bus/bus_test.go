package bus

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// recorder is a Bus that keeps what is published.
type recorder struct{ subjects, payloads []string }

func (r *recorder) Publish(_ context.Context, subject string, data []byte) error {
	r.subjects = append(r.subjects, subject)
	r.payloads = append(r.payloads, string(data))
	return nil
}

func (r *recorder) Subscribe(string, func([]byte)) (Subscription, error) { return nil, nil }
func (r *recorder) Close() error                                         { return nil }

// A push to several users is one FanSubject payload per maxFanUsers users,
// each naming its users in order with the frame and the session to skip;
// a push to one user goes to the user's subject.
func TestPushEachFansOut(t *testing.T) {
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: &pb.Message{Seq: 9, Text: "hi"}}}
	bin, _ := proto.Marshal(frame)
	for _, n := range []int{1, 100, maxFanUsers, maxFanUsers + 1, 2*maxFanUsers + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			users := make([]string, n)
			for i := range users {
				users[i] = fmt.Sprintf("u%d", i)
			}
			r := &recorder{}
			(&Pusher{Bus: r}).PushEachExcept(slices.Values(users), 42, frame)
			if want := (n + maxFanUsers - 1) / maxFanUsers; len(r.payloads) != want {
				t.Fatalf("%d payloads, want %d", len(r.payloads), want)
			}
			var got []string
			for i, data := range r.payloads {
				if r.subjects[i] != FanSubject {
					t.Fatalf("published to %q", r.subjects[i])
				}
				except, f, list, err := OpenFan([]byte(data))
				if err != nil || except != 42 || string(f) != string(bin) {
					t.Fatalf("payload %d: except %d, frame %x, err %v", i, except, f, err)
				}
				for u := range list.All() {
					got = append(got, string(u))
				}
			}
			if !slices.Equal(got, users) {
				t.Fatalf("users %v, want %v", got, users)
			}
		})
	}
	r := &recorder{}
	(&Pusher{Bus: r}).PushExcept("alice", 7, frame)
	except, f, err := OpenEnvelope([]byte(r.payloads[0]))
	if r.subjects[0] != UserSubject("alice") || except != 7 || string(f) != string(bin) || err != nil {
		t.Fatalf("single push: %q, except %d, err %v", r.subjects[0], except, err)
	}
}

// Malformed fan-out payloads are refused, not read past their end.
func TestOpenFanMalformed(t *testing.T) {
	for _, data := range [][]byte{
		nil,
		{0},          // no frame length
		{0, 5, 1},    // frame longer than the payload
		{0, 1, 1, 3}, // a user longer than the payload
		{0, 0, 0x80}, // a truncated user length
	} {
		if _, _, _, err := OpenFan(data); err == nil {
			t.Errorf("OpenFan(%x) accepted", data)
		}
	}
}

// discard is a Bus that drops what is published.
type discard struct{ recorder }

func (*discard) Publish(context.Context, string, []byte) error { return nil }

// A push to one user allocates its payload, once, and its subject.
func TestPushAllocs(t *testing.T) {
	p := &Pusher{Bus: &discard{}}
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: &pb.Message{Seq: 9, Text: "hi"}}}
	if n := testing.AllocsPerRun(100, func() { p.PushExcept("alice", 7, frame) }); n != 2 {
		t.Fatalf("%v allocations per push, want 2", n)
	}
}

// TestPushReaches: with Reaches set, a push that would reach no session is
// neither encoded nor published, and MayReach says so beforehand.
func TestPushReaches(t *testing.T) {
	frame := &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: &pb.Message{Seq: 9}}}
	online := map[string]uint64{"alice": 7} // user -> her only session
	reaches := func(user string, except uint64) bool {
		id, ok := online[user]
		return ok && id != except
	}
	tests := []struct {
		name    string
		reaches func(string, uint64) bool
		user    string
		except  uint64
		want    int // payloads published
	}{
		{"no check", nil, "bob", 0, 1},
		{"a session", reaches, "alice", 0, 1},
		{"only the session skipped", reaches, "alice", 7, 0},
		{"another session skipped", reaches, "alice", 8, 1},
		{"offline", reaches, "bob", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{}
			p := &Pusher{Bus: r, Reaches: tt.reaches}
			may := p.MayReach(tt.user, tt.except)
			p.PushExcept(tt.user, tt.except, frame)
			if len(r.payloads) != tt.want {
				t.Fatalf("%d payloads, want %d", len(r.payloads), tt.want)
			}
			if may != (tt.want > 0) {
				t.Fatalf("MayReach = %v with %d payloads published", may, tt.want)
			}
		})
	}
}
