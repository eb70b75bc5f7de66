// Package webhooktest is a webhook receiver for tests: it verifies each
// POST's signature, records the events, and can misbehave on purpose
// (fail, time out, answer slowly) with a seeded random choice.
package webhooktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/readmark/readmark/webhook"
)

// Behaviour is the share of POSTs (0..1 each) answered badly.
type Behaviour struct {
	Fail    float64       // 500
	Hang    float64       // wait Hang time (longer than the sender's timeout), then 200
	Slow    float64       // wait SlowFor, then 200
	HangFor time.Duration // how long a hanging answer waits
	SlowFor time.Duration
	Status  int // if set, every POST answers it
}

// Receiver records verified events.
type Receiver struct {
	srv    *httptest.Server
	secret []byte

	mu      sync.Mutex
	rnd     *rand.Rand
	b       Behaviour
	seen    map[string][]byte // event_id → its JSON
	order   []webhook.Event   // distinct events, in first-arrival order
	posts   int
	dups    int
	badSigs int
	changed chan struct{}
}

// New starts a receiver on loopback; Close stops it.
func New(secret string, seed uint64, b Behaviour) *Receiver {
	r := &Receiver{secret: []byte(secret), rnd: rand.New(rand.NewPCG(seed, seed)), b: b,
		seen: map[string][]byte{}, changed: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

// URL is where to POST.
func (r *Receiver) URL() string { return r.srv.URL + "/hook" }

// Close stops the receiver.
func (r *Receiver) Close() { r.srv.CloseClientConnections(); r.srv.Close() }

// SetBehaviour changes how it answers from now on.
func (r *Receiver) SetBehaviour(b Behaviour) {
	r.mu.Lock()
	r.b = b
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if err := webhook.Verify(r.secret, req.Header, body, 5*time.Minute); err != nil {
		r.mu.Lock()
		r.badSigs++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	b, x := r.b, r.rnd.Float64()
	r.posts++
	r.mu.Unlock()
	if b.Status != 0 {
		w.WriteHeader(b.Status)
		return
	}
	switch {
	case x < b.Fail:
		http.Error(w, "induced failure", http.StatusInternalServerError)
		return
	case x < b.Fail+b.Hang:
		// The sender gives up first; the events still count as seen,
		// as a real receiver may well have processed them.
		r.record(body)
		select {
		case <-time.After(b.HangFor):
		case <-req.Context().Done():
		}
		return
	case x < b.Fail+b.Hang+b.Slow:
		time.Sleep(b.SlowFor)
	}
	r.record(body)
	w.WriteHeader(http.StatusNoContent)
}

func (r *Receiver) record(body []byte) {
	var p struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		panic(fmt.Sprintf("webhooktest: body %s: %v", body, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, raw := range p.Events {
		var ev webhook.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			panic(err)
		}
		if prev, ok := r.seen[ev.EventID]; ok {
			r.dups++
			if !bytes.Equal(prev, raw) {
				panic(fmt.Sprintf("webhooktest: event %s delivered with different content:\n%s\n%s", ev.EventID, prev, raw))
			}
			continue
		}
		r.seen[ev.EventID] = bytes.Clone(raw)
		r.order = append(r.order, ev)
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Events returns the distinct events in first-arrival order.
func (r *Receiver) Events() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.order...)
}

// Raw returns the JSON of each distinct event.
func (r *Receiver) Raw() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, 0, len(r.seen))
	for _, raw := range r.seen {
		out = append(out, raw)
	}
	return out
}

// Stats returns POSTs answered, duplicate events and rejected signatures.
func (r *Receiver) Stats() (posts, dups, badSigs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts, r.dups, r.badSigs
}
