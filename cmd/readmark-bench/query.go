package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/readmark/readmark/im"
)

const (
	queryMessages = 100 // messages asked about per GetMessageReadReceipts call
	queryPage     = 100 // members per GetGroupMessageReadMemberList page
	queryWalks    = 2   // walks of each list
	queryCalls    = 300 // GetMessageReadReceipts calls
)

// runQuery: one big group with messages read by half of it; latency of the
// sender's read-state queries.
func runQuery(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	res.param("members", cfg.members)
	res.param("conns", cfg.conns)
	sender, gid, ids, err := setupGroup(ctx, t, res, prog, cfg.members, "query")
	if err != nil {
		return err
	}
	defer sender.Close()
	n := len(ids)

	msgs, err := sendReceiptMessages(ctx, t, sender, gid, queryMessages, "query", func(*im.Message) {})
	if err != nil {
		return err
	}

	// Half of the members, chosen at random, read all the messages: each
	// logs in, sends one receipt call for all 100 and leaves.
	half := n / 2
	readers := rand.Perm(n)[:half]
	prog.set("setup receipts", int64(half), "members done", nil)
	setup := time.Now()
	setupCPU := startCPU(ctx, t)
	if err := forEach(ctx, half, cfg.conns, func(ctx context.Context, i int) error {
		c, err := t.dial(ctx, ids[readers[i]])
		if err != nil {
			return fmt.Errorf("member login: %w", err)
		}
		defer c.Close()
		if err := t.do(ctx, func() error { return c.SendMessageReadReceipts(ctx, msgs) }); err != nil {
			return fmt.Errorf("member receipts: %w", err)
		}
		prog.add(1)
		return nil
	}); err != nil {
		return err
	}
	el := time.Since(setup)
	setupCPU.snapshot(ctx).perOp(res, "setup_member", int64(half), fmt.Sprintf("member of the setup (connect, upgrade, login, sync, one call of %d receipts, close)", queryMessages))
	res.metric("setup_receipts_s", el.Seconds(), "s", fmt.Sprintf("%d members x %d receipts (one call each), %.0f receipts/s",
		half, queryMessages, perSec(float64(half*queryMessages), el)))

	target := msgs[0]
	listLat := startServerLat(ctx, t)
	listCPU := startCPU(ctx, t)
	pageN := int64(0)
	var pages [2]samples
	counts := [2]int{}
	for f, filter := range []im.GroupMessageReadMembersFilter{im.ReadMembersFilterRead, im.ReadMembersFilterUnread} {
		name := []string{"read", "unread"}[f]
		prog.set("walk "+name+" list", int64(queryWalks*(n/queryPage+1)), "pages", nil)
		for w := 0; w < queryWalks; w++ {
			total := 0
			var next uint64
			for {
				var page *im.GroupMessageReadMemberList
				c0 := time.Now()
				if err := t.do(ctx, func() error {
					var err error
					page, err = sender.GetGroupMessageReadMemberList(ctx, target, filter, next, queryPage)
					return err
				}); err != nil {
					return fmt.Errorf("%s list: %w", name, err)
				}
				pages[f].add(time.Since(c0))
				pageN++
				prog.add(1)
				total += len(page.Members)
				if page.IsFinished {
					break
				}
				if page.NextSeq == next && len(page.Members) == 0 {
					return fmt.Errorf("%s list: no progress at next_seq %d", name, next)
				}
				next = page.NextSeq
			}
			counts[f] = total
		}
	}
	listCPU.snapshot(ctx).perOp(res, "page", pageN, fmt.Sprintf("GetGroupMessageReadMemberList page of %d", queryPage))
	listLat.end(ctx).report(res, "the list walks", requestSeries("server_read_members", "read_members", "GetGroupMessageReadMemberList pages"))
	getLat := startServerLat(ctx, t)
	getCPU := startCPU(ctx, t)
	var get samples
	prog.set("get receipts", queryCalls, "calls", nil)
	var last []*im.MessageReceipt
	for i := 0; i < queryCalls; i++ {
		c0 := time.Now()
		if err := t.do(ctx, func() error {
			var err error
			last, err = sender.GetMessageReadReceipts(ctx, msgs)
			return err
		}); err != nil {
			return fmt.Errorf("get receipts: %w", err)
		}
		get.add(time.Since(c0))
		prog.add(1)
	}
	getCPU.snapshot(ctx).perOp(res, "get_receipts_call", queryCalls, fmt.Sprintf("GetMessageReadReceipts call for %d messages", queryMessages))
	getLat.end(ctx).report(res, "the get_receipts_100 loop", requestSeries("server_get_receipts", "get_receipts", "GetMessageReadReceipts calls"))

	res.latency("read_members_read_page", fmt.Sprintf("GetGroupMessageReadMemberList read, %d per page, client-side over loopback", queryPage), &pages[0])
	res.latency("read_members_unread_page", fmt.Sprintf("GetGroupMessageReadMemberList unread, %d per page, client-side over loopback", queryPage), &pages[1])
	res.latency("get_receipts_100", fmt.Sprintf("GetMessageReadReceipts for %d messages, client-side over loopback", queryMessages), &get)
	res.note("one client issues the queries one after another (no concurrency); walks: %d of each list", queryWalks)
	res.metric("read_list_members", float64(counts[0]), "", fmt.Sprintf("members in the read list (want %d)", half))
	res.metric("unread_list_members", float64(counts[1]), "", fmt.Sprintf("members in the unread list (want %d)", n-half))
	reportMemory(res, t)

	exact := counts[0] == half && counts[1] == n-half && len(last) == len(msgs)
	for _, r := range last {
		if r.ReadCount != uint64(half) || r.UnreadCount != uint64(n-half) {
			exact = false
		}
	}
	res.metric("verified_exact", boolf(exact), "bool", "list sizes and every message's ReadCount/UnreadCount as expected")
	if !exact {
		return fmt.Errorf("read state not exact: read list %d, unread list %d (want %d, %d)", counts[0], counts[1], half, n-half)
	}
	return nil
}
