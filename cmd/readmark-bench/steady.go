package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"math/rand/v2"

	"github.com/readmark/readmark/im"
)

// steadyRun is the shared state of a steady run.
type steadyRun struct {
	cfg     *config
	t       *target
	tr      *tracker
	stop    chan struct{} // closed at the end: workers and listeners return
	deliver samples       // SendMessage call start -> OnRecvNewMessage
	late    samples       // intended read time -> receipt acknowledged
	calls   samples       // SendMessageReadReceipts latency
	callN   atomic.Int64
	ackN    atomic.Int64
	recvN   atomic.Int64
	errN    atomic.Int64

	mu    sync.Mutex
	dues  []time.Duration // intended read time of every delivered receipt
	acks  []time.Duration // acknowledgement time of every receipt
	first error
}

// reader is one online member: its listener queues the messages it gets,
// its worker sends the receipts when they are due.
type reader struct {
	im.BaseAdvancedMsgListener
	run    *steadyRun
	c      *im.Client
	offset time.Duration // fixed delay between a message's send and its reading
	ch     chan pending
}

type pending struct {
	msg *im.Message
	due time.Duration // since the run's start
}

func (r *reader) OnRecvNewMessage(m *im.Message) {
	if m.IsSelf || !m.NeedReadReceipt {
		return
	}
	now := time.Since(r.run.tr.start)
	// "steady <scheduled ns since start> <call start ns since start>"; Cut,
	// not Fields: this runs for every delivery, on the load tool's core.
	rest, ok := strings.CutPrefix(m.Text, "steady ")
	f1, f2, ok2 := strings.Cut(rest, " ")
	if !ok || !ok2 {
		return
	}
	sched, _ := strconv.ParseInt(f1, 10, 64)
	callStart, _ := strconv.ParseInt(f2, 10, 64)
	r.run.deliver.add(now - time.Duration(callStart))
	r.run.recvN.Add(1)
	due := time.Duration(sched) + r.offset
	r.run.mu.Lock()
	r.run.dues = append(r.run.dues, due)
	r.run.mu.Unlock()
	select {
	case r.ch <- pending{msg: m, due: due}:
	case <-r.run.stop:
	}
}

func (r *reader) work(ctx context.Context) {
	st := r.run
	var held *pending
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var p pending
		if held != nil {
			p, held = *held, nil
		} else {
			select {
			case p = <-r.ch:
			case <-st.stop:
				return
			}
		}
		if wait := p.due - time.Since(st.tr.start); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-st.stop:
				return
			}
		}
		batch := []pending{p}
	more:
		for len(batch) < st.cfg.batch {
			select {
			case q := <-r.ch:
				if q.due > time.Since(st.tr.start) {
					held = &q
					break more
				}
				batch = append(batch, q)
			default:
				break more
			}
		}
		msgs := make([]*im.Message, len(batch))
		for i, q := range batch {
			msgs[i] = q.msg
		}
		c0 := time.Now()
		err := st.t.do(ctx, func() error { return r.c.SendMessageReadReceipts(ctx, msgs) })
		if err != nil {
			st.errN.Add(1)
			st.mu.Lock()
			if st.first == nil && ctx.Err() == nil {
				st.first = fmt.Errorf("%s receipts: %w", r.c.UserID(), err)
			}
			st.mu.Unlock()
			continue
		}
		st.calls.add(time.Since(c0))
		st.callN.Add(1)
		st.tr.acked(msgIDs(msgs))
		ack := time.Since(st.tr.start)
		st.mu.Lock()
		for _, q := range batch {
			st.acks = append(st.acks, ack)
			st.late.add(ack - q.due)
		}
		st.mu.Unlock()
		st.ackN.Add(int64(len(batch)))
	}
}

