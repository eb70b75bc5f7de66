package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Frames of steady-echo, baselineFrame bytes each: a kind byte, then two
// times in ns since the run's start. A message (echoMessage) carries its
// scheduled send time and the time it was written; a receipt
// (echoReceipt) its intended read time and the time it was written.
const echoReceipt = 'R'

func echoFrame(kind byte, a, b time.Duration) []byte {
	f := make([]byte, baselineFrame)
	f[0] = kind
	binary.LittleEndian.PutUint64(f[1:], uint64(a))
	binary.LittleEndian.PutUint64(f[9:], uint64(b))
	return f
}

func parseEchoFrame(f []byte) (kind byte, a, b time.Duration, ok bool) {
	if len(f) < 17 {
		return 0, 0, 0, false
	}
	return f[0], time.Duration(binary.LittleEndian.Uint64(f[1:])), time.Duration(binary.LittleEndian.Uint64(f[9:])), true
}

// echoRun is the shared state of a steady-echo run.
type echoRun struct {
	start   time.Time
	stop    chan struct{} // closed at the end: members' workers return
	deliver samples       // message written by its sender -> read by a member
	sends   samples       // message written -> its copy read back by its sender
	calls   samples       // receipt written -> its echo read
	late    samples       // intended read time -> receipt's echo read
	recvN   atomic.Int64
	ackN    atomic.Int64

	mu   sync.Mutex
	dues []time.Duration
	acks []time.Duration
}

func (r *echoRun) now() time.Duration { return time.Since(r.start) }

// echoMember is one member's connection: its reader queues the messages it
// gets and takes the echoes of its receipts, its worker writes the
// receipts when they are due.
type echoMember struct {
	c      *websocket.Conn
	offset time.Duration // fixed delay between a message's send and its reading
	due    chan time.Duration
}

