package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/storage/pebblestore"
	"github.com/readmark/readmark/usersig"
)

// target is the server under test: embedded in this process or remote.
type target struct {
	url    string   // as given (comma-separated with several nodes)
	urls   []string // each node's, users spread round-robin over them
	next   atomic.Uint64
	secret []byte
	srv    *server.Server // nil when remote
	dir    string         // embedded data dir, removed by close
	pid    int            // process to read /proc of (0: none)
	prefix string         // makes this run's user IDs unique
	retry  atomic.Int64   // retried dials and calls
	echo   bool           // a bare echo server (churn with --url and no --secret-file)
}

func startTarget(ctx context.Context, cfg *config, logw io.Writer) (*target, error) {
	t := &target{prefix: "rb" + randHex(3) + "-"}
	if cfg.url != "" {
		t.url, t.pid = cfg.url, cfg.serverPID
		for u := range strings.SplitSeq(cfg.url, ",") {
			if u = strings.TrimSpace(u); u != "" {
				t.urls = append(t.urls, u)
			}
		}
		if cfg.secretFile == "" { // only churn gets here (parseFlags)
			t.echo = true
			return t, nil
		}
		raw, err := os.ReadFile(cfg.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--url needs --secret-file: %w", err)
		}
		t.secret = []byte(strings.TrimSpace(string(raw)))
		if len(t.secret) == 0 {
			return nil, fmt.Errorf("secret file %s is empty", cfg.secretFile)
		}
		return t, nil
	}
	dir, err := os.MkdirTemp("", "readmark-bench-")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := server.Start(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: dir, Logger: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting embedded server: %w", err)
	}
	t.srv, t.dir, t.url, t.secret, t.pid = srv, dir, srv.URL(), srv.Secret(), os.Getpid()
	t.urls = []string{t.url}
	return t, nil
}

func (t *target) name() string {
	if t.srv != nil {
		return "embedded server " + t.url
	}
	return t.url
}

func (t *target) close() error {
	if t.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := t.srv.Shutdown(ctx)
	return errors.Join(err, os.RemoveAll(t.dir))
}

// pebble returns the embedded Pebble store, or nil.
func (t *target) pebble() *pebblestore.Store {
	if t.srv == nil {
		return nil
	}
	ps, _ := t.srv.Store().(*pebblestore.Store)
	return ps
}

func (t *target) user(kind string, i int) string { return fmt.Sprintf("%s%s%06d", t.prefix, kind, i) }

// dial logs user in on its own connection, retrying transient failures.
func (t *target) dial(ctx context.Context, user string, opts ...im.Option) (*im.Client, error) {
	tok, err := usersig.Gen(t.secret, user, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	opts = append([]im.Option{im.WithReconnect(false), im.WithSDKName("readmark-bench")}, opts...)
	var c *im.Client
	url := t.urls[(t.next.Add(1)-1)%uint64(len(t.urls))]
	err = t.do(ctx, func() error {
		var err error
		c, err = im.Dial(ctx, url, user, tok, opts...)
		return err
	})
	return c, err
}

// do runs f, retrying up to 5 times (with backoff) errors that may pass:
// rate limiting, lost connections, transport errors.
func (t *target) do(ctx context.Context, f func() error) error {
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || attempt == 5 || ctx.Err() != nil || !transient(err) {
			return err
		}
		t.retry.Add(1)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff *= 2
	}
}

func transient(err error) bool {
	var ie *im.Error
	if errors.As(err, &ie) {
		return ie.Code == im.CodeRateLimited || ie.Code == im.CodeUnavailable
	}
	return !errors.Is(err, context.Canceled)
}

