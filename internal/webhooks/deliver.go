package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/webhook"
)

// run is partition p's delivery goroutine.
func (o *Outbox) run(p uint32) {
	defer o.wg.Done()
	tick := time.NewTicker(o.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-tick.C:
		case <-o.wake[p]:
			// Let a burst gather so it goes out in one POST.
			if !o.sleep(o.cfg.Window) {
				return
			}
		}
		o.drain(p)
	}
}

// sleep waits d; false if the outbox closed meanwhile.
func (o *Outbox) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-o.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pending is one outbox event read for delivery.
type pending struct {
	key  []byte
	raw  []byte
	typ  string
	time int64
}

// drain delivers partition p's events, oldest first, while it has some
// and this node owns p.
func (o *Outbox) drain(p uint32) {
	for o.ctx.Err() == nil {
		if len(o.eps.Load().list) == 0 {
			return // nobody to deliver to: the events wait (bounded)
		}
		release, ok := o.cfg.Owner(p)
		if !ok {
			return
		}
		batch, err := o.read(p)
		release()
		if err != nil {
			if o.ctx.Err() == nil {
				o.cfg.Logger.Warn("webhooks: reading the outbox", "partition", p, "err", err)
			}
			return
		}
		if len(batch) == 0 {
			return
		}
		parked, ok := o.deliver(p, batch)
		if !ok {
			return // closing: the events stay for the next start
		}
		if err := o.finish(batch, parked); err != nil {
			o.cfg.Logger.Warn("webhooks: removing delivered events", "partition", p, "err", err)
			return
		}
	}
}

func (o *Outbox) read(p uint32) ([]pending, error) {
	var batch []pending
	var decErr error
	prefix := outboxPrefix(p)
	err := o.cfg.Store.Scan(o.ctx, prefix, storage.PrefixEnd(prefix), false, func(k, v []byte) bool {
		var head struct {
			Type   string `json:"type"`
			TimeMs int64  `json:"time_ms"`
		}
		if err := json.Unmarshal(v, &head); err != nil {
			decErr = fmt.Errorf("outbox record %x: %w", k, err)
			return false
		}
		batch = append(batch, pending{key: bytes.Clone(k), raw: bytes.Clone(v), typ: head.Type, time: head.TimeMs})
		return len(batch) < o.cfg.MaxBatch
	})
	if err == nil {
		err = decErr
	}
	return batch, err
}

// parkedRecord is a parked event: the endpoint that did not take it, why,
// and the event itself.
type parkedRecord struct {
	URL       string          `json:"url"`
	Partition uint32          `json:"partition"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error"`
	ParkedMs  int64           `json:"parked_ms"`
	Event     json.RawMessage `json:"event"`
}

// target is one endpoint's share of a batch.
type target struct {
	url  string
	body []byte
	evs  []int // indexes into the batch
	err  error
}

// deliver POSTs the batch to every endpoint that wants some of its events,
// retrying failures with backoff, and returns what it parks. ok is false if
// the outbox closed first.
func (o *Outbox) deliver(p uint32, batch []pending) (parked []parkedRecord, ok bool) {
	eps := o.eps.Load()
	var todo []*target
	for _, ep := range eps.list {
		t := &target{url: ep.URL}
		var buf bytes.Buffer
		buf.WriteString(`{"events":[`)
		for i, ev := range batch {
			if !slices.Contains(ep.Events, ev.typ) {
				continue
			}
			if len(t.evs) > 0 {
				buf.WriteByte(',')
			}
			buf.Write(ev.raw)
			t.evs = append(t.evs, i)
		}
		buf.WriteString(`]}`)
		if len(t.evs) > 0 {
			t.body = buf.Bytes()
			todo = append(todo, t)
		}
	}
	oldest := batch[0].time
	for attempt := 1; ; attempt++ {
		var retry []*target
		for _, t := range todo {
			ep, still := o.eps.Load().find(t.url)
			if !still {
				continue // removed from the settings: nobody to deliver to
			}
			t.err = o.post(ep, t.body)
			switch {
			case t.err == nil:
				o.m.delivered.Add(float64(len(t.evs)))
			case o.ctx.Err() != nil:
				return nil, false
			case errors.Is(t.err, errPermanent):
				parked = append(parked, o.park(p, t, attempt, batch)...)
			default:
				retry = append(retry, t)
			}
		}
		todo = retry
		if len(todo) == 0 {
			return parked, true
		}
		if attempt >= o.cfg.MaxAttempts || o.cfg.Now().Sub(time.UnixMilli(oldest)) >= o.cfg.MaxAge {
			for _, t := range todo {
				parked = append(parked, o.park(p, t, attempt, batch)...)
			}
			return parked, true
		}
		o.m.retried.Add(float64(len(todo)))
		if !o.sleep(o.backoff(attempt)) {
			return nil, false
		}
	}
}

func (o *Outbox) park(p uint32, t *target, attempts int, batch []pending) []parkedRecord {
	now := o.cfg.Now().UnixMilli()
	o.cfg.Logger.Warn("webhooks: parking events", "url", t.url, "events", len(t.evs), "attempts", attempts, "err", t.err)
	out := make([]parkedRecord, len(t.evs))
	for i, j := range t.evs {
		out[i] = parkedRecord{URL: t.url, Partition: p, Attempts: attempts, LastError: t.err.Error(), ParkedMs: now, Event: batch[j].raw}
	}
	return out
}

// backoff is the wait after attempt n: base·2^(n-1) capped at max, jittered
// over its upper half so that endpoints recovering together are not hit in
// lockstep.
func (o *Outbox) backoff(n int) time.Duration {
	d := o.cfg.BackoffMax
	if n < 30 {
		d = min(o.cfg.BackoffBase<<(n-1), o.cfg.BackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

var errPermanent = errors.New("rejected")

// post sends one signed POST. A 2xx is success; 4xx other than 408 and
// 429 is permanent (wrapping errPermanent); anything else is retried.
func (o *Outbox) post(ep Endpoint, body []byte) error {
	ctx, cancel := context.WithTimeout(o.ctx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	ts := o.cfg.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Readmark-Webhooks/1")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(ep.Secret), ts, body))
	resp, err := o.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests:
		return fmt.Errorf("%w: HTTP %d", errPermanent, c)
	default:
		return fmt.Errorf("HTTP %d", c)
	}
}

// finish removes a delivered batch from the outbox and stores what was
// parked. Without parked events the deletions need no sync: if they are
// lost in a crash, the events are simply delivered again.
func (o *Outbox) finish(batch []pending, parked []parkedRecord) error {
	b := &storage.Batch{}
	for _, ev := range batch {
		b.Delete(ev.key)
	}
	kept := 0
	if len(parked) > 0 {
		o.parkMu.Lock()
		defer o.parkMu.Unlock()
		for _, r := range parked {
			if o.parked.Load()+int64(kept) >= int64(o.cfg.MaxParked) {
				o.m.dropped.Inc()
				continue
			}
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			o.parkSq++
			b.Set(parkedKey(o.parkSq), v)
			kept++
		}
	}
	if err := o.cfg.Store.Apply(o.ctx, b, len(parked) > 0); err != nil {
		return err
	}
	o.depth.Add(-int64(len(batch)))
	o.parked.Add(int64(kept))
	o.m.parked.Add(float64(kept))
	return nil
}