// runSteady: G groups of S members online; messages at rate/S per second so
// that receipts are offered at --rate per second.
func runSteady(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	G, S := cfg.groups, cfg.members
	interval := steadyLoad(cfg, res)
	res.param("batch", cfg.batch)
	res.param("login_concurrency", cfg.conns)
	if err := checkFDs(G*(S+1), t.srv != nil); err != nil {
		return err
	}

	st := &steadyRun{cfg: cfg, t: t, tr: newTracker(time.Now()), stop: make(chan struct{})}
	watcher := newPushWatcher(st.tr)
	senders := make([]*im.Client, G)
	readers := make([]*reader, G*S)
	var workers sync.WaitGroup
	defer func() {
		close(st.stop)
		workers.Wait()
		closeAll(senders, readers)
	}()

	prog.set("groups", int64(G), "groups", nil)
	gids := make([]string, G)
	for g := range G {
		c, err := t.dial(ctx, t.user(fmt.Sprintf("s%03d-", g), 0), im.WithListener(watcher))
		if err != nil {
			return fmt.Errorf("sender login: %w", err)
		}
		senders[g] = c
		if g == 0 && S+1 > c.Limits().MaxGroupMembers {
			return fmt.Errorf("--members %d: groups are limited to %d members including the sender", S, c.Limits().MaxGroupMembers)
		}
		ids := make([]string, S)
		for j := range ids {
			ids[j] = t.user(fmt.Sprintf("g%03d-", g), j)
		}
		if gids[g], err = createGroup(ctx, t, c, fmt.Sprintf("steady %d", g), ids); err != nil {
			return err
		}
		prog.add(1)
	}

	prog.set("login members", int64(G*S), "members online", nil)
	login := time.Now()
	if err := forEach(ctx, G*S, cfg.conns, func(ctx context.Context, i int) error {
		r := &reader{run: st, offset: rand.N(cfg.readSpread + 1), ch: make(chan pending, 1024)}
		c, err := t.dial(ctx, t.user(fmt.Sprintf("g%03d-", i/S), i%S), im.WithListener(r))
		if err != nil {
			return fmt.Errorf("member login: %w", err)
		}
		r.c = c
		readers[i] = r
		prog.add(1)
		return nil
	}); err != nil {
		return err
	}
	res.metric("login_s", time.Since(login).Seconds(), "s", fmt.Sprintf("%d members logged in", G*S))
	for _, r := range readers {
		workers.Add(1)
		go func() { defer workers.Done(); r.work(ctx) }()
	}

	// Offer load: message k is due at start + k*interval, to group k mod G;
	// sends run in their own goroutines (open loop).
	nMsgs := int(cfg.duration / interval)
	sent := make([][]*im.Message, G)
	var (
		sendMu  sync.Mutex
		sendLat samples
		sendErr atomic.Int64
		sendWG  sync.WaitGroup
	)
	prog.set("load", int64(nMsgs)*int64(S), "receipts acked", func() string {
		return fmt.Sprintf("delivered %d, receipt calls %d", st.recvN.Load(), st.callN.Load())
	})
	start := st.tr.start    // every time below is relative to it
	t0 := time.Since(start) // the load starts now
	srvLat := startServerLat(ctx, t)
	cpu := startCPU(ctx, t)
	ackBase := st.ackN.Load()
	go func() { // progress counter
		for {
			select {
			case <-st.stop:
				return
			case <-time.After(500 * time.Millisecond):
				prog.done.Store(st.ackN.Load() - ackBase)
			}
		}
	}()
	for k := 0; k < nMsgs && ctx.Err() == nil; k++ {
		sched := t0 + time.Duration(k)*interval
		if wait := time.Until(start.Add(sched)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		g := k % G
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			c := senders[g]
			m := c.CreateTextMessage(fmt.Sprintf("steady %d %d", sched, time.Since(start)))
			m.NeedReadReceipt = true
			s0 := time.Now()
			if _, err := c.SendMessage(ctx, m, "", gids[g], im.PriorityDefault, false); err != nil {
				sendErr.Add(1)
				return
			}
			sendLat.add(time.Since(s0))
			watcher.watch(m.MsgID, uint64(S))
			sendMu.Lock()
			sent[g] = append(sent[g], m)
			sendMu.Unlock()
		}()
	}
	sendWG.Wait()
	window := time.Since(start) - t0
	loadCPU := cpu.snapshot(ctx)

	// Drain: wait until every receipt offered is acknowledged and pushed.
	nSent := 0
	for _, s := range sent {
		nSent += len(s)
	}
	expected := int64(nSent) * int64(S)
	prog.set("drain", expected, "receipts acked", nil)
	drain0 := time.Now()
	for ctx.Err() == nil && time.Since(drain0) < cfg.readSpread+30*time.Second {
		prog.done.Store(st.ackN.Load() - ackBase)
		left, _ := watcher.pending()
		if st.ackN.Load()-ackBase >= expected && left == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	drained := time.Since(drain0)
	allCPU := cpu.snapshot(ctx)
	srvSpan := srvLat.end(ctx)
	acked := st.ackN.Load() - ackBase

	st.mu.Lock()
	dues, acks, runErr := slices.Clone(st.dues), slices.Clone(st.acks), st.first
	st.mu.Unlock()

	res.metric("messages_sent", float64(nSent), "", fmt.Sprintf("%.1f messages/s over %d groups", perSec(float64(nSent), window), G))
	res.metric("send_errors", float64(sendErr.Load()), "", "failed SendMessage calls")
	res.metric("deliveries", float64(st.recvN.Load()), "", fmt.Sprintf("OnRecvNewMessage at members, of %d expected", expected))
	reportKeptUp(cfg, res, dues, acks, &st.late, t0, window)
	res.metric("receipt_calls", float64(st.callN.Load()), "", "SendMessageReadReceipts calls acknowledged")
	res.metric("receipt_errors", float64(st.errN.Load()), "", "receipt calls failed after retries")
	res.metric("receipts_acked_total", float64(acked), "", fmt.Sprintf("of %d offered", expected))
	res.metric("drain_s", drained.Seconds(), "s", "end of load -> all receipts acked and final counts pushed")
	loadCPU.cores(res, "the load window")
	// Every acknowledged receipt is one delivery and one receipt; the CPU is
	// taken over load and drain, so that work queued in the window counts.
	allCPU.perOp(res, "pair", acked, "(message delivery + receipt) pair, over load and drain")
	allCPU.perOp(res, "receipt_call", st.callN.Load(), "receipt call, over load and drain (all work included)")
	srvSpan.report(res, "load and drain", serverReceiptCalls, serverSendCalls, serverGroupCommits,
		serverPushWaits, serverReceiptPushWrites, serverMessagePushWrites)
	left, _ := watcher.pending()
	res.metric("messages_not_final", float64(left), "", fmt.Sprintf("messages whose pushed ReadCount never reached %d", S))
	frames, framesSec := watcher.frameStats()
	entries, maxSec := st.tr.pushStats()
	res.metric("push_frames", float64(frames), "", "receipt push frames received by the senders")
	res.metric("push_frames_max_per_s", float64(framesSec), "1/s", "most push frames received within any one second, all senders together")
	res.metric("push_receipts", float64(entries), "", "receipt entries in those pushes")
	res.metric("push_max_per_msg_per_s", float64(maxSec), "1/s", "most pushes for one message within one second")

	res.latency("send_to_deliver", "SendMessage call start -> member's OnRecvNewMessage", &st.deliver)
	lat, clamped, missing := st.tr.catchUp()
	var catch samples
	catch.addAll(lat)
	res.latency("receipt_to_push", "ack of a receipt -> sender's pushed ReadCount covers it (see notes)", &catch)
	res.metric("receipt_to_push_clamped", float64(clamped), "", "pushes that arrived before the ack (counted as 0)")
	res.latency("receipt_lateness", "intended read time -> receipt acknowledged (queueing + call)", &st.late)
	res.latency("receipt_call", "SendMessageReadReceipts call -> return", &st.calls)
	res.latency("send_call", "SendMessage call -> return", &sendLat)
	res.note("%s", catchUpMethod)
	if missing > 0 {
		res.note("%d acknowledged receipts were never covered by a push", missing)
	}
	res.note("each member reads every message of its group once, a fixed random delay in [0, %s) after it was scheduled to be sent, "+
		"sending up to --batch due receipts per call; messages are sent open-loop every %s round-robin over the groups",
		cfg.readSpread, interval)
	reportMemory(res, t)

	// Verify: every message ends with ReadCount S.
	prog.set("verify", int64(nSent), "messages", nil)
	var bad []string
	for g, msgs := range sent {
		b, err := verifyCounts(ctx, t, senders[g], msgs, uint64(S))
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if b != "" {
			bad = append(bad, b)
		}
	}
	res.metric("verified_exact", boolf(len(bad) == 0), "bool", fmt.Sprintf("GetMessageReadReceipts: every message ReadCount %d, UnreadCount 0", S))
	switch {
	case runErr != nil:
		return runErr
	case len(bad) > 0:
		return fmt.Errorf("counts not exact: %s", strings.Join(bad, "; "))
	case acked < expected:
		return fmt.Errorf("only %d of %d receipts acknowledged", acked, expected)
	}
	return ctx.Err()
}

func closeAll(senders []*im.Client, readers []*reader) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	closeOne := func(c *im.Client) {
		if c == nil {
			return
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer func() { <-sem; wg.Done() }(); c.Close() }()
	}
	for _, r := range readers {
		if r != nil {
			closeOne(r.c)
		}
	}
	for _, c := range senders {
		closeOne(c)
	}
	wg.Wait()
}

