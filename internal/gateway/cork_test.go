package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Frames queued before the writer runs are written as batches: they reach
// the client intact and in order, and a batch of small frames costs one
// write call on the connection.
func TestBatchedFramesIntactInOrder(t *testing.T) {
	tests := []struct {
		name       string
		size       func(i int) int
		frames     int
		wantWrites func(got float64) bool
	}{
		{"small frames, one write", func(i int) int { return 1 + 37*i }, 50, func(n float64) bool { return n == 1 }},
		// Frames past the library's 4 KiB buffer, batches past corkMax and
		// past writeBatchBytes: about one write per corkMax bytes.
		{"larger frames", func(i int) int { return 100 + 211*i }, 60, func(n float64) bool { return n > 1 && n <= 10 }},
		// One write each, not two: the library's buffer of the frame's start
		// goes with the rest of the frame.
		{"frames past corkMax", func(i int) int { return corkMax + i }, 3, func(n float64) bool { return n == 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			g := New(Config{Metrics: m, MaxQueueBytes: 1 << 30})
			want := make([][]byte, tt.frames)
			for i := range want {
				want[i] = bytes.Repeat([]byte{byte(i)}, tt.size(i))
			}
			c := dialSession(t, g, func(s *session) {
				for _, data := range want {
					s.enqueue(outFrame{data: data, size: len(data)})
				}
				s.closeOut()
				s.writer()
			})
			ctx := context.Background()
			c.SetReadLimit(1 << 20)
			for i, w := range want {
				typ, got, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if typ != websocket.MessageBinary || !bytes.Equal(got, w) {
					t.Fatalf("frame %d: %v of %d bytes, want binary of %d bytes of %d", i, typ, len(got), len(w), i)
				}
			}
			if n := counter(t, reg, "readmark_socket_writes_total"); !tt.wantWrites(n) {
				t.Fatalf("%d frames took %v write calls", tt.frames, n)
			}
		})
	}
}

// counter returns the value of the counter name in reg.
func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// dialSession serves one WebSocket with g: serve runs on the accepted
// session (timers set, not started), in the handler; it returns the
// client's end, closed with the test.
func dialSession(t testing.TB, g *Gateway, serve func(s *session)) *websocket.Conn {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := g.accept(w, r)
		if s == nil {
			t.Error("upgrade failed")
			return
		}
		s.idle = time.AfterFunc(time.Hour, func() { s.conn.CloseNow() })
		s.stuck = newWatchdog(time.Hour, func() { s.conn.CloseNow() })
		s.idle.Stop()
		serve(s)
	}))
	t.Cleanup(srv.Close)
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{Subprotocols: []string{SubprotocolProto}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestResponseWrittenByRequest: a request's response goes out on the
// request's own goroutine when nothing is queued before it (no writer runs
// here), behind what is queued otherwise, and a failed write of it ends the
// writer.
func TestResponseWrittenByRequest(t *testing.T) {
	g := New(Config{Metrics: NewMetrics(prometheus.NewRegistry()), MaxQueueBytes: 1 << 30})
	respond := func(s *session, id uint64) {
		s.slots <- struct{}{} // as dispatch takes one
		s.send(id, &pb.ServerFrame{Body: &pb.ServerFrame_Ok{Ok: &pb.Empty{}}}, nil, true, true)
	}
	readIDs := func(c *websocket.Conn, n int) []uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var ids []uint64
		for range n {
			_, data, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("after %v: %v", ids, err)
			}
			f := &pb.ServerFrame{}
			if err := proto.Unmarshal(data, f); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, f.GetId())
		}
		return ids
	}

	c := dialSession(t, g, func(s *session) { respond(s, 1) })
	if ids := readIDs(c, 1); ids[0] != 1 {
		t.Fatalf("got %v, want the response to request 1", ids)
	}

	first, _ := proto.Marshal(&pb.ServerFrame{Id: 7})
	c = dialSession(t, g, func(s *session) {
		s.enqueue(outFrame{data: first, size: len(first)})
		respond(s, 2) // queued behind frame 7
		s.closeOut()
		s.writer()
	})
	if ids := readIDs(c, 2); ids[0] != 7 || ids[1] != 2 {
		t.Fatalf("got %v, want [7 2]: the response after what was queued before it", ids)
	}

	ended := make(chan struct{})
	dialSession(t, g, func(s *session) {
		s.conn.CloseNow()
		respond(s, 3) // its write fails
		s.writer()    // and the writer ends instead of waiting for frames
		close(ended)
	})
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not end after a response's failed write")
	}
}

