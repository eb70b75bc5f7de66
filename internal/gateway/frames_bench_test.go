package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// BenchmarkRespond measures the server side of a response short of the
// socket, per response: encoding it (binary protobuf or JSON), queueing it
// and accounting for it as written, as the session writer does.
func BenchmarkRespond(b *testing.B) {
	eachEncoding(b, func(b *testing.B, json bool) {
		s := testSession(1 << 30)
		s.json = json
		body := messagePush().Body
		var batch []outFrame
		b.ReportAllocs()
		for b.Loop() {
			s.respond(1, &pb.ServerFrame{Body: body}, nil)
			batch, _ = s.take(batch)
			s.written(batch)
		}
	})
}

// eachEncoding runs bench for binary protobuf and for JSON sessions.
func eachEncoding(b *testing.B, bench func(b *testing.B, json bool)) {
	for _, json := range []bool{false, true} {
		name := "proto"
		if json {
			name = "json"
		}
		b.Run(name, func(b *testing.B) { bench(b, json) })
	}
}

// BenchmarkReadFrame measures the session's reading of a request frame
// from its WebSocket (a receipts call for 20 messages, binary protobuf),
// decoding included, per frame; a client on loopback writes them.
func BenchmarkReadFrame(b *testing.B) {
	frame, _ := proto.Marshal(receiptCall())
	sessions := make(chan *session, 1)
	c := dialSession(b, New(Config{}), func(s *session) {
		sessions <- s
		<-s.ctx.Done() // the benchmark reads on this session, then cancels it
		s.conn.CloseNow()
	})
	s := <-sessions
	defer s.cancel()
	ctx := context.Background()
	go func() {
		for {
			if c.Write(ctx, websocket.MessageBinary, frame) != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.read(time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// A response is encoded into a pooled buffer, given back once written:
// answering allocates nothing per frame but the response itself.
func TestRespondAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers under the race detector")
	}
	s := testSession(1 << 30)
	resp := messagePush()
	var batch []outFrame
	if n := testing.AllocsPerRun(100, func() {
		s.respond(1, resp, nil)
		batch, _ = s.take(batch)
		s.written(batch)
	}); n != 0 {
		t.Fatalf("%v allocations per response", n)
	}
}