// steadyLoad reports the load steady and steady-echo offer and returns the
// interval between messages: rate/S a second, over the groups in turn, so
// that receipts come at --rate a second.
func steadyLoad(cfg *config, res *Result) time.Duration {
	res.param("groups", cfg.groups)
	res.param("members_per_group", cfg.members)
	res.param("offered_receipts_per_s", cfg.rate)
	res.param("duration", cfg.duration.String())
	res.param("read_spread", cfg.readSpread.String())
	interval := time.Duration(float64(time.Second) * float64(cfg.members) / cfg.rate)
	res.param("message_interval", interval.String())
	return interval
}

// checkFDs fails early when conns client connections would exceed the
// open-file limit (embedded, the server's side of each is in this process
// too).
func checkFDs(conns int, embedded bool) error {
	need := conns + 200
	if embedded {
		need += conns
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && uint64(need) > rl.Cur {
		return fmt.Errorf("%d connections need about %d file descriptors, the limit is %d: "+
			"run the server as a separate process and use --url (halves the need), or use fewer members", conns, need, rl.Cur)
	}
	return nil
}

// reportKeptUp reports whether the receipts due in the load window [t0,
// t0+window] (dues: their intended read times) were acknowledged in it
// (acks: acknowledgement times), the backlog along the way, and how many
// were acknowledged over a second late (late: intended read time ->
// acknowledged).
func reportKeptUp(cfg *config, res *Result, dues, acks []time.Duration, late *samples, t0, window time.Duration) {
	slices.Sort(dues)
	slices.Sort(acks)
	countLE := func(s []time.Duration, t time.Duration) int {
		i, _ := slices.BinarySearch(s, t+1)
		return i
	}
	dueIn := countLE(dues, t0+window)
	ackIn := countLE(acks, t0+window)
	res.metric("receipts_due_in_window", float64(dueIn), "", "receipts whose intended read time fell in the load window")
	res.metric("receipts_acked_in_window", float64(ackIn), "", "receipts acknowledged within the load window")
	res.metric("achieved_receipts_per_s", perSec(float64(ackIn), window), "1/s", fmt.Sprintf("acked in window / window (%.1fs); offered %.0f/s", window.Seconds(), cfg.rate))
	res.metric("kept_up_ratio", float64(ackIn)/float64(max(1, dueIn)), "ratio", "acked in window / due in window (1 = kept up)")
	relative(cfg, res, "achieved_receipts_per_s", perSec(float64(ackIn), window), "achieved receipts/s")
	for _, at := range []struct {
		name string
		t    time.Duration
	}{{"backlog_at_half", window / 2}, {"backlog_at_end", window}} {
		res.metric(at.name, float64(countLE(dues, t0+at.t)-countLE(acks, t0+at.t)), "receipts",
			fmt.Sprintf("due but not yet acknowledged at t=%.1fs (growth = falling behind)", at.t.Seconds()))
	}
	lateN := 0
	late.mu.Lock()
	for _, d := range late.d {
		if d > time.Second {
			lateN++
		}
	}
	late.mu.Unlock()
	res.metric("receipts_acked_late", float64(lateN), "", "acknowledged more than 1s after their intended read time")
}