// Messages the session frames itself reach a WebSocket client intact, of
// their type, at every length encoding of the header (7-bit, 16-bit,
// 64-bit) and on both sides of corkMax (copied after the header, or
// written with it by one writev).
func TestWriteMessageFrames(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 0xffff, 0x10000, corkMax - 10, corkMax, 200_000}
	for _, op := range []byte{opBinary, opText} {
		want := make([][]byte, len(sizes))
		for i, n := range sizes {
			want[i] = bytes.Repeat([]byte{'a' + byte(i)}, n)
		}
		errs := make(chan error, 1)
		c := dialSession(t, New(Config{}), func(s *session) {
			for _, data := range want {
				if err := s.cork.writeMessage(op, data); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		})
		c.SetReadLimit(1 << 20)
		wantType := websocket.MessageBinary
		if op == opText {
			wantType = websocket.MessageText
		}
		for i, w := range want {
			typ, got, err := c.Read(context.Background())
			if err != nil {
				t.Fatalf("opcode %d, %d bytes: %v", op, sizes[i], err)
			}
			if typ != wantType || !bytes.Equal(got, w) {
				t.Fatalf("opcode %d: got %v of %d bytes, want %v of %d", op, typ, len(got), wantType, len(w))
			}
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Once the library has sent a close frame, the session's own messages are
// refused, not written after it, though the connection is still open for
// the closing handshake.
func TestNoMessageAfterClose(t *testing.T) {
	errs := make(chan error, 1)
	c := dialSession(t, New(Config{}), func(s *session) {
		go s.conn.Close(websocket.StatusNormalClosure, "bye")
		for !sentClose(s.cork) {
			runtime.Gosched()
		}
		errs <- s.cork.writeMessage(opBinary, []byte("late"))
	})
	if err := <-errs; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a message after the close frame: %v, want net.ErrClosed", err)
	}
	_, data, err := c.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("client read %q, %v; want the close frame", data, err)
	}
}

// sentClose reports whether the library has written a close frame on c.
func sentClose(c *corkConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeSent
}

// Writing a message allocates nothing, corked or not.
func TestWriteMessageAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers under the race detector")
	}
	client, server := net.Pipe()
	go io.Copy(io.Discard, client)
	defer client.Close()
	c := &corkConn{Conn: server, m: NewMetrics(prometheus.NewRegistry())}
	data := bytes.Repeat([]byte{1}, 200)
	if n := testing.AllocsPerRun(100, func() {
		if err := c.writeMessage(opBinary, data); err != nil {
			t.Fatal(err)
		}
		c.cork()
		for range 2 {
			if err := c.writeMessage(opBinary, data); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.uncork(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}

// The library's control frames, the largest one too, reach the connection
// with one write call each (the writer given to the library holds one).
func TestControlFrameOneWrite(t *testing.T) {
	reg := prometheus.NewRegistry()
	reason := strings.Repeat("r", 123) // with the 2-byte code, the most a close frame carries
	c := dialSession(t, New(Config{Metrics: NewMetrics(reg)}), func(s *session) {
		s.conn.Close(websocket.StatusNormalClosure, reason)
	})
	_, _, err := c.Read(context.Background())
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Reason != reason {
		t.Fatalf("client read %v, want the close frame", err)
	}
	if n := counter(t, reg, "readmark_socket_writes_total"); n != 1 {
		t.Fatalf("the close frame took %v write calls, want 1", n)
	}
}

// Frames queued from many goroutines at once, pushes and responses that a
// request's worker writes itself, all reach the client without waiting
// for a later frame, while the writer retires at every sweep (a
// millisecond here) and is started again by the next frame. In rounds, so
// that every round's last frame could be the one left behind. Closing then
// ends the session.
func TestFramesFromManyGoroutines(t *testing.T) {
	const senders, rounds = 8, 300
	g := New(Config{Metrics: NewMetrics(prometheus.NewRegistry()), MaxQueueBytes: 1 << 30, MaxInFlight: senders})
	g.writerIdle = time.Millisecond
	read := make(chan struct{}) // the client has read a round
	c := dialSession(t, g, func(s *session) {
		s.mu.Lock()
		s.hasWriter = false // as run does
		s.mu.Unlock()
		for k := range rounds {
			var wg sync.WaitGroup
			for i := range senders {
				wg.Go(func() {
					if i%2 == 0 {
						s.push(&push{bin: []byte{byte(i), byte(k), byte(k >> 8)}})
						return
					}
					// A response, written by its request's worker when
					// nothing is queued before it.
					s.slots <- struct{}{}
					s.send(uint64(i<<16|k), &pb.ServerFrame{}, nil, true, true)
				})
			}
			wg.Wait()
			if _, ok := <-read; !ok {
				return
			}
		}
		s.closeOut()
		<-s.done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for k := range rounds {
		got := make([]bool, senders)
		for range senders {
			_, data, err := c.Read(ctx)
			if err != nil {
				close(read)
				t.Fatalf("round %d, after %d frames: %v", k, slices.Index(got, false), err)
			}
			var i, frameRound int
			if len(data) == 3 { // a push
				i, frameRound = int(data[0]), int(data[1])|int(data[2])<<8
			} else {
				f := &pb.ServerFrame{}
				if err := proto.Unmarshal(data, f); err != nil {
					t.Fatal(err)
				}
				i, frameRound = int(f.Id>>16), int(f.Id&0xffff)
			}
			if frameRound != k || got[i] {
				t.Fatalf("round %d: sender %d's frame of round %d", k, i, frameRound)
			}
			got[i] = true
		}
		read <- struct{}{}
	}
	if _, data, err := c.Read(ctx); err == nil {
		t.Fatalf("after the last frame: %q, want the connection closed", data)
	}
}

// The first frame reaches the session whether the client waited for the
// upgrade's response or sent the frame in the same write as its request,
// when net/http has read it already and the library must read it first.
func TestFirstFrameAfterUpgrade(t *testing.T) {
	frame, err := proto.Marshal(&pb.ClientFrame{Id: 7, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	if err != nil {
		t.Fatal(err)
	}
	// A masked binary frame, as a client sends (RFC 6455, section 5.3).
	mask := [4]byte{1, 2, 3, 4}
	masked := append([]byte{finBit | opBinary, 0x80 | byte(len(frame))}, mask[:]...)
	for i, b := range frame {
		masked = append(masked, b^mask[i%4])
	}
	for _, pipelined := range []bool{false, true} {
		t.Run(map[bool]string{false: "after the response", true: "with the request"}[pipelined], func(t *testing.T) {
			g := New(Config{Metrics: NewMetrics(prometheus.NewRegistry())})
			ids := make(chan uint64, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := g.accept(w, r)
				if s == nil {
					t.Error("upgrade failed")
					return
				}
				defer s.conn.CloseNow()
				s.idle = time.AfterFunc(time.Hour, func() {})
				defer s.idle.Stop()
				f, err := s.read(time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- f.GetId()
			}))
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
				"Sec-WebSocket-Protocol: " + SubprotocolProto + "\r\n\r\n")
			if pipelined {
				req = append(req, masked...)
			}
			if _, err := conn.Write(req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			if !pipelined {
				if _, err := conn.Write(masked); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case id := <-ids:
				if id != 7 {
					t.Errorf("frame id %d, want 7", id)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the session did not read the frame")
			}
		})
	}
}
