package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/webhooks/webhooktest"
	"github.com/readmark/readmark/usersig"
	"github.com/readmark/readmark/webhook"
)

// proc is a readmarkd child process.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func startProc(t *testing.T, dir string) *proc {
	t.Helper()
	cmd, addr, lines, _ := startChild(t, "--data "+dir+" --listen 127.0.0.1:0 --log-level error --webhook-timeout 300ms"+
		" --webhook-backoff 10ms --webhook-backoff-max 100ms --webhook-max-attempts 100000")
	p := &proc{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() {
		for lines.Scan() {
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-p.done
}

// call does an admin REST call; it returns the status (0 if the request
// failed, as when the process died under it).
func (p *proc) call(tok, method, path string, body any) (int, map[string]any) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "http://"+p.addr+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (p *proc) must(t *testing.T, tok, method, path string, body any) map[string]any {
	t.Helper()
	code, out := p.call(tok, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return out
}

// Kill -9 the real server while it delivers webhooks to a flaky receiver,
// restart it on the same data: every event of an acknowledged receipt
// still arrives.
func TestWebhooksSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := t.TempDir()
	rcv := webhooktest.New("kill-secret", 7, webhooktest.Behaviour{
		Fail: 0.3, Hang: 0.1, Slow: 0.2, HangFor: 2 * time.Second, SlowFor: 30 * time.Millisecond,
	})
	defer rcv.Close()
	p := startProc(t, dir)
	secret, err := server.LoadSecret(filepath.Join(dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := usersig.Gen(secret, "administrator", time.Hour)
	p.must(t, tok, "PUT", "/v1/admin/settings", map[string]any{"read_receipt_group_types": []string{"Work"},
		"webhooks": []map[string]any{{"url": rcv.URL(), "events": webhook.Types, "secret": "kill-secret"}}})
	const n = 400
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprint("k", i)
	}
	p.must(t, tok, "POST", "/v1/admin/groups", map[string]any{"owner_id": "boss", "type": "Work", "group_id": "g", "member_ids": members})
	seq := p.must(t, tok, "POST", "/v1/admin/messages", map[string]any{"from": "boss", "group_id": "g", "text": "x", "need_read_receipt": true})["seq"]

	// Receipts from 8 workers; the process is killed after 150 answers.
	acked := make([]atomic.Bool, n)
	var answered atomic.Int32
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if code, _ := p.call(tok, "POST", "/v1/admin/receipts", map[string]any{"user_id": members[i], "group_id": "g", "seqs": []any{seq}}); code == http.StatusOK {
					acked[i].Store(true)
					answered.Add(1)
				}
			}
		})
	}
	killed := false
	for i := range members[:n/2+100] {
		work <- i
		if !killed && answered.Load() >= 150 {
			p.kill(t)
			killed = true
		}
	}
	close(work)
	wg.Wait()
	if !killed {
		p.kill(t)
	}
	before := rcv.Events()
	var ackedN int
	for i := range acked {
		if acked[i].Load() {
			ackedN++
		}
	}
	t.Logf("killed with %d receipts acknowledged, %d events received", ackedN, len(before))

	p = startProc(t, dir)
	// The rest of the members read after the restart.
	for i := range members {
		if !acked[i].Load() {
			p.must(t, tok, "POST", "/v1/admin/receipts", map[string]any{"user_id": members[i], "group_id": "g", "seqs": []any{seq}})
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		readers := map[string]bool{}
		var last *webhook.Event
		sent := false
		for _, e := range rcv.Events() {
			switch e.Type {
			case webhook.GroupReadReceipt:
				for _, r := range e.Readers {
					readers[r] = true
				}
				last = &e
			case webhook.MessageSent:
				sent = true
			}
		}
		if len(readers) == n && sent && last != nil && *last.ReadCount == n && *last.UnreadCount == 0 {
			break
		}
		if time.Now().After(deadline) {
			missing := 0
			for i, u := range members {
				if acked[i].Load() && !readers[u] {
					missing++
				}
			}
			t.Fatalf("after restart: %d of %d readers seen (%d acknowledged before the kill missing), message.sent %v", len(readers), n, missing, sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, bad := rcv.Stats(); bad != 0 {
		t.Fatalf("%d bad signatures", bad)
	}
}