// runSteadyEcho offers steady's load to an echo server's rooms: G rooms of
// a sender and S members; the sender's messages go to the whole room, each
// member answers every message with a receipt frame a fixed random delay
// later, and the server echoes the receipt. That is every frame a steady
// run moves between the server and its members (a delivery written, a
// receipt read, its answer written) and nothing of what Readmark does
// between them, so its server CPU per pair is the floor under steady's
// with the same flags.
func runSteadyEcho(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	G, S := cfg.groups, cfg.members
	interval := steadyLoad(cfg, res)
	res.param("connect_concurrency", cfg.conns)
	if err := checkFDs(G*(S+1), t == nil); err != nil {
		return err
	}
	base := ""
	if t == nil {
		e, err := startEcho("127.0.0.1:0")
		if err != nil {
			return err
		}
		defer e.close()
		base = e.url
	}

	st := &echoRun{start: time.Now(), stop: make(chan struct{})}
	senders := make([]*websocket.Conn, G)
	members := make([]*echoMember, G*S)
	var wg sync.WaitGroup
	defer func() {
		close(st.stop)
		for _, c := range senders {
			if c != nil {
				c.CloseNow()
			}
		}
		for _, m := range members {
			if m != nil {
				m.c.CloseNow()
			}
		}
		wg.Wait()
	}()
	fail := make(chan error, 1)
	failed := func(err error) {
		select {
		case fail <- err:
		default:
		}
	}

	run := randHex(3) // rooms of their own, should other runs share the server
	prog.set("connect", int64(G*(S+1)), "connections", nil)
	// The connections outlive forEach's context, which ends when it returns.
	if err := forEach(ctx, G*(S+1), cfg.conns, func(dialCtx context.Context, i int) error {
		g := i % G
		url := base
		if t != nil {
			url = t.urls[i%len(t.urls)]
		}
		c, err := joinRoom(dialCtx, strings.TrimSuffix(url, "/")+fmt.Sprintf("/?room=%s-%d", run, g))
		if err != nil {
			return err
		}
		prog.add(1)
		if i < G {
			senders[g] = c
			wg.Add(1)
			go func() { defer wg.Done(); st.readSender(ctx, c, failed) }()
			return nil
		}
		m := &echoMember{c: c, offset: rand.N(cfg.readSpread + 1), due: make(chan time.Duration, 1024)}
		members[i-G] = m
		wg.Add(2)
		go func() { defer wg.Done(); st.readMember(ctx, m, failed) }()
		go func() { defer wg.Done(); st.work(ctx, m, failed) }()
		return nil
	}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	nMsgs := int(cfg.duration / interval)
	expected := int64(nMsgs) * int64(S)
	prog.set("load", expected, "receipts acked", func() string {
		return fmt.Sprintf("delivered %d", st.recvN.Load())
	})
	t0 := st.now()
	cpu := startCPU(ctx, t)
	for k := 0; k < nMsgs && ctx.Err() == nil; k++ {
		sched := t0 + time.Duration(k)*interval
		if wait := time.Until(st.start.Add(sched)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		if err := senders[k%G].Write(ctx, websocket.MessageBinary, echoFrame(echoMessage, sched, st.now())); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		prog.done.Store(st.ackN.Load())
	}
	window := st.now() - t0
	loadCPU := cpu.snapshot(ctx)

	prog.set("drain", expected, "receipts acked", nil)
	drain0 := time.Now()
	var runErr error
	for ctx.Err() == nil && runErr == nil && st.ackN.Load() < expected && time.Since(drain0) < cfg.readSpread+30*time.Second {
		prog.done.Store(st.ackN.Load())
		select {
		case runErr = <-fail:
		case <-time.After(10 * time.Millisecond):
		}
	}
	drained := time.Since(drain0)
	allCPU := cpu.snapshot(ctx)
	acked := st.ackN.Load()

	st.mu.Lock()
	dues, acks := st.dues, st.acks
	st.dues, st.acks = nil, nil
	st.mu.Unlock()
	res.metric("messages_sent", float64(nMsgs), "", fmt.Sprintf("%.1f messages/s over %d rooms", perSec(float64(nMsgs), window), G))
	res.metric("deliveries", float64(st.recvN.Load()), "", fmt.Sprintf("messages read by members, of %d expected", expected))
	reportKeptUp(cfg, res, dues, acks, &st.late, t0, window)
	res.metric("receipts_acked_total", float64(acked), "", fmt.Sprintf("of %d offered", expected))
	res.metric("drain_s", drained.Seconds(), "s", "end of load -> every receipt's echo read")
	loadCPU.cores(res, "the load window")
	allCPU.perOp(res, "pair", acked, "(message delivery + receipt) pair, over load and drain")
	res.latency("send_to_deliver", "message written by its sender -> read by a member", &st.deliver)
	res.latency("receipt_call", "receipt frame written -> its echo read", &st.calls)
	res.latency("receipt_lateness", "intended read time -> receipt's echo read", &st.late)
	res.latency("send_call", "message written -> its copy read back by the sender", &st.sends)
	res.note("an echo server's rooms: each message frame is written to the sender's whole room (the sender's own copy stands for "+
		"its send call's answer), each receipt frame echoed to its member; %d-byte frames. Readmark's receipt pushes to the "+
		"senders (at most 18 frames/s each) have no counterpart here", baselineFrame)
	res.note("each member answers every message a fixed random delay in [0, %s) after it was scheduled to be sent; "+
		"messages are sent open-loop every %s round-robin over the rooms", cfg.readSpread, interval)
	switch {
	case runErr != nil:
		return runErr
	case acked < expected:
		return fmt.Errorf("only %d of %d receipts echoed", acked, expected)
	}
	return ctx.Err()
}

// joinRoom connects to an echo server's room and waits until the server
// has it in the room: the server answers a frame only after it joined.
func joinRoom(ctx context.Context, url string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	hello := echoFrame('J', 0, 0)
	if err := c.Write(ctx, websocket.MessageBinary, hello); err != nil {
		c.CloseNow()
		return nil, err
	}
	if _, b, err := c.Read(ctx); err != nil || len(b) == 0 || b[0] != 'J' {
		c.CloseNow()
		return nil, errors.Join(errors.New("no echo of the hello frame (is --url an echo server?)"), err)
	}
	return c, nil
}

// readSender takes the sender's copies of its own messages.
func (r *echoRun) readSender(ctx context.Context, c *websocket.Conn, failed func(error)) {
	for {
		_, f, err := c.Read(ctx)
		if err != nil {
			r.lost(err, failed)
			return
		}
		if kind, _, wrote, ok := parseEchoFrame(f); ok && kind == echoMessage {
			r.sends.add(r.now() - wrote)
		}
	}
}

// readMember queues each message for the member's worker and counts the
// echoes of its receipts.
func (r *echoRun) readMember(ctx context.Context, m *echoMember, failed func(error)) {
	for {
		_, f, err := m.c.Read(ctx)
		if err != nil {
			r.lost(err, failed)
			return
		}
		kind, a, b, ok := parseEchoFrame(f)
		if !ok {
			continue
		}
		now := r.now()
		switch kind {
		case echoMessage:
			r.deliver.add(now - b)
			r.recvN.Add(1)
			due := a + m.offset
			r.mu.Lock()
			r.dues = append(r.dues, due)
			r.mu.Unlock()
			select {
			case m.due <- due:
			case <-r.stop:
				return
			}
		case echoReceipt:
			r.calls.add(now - b)
			r.late.add(now - a)
			r.mu.Lock()
			r.acks = append(r.acks, now)
			r.mu.Unlock()
			r.ackN.Add(1)
		}
	}
}

// work writes the member's receipts when they are due.
func (r *echoRun) work(ctx context.Context, m *echoMember, failed func(error)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due time.Duration
		select {
		case due = <-m.due:
		case <-r.stop:
			return
		}
		if wait := due - r.now(); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.stop:
				return
			}
		}
		if err := m.c.Write(ctx, websocket.MessageBinary, echoFrame(echoReceipt, due, r.now())); err != nil {
			r.lost(err, failed)
			return
		}
	}
}

// lost reports a connection's error unless the run is ending.
func (r *echoRun) lost(err error, failed func(error)) {
	select {
	case <-r.stop:
	default:
		failed(err)
	}
}
