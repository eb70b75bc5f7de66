package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	baselineFrame  = 64 // bytes per frame
	baselineWindow = 16 // frames in flight per connection
)

// runBaseline measures a bare WebSocket echo over loopback: the frames/s
// ceiling that the other scenarios can be compared with.
func runBaseline(ctx context.Context, cfg *config, res *Result, prog *progress) error {
	res.param("conns", cfg.conns)
	res.param("duration", cfg.duration.String())
	res.param("frame_bytes", baselineFrame)
	res.param("window_per_conn", baselineWindow)

	echo, err := startEcho("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer echo.close()
	url := echo.url

	prog.set("connect", int64(cfg.conns), "connections", nil)
	conns := make([]*websocket.Conn, cfg.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	if err := forEach(ctx, cfg.conns, 200, func(ctx context.Context, i int) error {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return err
		}
		conns[i] = c
		prog.add(1)
		return nil
	}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	var (
		frames atomic.Int64
		rtt    samples
		wg     sync.WaitGroup
	)
	prog.set("echo", 0, "frames", nil)
	start := time.Now()
	cpu := startCPU(ctx, nil)
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	errs := make(chan error, 2*len(conns))
	for _, c := range conns {
		slots := make(chan struct{}, baselineWindow)
		wg.Add(2)
		go func() { // writer: keeps baselineWindow frames in flight
			defer wg.Done()
			buf := make([]byte, baselineFrame)
			for {
				select {
				case slots <- struct{}{}:
				case <-runCtx.Done():
					return
				}
				binary.LittleEndian.PutUint64(buf, uint64(time.Since(start)))
				if err := c.Write(runCtx, websocket.MessageBinary, buf); err != nil {
					if runCtx.Err() == nil {
						errs <- err
					}
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			defer func() { rtt.addAll(local) }()
			for {
				_, b, err := c.Read(runCtx)
				if err != nil {
					if runCtx.Err() == nil {
						errs <- err
					}
					return
				}
				if len(b) >= 8 {
					local = append(local, time.Since(start)-time.Duration(binary.LittleEndian.Uint64(b)))
				}
				frames.Add(1)
				prog.add(1)
				<-slots
			}
		}()
	}
	<-runCtx.Done()
	elapsed := time.Since(start)
	spent := cpu.snapshot(ctx)
	// A canceled Read or Write closes the connection (coder/websocket), so
	// both goroutines of each connection end.
	wg.Wait()
	close(errs)
	var first error
	for err := range errs {
		first = err
		break
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fps := perSec(float64(frames.Load()), elapsed)
	res.metric("frames_per_s", fps, "1/s", "echoed frames (client->server->client round trips) per second")
	res.metric("frames", float64(frames.Load()), "", "round trips completed")
	spent.perOp(res, "frame", frames.Load(), "echoed frame (client write, server read and write, client read)")
	res.latency("round_trip", "write of a frame -> its echo read, pipelined", &rtt)
	res.note("in-process github.com/coder/websocket echo server on 127.0.0.1:0, client in the same process sharing the cores; "+
		"each connection keeps %d frames of %d bytes in flight. Pass --baseline-fps %.0f to other scenarios.", baselineWindow, baselineFrame, fps)
	if first != nil && !errors.Is(first, context.DeadlineExceeded) {
		return fmt.Errorf("echo: %w", first)
	}
	return nil
}

// echoServer is a bare github.com/coder/websocket echo server: each
// connection's frames are written back as they come, except that a
// connection opened with ?room=NAME joins that room and its echoMessage
// frames go to the whole room (steady-echo's group messages). It serves the
// process's CPU time on /metrics (process_cpu_seconds_total), as readmarkd
// does, so the load tool can measure it from another process.
type echoServer struct {
	url      string
	srv      *http.Server
	handlers sync.WaitGroup
	conns    atomic.Int64 // WebSocket connections accepted
	frames   atomic.Int64 // frames read
	served   chan error
	cancel   context.CancelFunc // ends the handlers' request contexts

	mu    sync.Mutex
	rooms map[string]map[*websocket.Conn]struct{} // ?room= connections, for steady-echo
}

func startEcho(addr string) (*echoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	e := &echoServer{url: "ws://" + ln.Addr().String(), served: make(chan error, 1), rooms: map[string]map[*websocket.Conn]struct{}{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", e.echo)
	base, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.srv = &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return base }}
	go func() { e.served <- e.srv.Serve(ln) }()
	return e, nil
}

func (e *echoServer) echo(w http.ResponseWriter, r *http.Request) {
	e.handlers.Add(1)
	defer e.handlers.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	e.conns.Add(1)
	defer c.CloseNow()
	room := r.URL.Query().Get("room")
	if room != "" {
		e.join(room, c)
		defer e.leave(room, c)
	}
	for {
		typ, b, err := c.Read(r.Context())
		if err != nil {
			return
		}
		e.frames.Add(1)
		if room != "" && len(b) > 0 && b[0] == echoMessage {
			e.fanOut(r.Context(), room, typ, b)
			continue
		}
		if err := c.Write(r.Context(), typ, b); err != nil {
			return
		}
	}
}

// echoMessage marks a frame that a connection in a room sends to the whole
// room, itself included (see steady-echo); every other frame is echoed to
// its sender alone.
const echoMessage = 'M'

func (e *echoServer) join(room string, c *websocket.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rooms[room] == nil {
		e.rooms[room] = map[*websocket.Conn]struct{}{}
	}
	e.rooms[room][c] = struct{}{}
}

func (e *echoServer) leave(room string, c *websocket.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.rooms[room], c)
}

// fanOut writes b to every connection in room, one after another from the
// sender's goroutine: the least a server can do to deliver a group
// message. A connection that fails is its own reader's to close.
func (e *echoServer) fanOut(ctx context.Context, room string, typ websocket.MessageType, b []byte) {
	e.mu.Lock()
	to := make([]*websocket.Conn, 0, len(e.rooms[room]))
	for c := range e.rooms[room] {
		to = append(to, c)
	}
	e.mu.Unlock()
	for _, c := range to {
		c.Write(ctx, typ, b)
	}
}

// close stops the server and waits for its handlers. Shutdown does not
// wait for hijacked (WebSocket) connections; canceling their request
// context ends their reads, which closes them.
func (e *echoServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.Shutdown(ctx)
	e.cancel()
	<-e.served
	e.handlers.Wait()
}
