package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/readmark/readmark/im"
)

// runFanin: one group, every member reads every message once (see the
// package doc).
func runFanin(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	res.param("members", cfg.members)
	res.param("messages", cfg.messages)
	res.param("batch", cfg.batch)
	res.param("conns", cfg.conns)

	tr := newTracker(time.Now())
	watcher := newPushWatcher(tr)
	sender, gid, ids, err := setupGroup(ctx, t, res, prog, cfg.members, "fanin", im.WithListener(watcher))
	if err != nil {
		return err
	}
	defer sender.Close()
	n := len(ids)

	prog.set("send messages", int64(cfg.messages), "messages", nil)
	msgs, err := sendReceiptMessages(ctx, t, sender, gid, cfg.messages, "fanin", func(m *im.Message) {
		watcher.watch(m.MsgID, uint64(n))
		prog.add(1)
	})
	if err != nil {
		return err
	}

	disk := startDisk(ctx, t)
	rssBefore, _ := procStatusKB(t.pid, "VmRSS")

	// Receipts: each member logs in, reads everything in calls of --batch,
	// and leaves; at most --conns members are online at once.
	var (
		dialLat, callLat, sessLat samples
		firstCall                 atomic.Int64
		acked, calls, finished    atomic.Int64
	)
	firstCall.Store(-1)
	total := int64(n) * int64(cfg.messages)
	prog.set("receipts", int64(n), "members done", func() string {
		left, _ := watcher.pending()
		return fmt.Sprintf("acked %d/%d receipts, %d messages not yet final at the sender", acked.Load(), total, left)
	})
	srvLat := startServerLat(ctx, t)
	cpu := startCPU(ctx, t)
	err = forEach(ctx, n, cfg.conns, func(ctx context.Context, i int) error {
		s0 := time.Now()
		c, err := t.dial(ctx, ids[i])
		if err != nil {
			return fmt.Errorf("member %s login: %w", ids[i], err)
		}
		defer c.Close()
		dialLat.add(time.Since(s0))
		for j := 0; j < len(msgs); j += cfg.batch {
			batch := msgs[j:min(j+cfg.batch, len(msgs))]
			c0 := time.Now()
			firstCall.CompareAndSwap(-1, int64(c0.Sub(tr.start)))
			if err := t.do(ctx, func() error { return c.SendMessageReadReceipts(ctx, batch) }); err != nil {
				return fmt.Errorf("member %s receipts: %w", ids[i], err)
			}
			callLat.add(time.Since(c0))
			tr.acked(msgIDs(batch))
			acked.Add(int64(len(batch)))
			calls.Add(1)
		}
		sessLat.add(time.Since(s0))
		finished.Add(1)
		prog.add(1)
		return nil
	})
	spent := cpu.snapshot(ctx)
	srvSpan := srvLat.end(ctx)
	lastAck := tr.lastAck()
	first := time.Duration(firstCall.Load())
	span := lastAck - first

	res.metric("receipts_acked", float64(acked.Load()), "", fmt.Sprintf("of %d (%d members x %d messages)", total, n, cfg.messages))
	res.metric("receipt_calls", float64(calls.Load()), "", "SendMessageReadReceipts calls acknowledged")
	res.metric("receipt_phase_s", span.Seconds(), "s", "first receipt call -> last ack")
	rps := perSec(float64(acked.Load()), span)
	res.metric("receipts_per_s", rps, "1/s", "receipts acknowledged / receipt phase")
	res.metric("receipt_calls_per_s", perSec(float64(calls.Load()), span), "1/s", "calls acknowledged / receipt phase")
	res.metric("members_per_s", perSec(float64(n), span), "1/s", "members that logged in, read everything and left, per second")
	relative(cfg, res, "receipt_calls_per_s", perSec(float64(calls.Load()), span), "receipt calls/s")
	spent.cores(res, fmt.Sprintf("the receipt phase (%.1fs)", spent.wall.Seconds()))
	spent.perOp(res, "member", finished.Load(), "member session (connect, upgrade, login, sync, its receipt calls, close)")
	spent.perOp(res, "receipt", acked.Load(), "receipt acknowledged")
	srvSpan.report(res, "the receipt phase", serverReceiptCalls, serverGroupCommits, serverPushWaits, serverReceiptPushWrites)
	if err != nil {
		return err
	}

	// Convergence: the sender's pushed counts reach n for every message.
	prog.set("await final pushes", int64(len(msgs)), "messages", nil)
	wait := time.Now()
	left, final := watcher.pending()
	for left > 0 && time.Since(wait) < 30*time.Second && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		left, final = watcher.pending()
	}
	if left == 0 {
		res.metric("push_final_s", (final - first).Seconds(), "s", "first receipt call -> the sender holds ReadCount == N for all messages")
		res.metric("push_final_after_last_ack_ms", ms(final-lastAck), "ms", "last ack -> sender holds the final counts (negative: the final push beat the last ack)")
	} else {
		res.note("%d messages never reached ReadCount %d in the sender's pushes within 30s after the last ack", left, n)
	}
	frames, framesSec := watcher.frameStats()
	entries, maxSec := tr.pushStats()
	res.metric("push_frames", float64(frames), "", "receipt push frames received by the sender")
	res.metric("push_frames_max_per_s", float64(framesSec), "1/s", "most push frames the sender received within any one second")
	res.metric("push_receipts", float64(entries), "", "receipt entries in those pushes (one per message per push)")
	res.metric("push_max_per_msg_per_s", float64(maxSec), "1/s", "most pushes for one message within one second")
	lat, clamped, missing := tr.catchUp()
	var catch samples
	catch.addAll(lat)
	res.latency("receipt_to_push", "ack of a receipt -> sender's pushed ReadCount covers it (see notes)", &catch)
	res.metric("receipt_to_push_clamped", float64(clamped), "", "of those, pushes that arrived before the ack (counted as 0)")
	res.note("%s", catchUpMethod)
	if missing > 0 {
		res.note("%d acknowledged receipts were never covered by a push", missing)
	}
	res.latency("receipt_call", "SendMessageReadReceipts call -> return (incl. retries)", &callLat)
	res.latency("member_login", "im.Dial: connect + login (sync runs in the background)", &dialLat)
	res.latency("member_session", "login -> all receipts acknowledged", &sessLat)
	res.note("members send receipts for the sender's message references (same MsgID/Seq/group as the messages their client syncs at login)")

	reportMemory(res, t)
	if rssBefore > 0 {
		res.metric("rss_before_receipts_mib", float64(rssBefore)/1024, "MiB", "process RSS before the receipt phase")
	}
	if err := disk.finish(ctx, res, acked.Load()); err != nil {
		res.note("disk usage: %v", err)
	}

	// Verification: the sender queries the final state.
	prog.set("verify", int64(len(msgs)), "messages", nil)
	bad, err := verifyCounts(ctx, t, sender, msgs, uint64(n))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	res.metric("verified_exact", boolf(bad == ""), "bool", fmt.Sprintf("GetMessageReadReceipts: every message ReadCount %d, UnreadCount 0", n))
	if bad != "" {
		return errors.New("counts not exact: " + bad)
	}
	if left > 0 {
		return fmt.Errorf("%d messages' pushed counts never reached %d", left, n)
	}
	return nil
}

// verifyCounts checks with GetMessageReadReceipts that every message has
// ReadCount want and UnreadCount 0; it returns a description of the
// mismatches ("" if none).
func verifyCounts(ctx context.Context, t *target, sender *im.Client, msgs []*im.Message, want uint64) (string, error) {
	var bad []string
	for i := 0; i < len(msgs); i += 100 {
		chunk := msgs[i:min(i+100, len(msgs))]
		var rs []*im.MessageReceipt
		if err := t.do(ctx, func() error {
			var err error
			rs, err = sender.GetMessageReadReceipts(ctx, chunk)
			return err
		}); err != nil {
			return "", err
		}
		if len(rs) != len(chunk) {
			bad = append(bad, fmt.Sprintf("%d receipts for %d messages", len(rs), len(chunk)))
		}
		for _, r := range rs {
			if r.ReadCount != want || r.UnreadCount != 0 {
				bad = append(bad, fmt.Sprintf("%s read %d unread %d", r.MsgID, r.ReadCount, r.UnreadCount))
			}
		}
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("... (%d in all)", len(bad)))
	}
	return strings.Join(bad, "; "), nil
}

func msgIDs(ms []*im.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.MsgID
	}
	return out
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
