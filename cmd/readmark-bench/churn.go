package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/gateway"
	"github.com/readmark/readmark/usersig"
)

// runChurn: every member opens a bare WebSocket connection, sends one
// request, reads its answer and closes, at most --conns at once. Against
// Readmark the request is a login (valid token, no device ID); against an
// echo server (--url without --secret-file, e.g. --scenario echo-server)
// it is a 64-byte frame that must come back, --requests of them one after
// another. Nothing else runs, so the members/s and CPU per member are the
// cost of connections alone, the floor under fanin's member sessions (with
// --requests 21, under a --batch 1 member's login and 20 receipt calls).
func runChurn(ctx context.Context, cfg *config, t *target, res *Result, prog *progress) error {
	res.param("members", cfg.members)
	res.param("conns", cfg.conns)
	request := "login (protobuf LoginRequest, one user per member)"
	if t.echo {
		request = fmt.Sprintf("%d-byte binary frame echoed", baselineFrame)
		res.param("requests_per_member", cfg.requests)
	} else if cfg.requests != 1 {
		return errors.New("--requests applies to an echo server only: against Readmark a churn member's one request is its login")
	}
	res.param("request", request)

	var (
		sessLat samples
		done    atomic.Int64
	)
	prog.set("churn", int64(cfg.members), "members done", nil)
	start := time.Now()
	cpu := startCPU(ctx, t)
	err := forEach(ctx, cfg.members, cfg.conns, func(ctx context.Context, i int) error {
		s0 := time.Now()
		if err := t.do(ctx, func() error { return churnOne(ctx, t, i, cfg.requests) }); err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		sessLat.add(time.Since(s0))
		done.Add(1)
		prog.add(1)
		return nil
	})
	elapsed := time.Since(start)
	spent := cpu.snapshot(ctx)
	res.metric("members_done", float64(done.Load()), "", fmt.Sprintf("of %d", cfg.members))
	res.metric("members_per_s", perSec(float64(done.Load()), elapsed), "1/s", "members connected, answered and closed, per second")
	spent.cores(res, fmt.Sprintf("the run (%.1fs)", elapsed.Seconds()))
	spent.perOp(res, "member", done.Load(), "member (connect, upgrade, its requests and their answers, close)")
	res.latency("member_session", "dial -> answer read -> close handshake done", &sessLat)
	reportMemory(res, t)
	return err
}

// churnOne is one member's connection; requests is how many frames it has
// echoed (an echo server's), one after another.
func churnOne(ctx context.Context, t *target, i, requests int) error {
	url := t.urls[(t.next.Add(1)-1)%uint64(len(t.urls))]
	var opts websocket.DialOptions
	var req []byte
	if t.echo {
		req = make([]byte, baselineFrame)
	} else {
		user := t.user("c", i)
		tok, err := usersig.Gen(t.secret, user, time.Hour)
		if err != nil {
			return err
		}
		url = strings.TrimSuffix(url, "/") + gateway.Path
		opts.Subprotocols = []string{"readmark.v1.proto"}
		req, err = proto.Marshal(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
			ProtocolVersion: 1, UserId: user, Token: tok, Sdk: "readmark-bench-churn",
		}}})
		if err != nil {
			return err
		}
	}
	c, _, err := websocket.Dial(ctx, url, &opts)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	for range requests {
		if err := c.Write(ctx, websocket.MessageBinary, req); err != nil {
			return err
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := checkChurnAnswer(t, req, b); err != nil {
			return err
		}
	}
	return c.Close(websocket.StatusNormalClosure, "")
}

// checkChurnAnswer checks answer b to request req: its echo, or a
// successful login response.
func checkChurnAnswer(t *target, req, b []byte) error {
	if t.echo {
		if !bytes.Equal(b, req) {
			return errors.New("the answer is not the echo of the request (is --url an echo server? Readmark needs --secret-file)")
		}
		return nil
	}
	var resp pb.ServerFrame
	if err := proto.Unmarshal(b, &resp); err != nil {
		return fmt.Errorf("login answer: %w", err)
	}
	if e := resp.GetError(); e != nil {
		return fmt.Errorf("login refused: %d %s", e.GetCode(), e.GetDesc())
	}
	if resp.GetLogin() == nil {
		return errors.New("the answer is not a login response")
	}
	return nil
}

// runEchoServer serves a bare echo server (see echoServer) on --listen
// until interrupted or --timeout, for churn or baseline-like loads from
// another process, whose CPU it then does not share.
func runEchoServer(ctx context.Context, cfg *config, res *Result, logw io.Writer) error {
	e, err := startEcho(cfg.listen)
	if err != nil {
		return err
	}
	res.Target = e.url
	fmt.Fprintf(logw, "echo server on %s (CPU on %s/metrics); stop with ^C\n", e.url, "http"+e.url[len("ws"):])
	<-ctx.Done()
	e.close()
	res.metric("connections", float64(e.conns.Load()), "", "WebSocket connections accepted")
	res.metric("frames", float64(e.frames.Load()), "", "frames read (and echoed or sent to a room)")
	res.metric("cpu_s", selfCPU().Seconds(), "s", "CPU time of this echo server process")
	return nil
}