// forEach runs fn(i) for every i in [0, n) with at most limit running at
// once. The first error cancels the rest and is returned.
func forEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  atomic.Int64
	)
	// A fixed pool of workers taking the items in order, rather than a
	// goroutine per item: a worker's stack, grown by its first item (login,
	// protobuf decoding), serves the next ones. A goroutine per fanin
	// member grew a fresh stack each time.
	for range min(n, max(1, limit)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// inviteAll creates a Work group owned by c with members, 1,000 IDs per call.
func createGroup(ctx context.Context, t *target, c *im.Client, name string, members []string) (string, error) {
	const per = 1000
	first := members[:min(len(members), per-1)]
	var gid string
	err := t.do(ctx, func() error {
		var err error
		gid, err = c.CreateGroup(ctx, im.GroupWork, "", name, first...)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create group: %w", err)
	}
	for i := len(first); i < len(members); i += per {
		chunk := members[i:min(i+per, len(members))]
		if err := t.do(ctx, func() error { return c.InviteUserToGroup(ctx, gid, chunk) }); err != nil {
			return "", fmt.Errorf("invite members %d..%d: %w", i, i+len(chunk), err)
		}
	}
	return gid, nil
}

// maxReaders caps a group's non-sender members to what the server allows.
func maxReaders(r *Result, c *im.Client, want int) int {
	limit := c.Limits().MaxGroupMembers
	if limit > 0 && want+1 > limit {
		r.note("the server caps groups at %d members including the sender: using %d members besides the sender instead of %d", limit, limit-1, want)
		return limit - 1
	}
	return want
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// procStatusKB reads a "Vm..." line of /proc/PID/status, in KiB.
func procStatusKB(pid int, field string) (uint64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, err := strconv.ParseUint(f[0], 10, 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// reportMemory adds the server's peak and current RSS.
func reportMemory(r *Result, t *target) {
	if t.pid == 0 {
		r.note("server RSS not measured: remote server without --server-pid")
		return
	}
	if hwm, ok := procStatusKB(t.pid, "VmHWM"); ok {
		r.metric("rss_peak_mib", float64(hwm)/1024, "MiB", "server process peak RSS (VmHWM)")
	}
	if rss, ok := procStatusKB(t.pid, "VmRSS"); ok {
		r.metric("rss_end_mib", float64(rss)/1024, "MiB", "server process RSS at the end (VmRSS)")
	}
	if t.srv != nil {
		r.note("embedded mode: RSS and CPU are of the whole process, i.e. server AND all simulated clients; run readmarkd separately with --url/--secret-file/--server-pid for server-only numbers")
	}
}

func perSec(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

// setupGroup logs the sender in and creates a Work group of (up to) members
// readers besides it, recording the setup time. The caller closes sender.
func setupGroup(ctx context.Context, t *target, res *Result, prog *progress, members int, name string, opts ...im.Option) (sender *im.Client, gid string, ids []string, err error) {
	prog.set("login sender", 0, "", nil)
	sender, err = t.dial(ctx, t.user("sender", 0), opts...)
	if err != nil {
		return nil, "", nil, fmt.Errorf("sender login: %w", err)
	}
	n := maxReaders(res, sender, members)
	res.param("readers", n)
	ids = make([]string, n)
	for i := range ids {
		ids[i] = t.user("m", i)
	}
	prog.set("create group", 0, "", nil)
	setup := time.Now()
	if gid, err = createGroup(ctx, t, sender, name, ids); err != nil {
		sender.Close()
		return nil, "", nil, err
	}
	res.metric("group_setup_s", time.Since(setup).Seconds(), "s", fmt.Sprintf("create + invite %d members (1,000 per call)", n))
	return sender, gid, ids, nil
}

// sendReceiptMessages sends n text messages needing read receipts to a
// group, calling sent after each.
func sendReceiptMessages(ctx context.Context, t *target, sender *im.Client, gid string, n int, label string, sent func(*im.Message)) ([]*im.Message, error) {
	msgs := make([]*im.Message, n)
	for i := range msgs {
		m := sender.CreateTextMessage(fmt.Sprintf("%s message %d", label, i))
		m.NeedReadReceipt = true
		if err := t.do(ctx, func() error {
			_, err := sender.SendMessage(ctx, m, "", gid, im.PriorityDefault, false)
			return err
		}); err != nil {
			return nil, fmt.Errorf("send message %d: %w", i, err)
		}
		msgs[i] = m
		sent(m)
	}
	return msgs, nil
}
