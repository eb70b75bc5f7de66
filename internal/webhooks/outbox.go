// Package webhooks owns Readmark's webhooks: a durable outbox of events,
// written in the same storage batch as the change that caused them, and the
// delivery loops that POST them, signed, to the endpoints configured in the
// settings, at least once.
//
// Key space:
//
//	wo/<partition>/<seq>   outbox: one event (its delivery JSON), in the
//	                       order of the commits that wrote it
//	wp/<seq>               parked: an event an endpoint did not take after
//	                       the bounded retries (JSON parkedRecord)
//
// The partition is cluster.Of(conversation key), so each conversation's
// events are in one partition, in order. One goroutine per partition
// delivers them in that order (Config.Owner says which partitions this node
// delivers); a failing endpoint delays only its partitions' later events,
// until its retries end and the events are parked.
//
// Locks: seqMu guards the per-partition outbox seqs; it is taken by Add on
// the commit goroutine and by Release, and nothing else is acquired while
// it is held.
package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/webhook"
)

// Recorder records webhook events in the storage batch of the change that
// causes them, so that the event is durable exactly when the change is.
// The services call it from their Committer prepare functions.
type Recorder interface {
	// Wants reports whether any endpoint wants events of type typ; callers
	// skip building events nobody wants.
	Wants(typ string) bool
	// Add adds ev to b. It sets the event's ID (and its time, if zero).
	// convKey names the event's conversation (package conv).
	Add(b *storage.Batch, convKey string, ev *webhook.Event)
}

// Config configures an Outbox. Zero values take the defaults.
type Config struct {
	Store     storage.Store
	Committer *storage.Committer // for replays
	// Owner admits delivery work on a partition while this node owns it
	// (cluster.Ownership.Enter); nil = every partition is owned here.
	Owner  func(p uint32) (release func(), ok bool)
	Client *http.Client
	// Timeout bounds one POST (5s).
	Timeout time.Duration
	// Window is how long a woken partition waits for more events before
	// sending, so that a burst of receipts goes out in one POST (50ms).
	Window time.Duration
	// Poll is how often an idle partition looks for events it was not woken
	// for, e.g. written before a restart or by another node (2s).
	Poll time.Duration
	// MaxBatch bounds the events of one POST (100).
	MaxBatch int
	// MaxAttempts and MaxAge bound the retries of a POST: after that many
	// attempts, or once its oldest event is that old, its events are parked
	// (8 attempts, 1h).
	MaxAttempts int
	MaxAge      time.Duration
	// BackoffBase and BackoffMax shape the exponential backoff between
	// attempts: base·2^(n-1), at most max, with full jitter over its upper
	// half (1s, 5m).
	BackoffBase, BackoffMax time.Duration
	// MaxOutbox bounds the events waiting in the outbox (100,000, roughly
	// 50 MB of storage at typical sizes). When full, new events are not
	// recorded: they are counted in readmark_webhook_dropped_total and the
	// status, and the change that caused them goes ahead unhindered.
	MaxOutbox int
	// MaxParked bounds the parked events (100,000); beyond it further
	// events to park are dropped (counted like the above).
	MaxParked int
	Registry  prometheus.Registerer
	Logger    *slog.Logger
	Now       func() time.Time
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Timeout, 5*time.Second)
	set(&c.Window, 50*time.Millisecond)
	set(&c.Poll, 2*time.Second)
	set(&c.MaxAge, time.Hour)
	set(&c.BackoffBase, time.Second)
	set(&c.BackoffMax, 5*time.Minute)
	for _, p := range []struct {
		v   *int
		def int
	}{{&c.MaxBatch, 100}, {&c.MaxAttempts, 8}, {&c.MaxOutbox, 100_000}, {&c.MaxParked, 100_000}} {
		if *p.v <= 0 {
			*p.v = p.def
		}
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Owner == nil {
		c.Owner = func(uint32) (func(), bool) { return func() {}, true }
	}
}

// Outbox records events and delivers them. Close stops its goroutines.
type Outbox struct {
	cfg  Config
	eps  atomic.Pointer[endpointSet]
	boot string // random per process: event IDs are boot + counter
	ctr  atomic.Uint64

	seqMu  sync.Mutex
	next   [cluster.Partitions]uint64 // next outbox seq; 0 = load from storage
	parkMu sync.Mutex
	parkSq uint64

	depth, parked atomic.Int64
	wake          [cluster.Partitions]chan struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	m      metrics
}

type metrics struct {
	delivered, retried, parked, dropped prometheus.Counter
}

var _ Recorder = (*Outbox)(nil)

// New loads the outbox's state and starts one delivery goroutine per
// partition.
func New(ctx context.Context, cfg Config) (*Outbox, error) {
	cfg.defaults()
	o := &Outbox{cfg: cfg}
	var b [8]byte
	rand.Read(b[:])
	o.boot = hex.EncodeToString(b[:])
	o.eps.Store(newEndpointSet(nil))
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		if cfg.Registry != nil {
			cfg.Registry.MustRegister(c)
		}
		return c
	}
	o.m = metrics{
		delivered: counter("readmark_webhook_delivered_total", "Webhook events an endpoint acknowledged (2xx)."),
		retried:   counter("readmark_webhook_retried_total", "Webhook POSTs retried after a timeout, network error or 5xx."),
		parked:    counter("readmark_webhook_parked_total", "Webhook events parked after bounded retries (see /v1/admin/webhooks/parked)."),
		dropped:   counter("readmark_webhook_dropped_total", "Webhook events not recorded because the outbox (or the parked list) was full."),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "readmark_webhook_outbox_depth", Help: "Webhook events waiting in the outbox."},
				func() float64 { return float64(o.depth.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "readmark_webhook_parked_depth", Help: "Parked webhook events."},
				func() float64 { return float64(o.parked.Load()) }))
	}
	n, err := o.count(ctx, storage.Key("wo"))
	if err != nil {
		return nil, fmt.Errorf("webhooks: counting the outbox: %w", err)
	}
	o.depth.Store(n)
	if n, err = o.count(ctx, storage.Key("wp")); err != nil {
		return nil, fmt.Errorf("webhooks: counting parked events: %w", err)
	}
	o.parked.Store(n)
	if o.parkSq, err = o.head(ctx, parkedPrefix()); err != nil {
		return nil, err
	}
	for p := range cluster.Partitions {
		if o.next[p], err = o.head(ctx, outboxPrefix(uint32(p))); err != nil {
			return nil, err
		}
		o.next[p]++
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	for p := range cluster.Partitions {
		o.wake[p] = make(chan struct{}, 1)
		o.wg.Add(1)
		go o.run(uint32(p))
	}
	return o, nil
}

// Close stops delivery, cutting POSTs in flight (their events stay in the
// outbox and are sent again after a restart), and waits for its goroutines.
// Call it before closing the Store.
func (o *Outbox) Close() {
	o.cancel()
	o.wg.Wait()
}

// SetEndpoints replaces the endpoints (from the settings).
func (o *Outbox) SetEndpoints(eps []Endpoint) { o.eps.Store(newEndpointSet(eps)) }

// Release forgets partition p's outbox seq, after this node stopped owning
// it (cluster.Ownership.OnRelease): the next owner writes it, and if p
// comes back the seq is read again from storage.
func (o *Outbox) Release(p uint32) {
	o.seqMu.Lock()
	o.next[p] = 0
	o.seqMu.Unlock()
}

func outboxPrefix(p uint32) []byte { return append(storage.Key("wo", strconv.Itoa(int(p))), '/') }
func outboxKey(p uint32, seq uint64) []byte {
	return storage.AppendUint64(storage.Key("wo", strconv.Itoa(int(p))), seq)
}
func parkedPrefix() []byte        { return append(storage.Key("wp"), '/') }
func parkedKey(seq uint64) []byte { return storage.AppendUint64(storage.Key("wp"), seq) }

// count returns the number of keys under prefix p/.
func (o *Outbox) count(ctx context.Context, p []byte) (int64, error) {
	p = append(p, '/')
	var n int64
	err := o.cfg.Store.Scan(ctx, p, storage.PrefixEnd(p), false, func(_, _ []byte) bool { n++; return true })
	return n, err
}

// head returns the highest seq under prefix (keys prefix + big-endian seq).
func (o *Outbox) head(ctx context.Context, prefix []byte) (uint64, error) {
	var head uint64
	err := o.cfg.Store.Scan(ctx, prefix, storage.PrefixEnd(prefix), true, func(k, _ []byte) bool {
		head = storage.Uint64Suffix(k)
		return false
	})
	return head, err
}

// Wants implements Recorder.
func (o *Outbox) Wants(typ string) bool { return o.eps.Load().wants[typ] }

// Add implements Recorder. It runs on the commit goroutine, so the outbox
// seqs of a partition follow the commit order.
func (o *Outbox) Add(b *storage.Batch, convKey string, ev *webhook.Event) {
	if o.depth.Load() >= int64(o.cfg.MaxOutbox) {
		o.m.dropped.Inc()
		return
	}
	ev.EventID = o.boot + "-" + strconv.FormatUint(o.ctr.Add(1), 36)
	if ev.TimeMs == 0 {
		ev.TimeMs = o.cfg.Now().UnixMilli()
	}
	raw, err := json.Marshal(ev)
	if err != nil { // only plain fields: cannot happen
		o.cfg.Logger.Error("webhooks: encoding an event", "err", err)
		return
	}
	o.addRaw(b, cluster.Of(convKey), raw)
}

func (o *Outbox) addRaw(b *storage.Batch, p uint32, raw []byte) {
	o.seqMu.Lock()
	if o.next[p] == 0 {
		// Re-acquired partition: continue after what the last owner wrote.
		head, err := o.head(context.Background(), outboxPrefix(p))
		if err != nil {
			o.seqMu.Unlock()
			o.m.dropped.Inc()
			o.cfg.Logger.Error("webhooks: reading the outbox head", "partition", p, "err", err)
			return
		}
		o.next[p] = head + 1
	}
	seq := o.next[p]
	o.next[p]++
	o.seqMu.Unlock()
	b.Fence(p)
	b.Set(outboxKey(p, seq), raw)
	o.depth.Add(1)
	// Delivery starts once the event is durable. Not at the next group
	// commit's end: the Committer prepares a batch while the previous one
	// syncs, so that one may end before this event is written.
	b.OnApplied(func(err error) {
		if err == nil {
			select {
			case o.wake[p] <- struct{}{}:
			default:
			}
		}
	})
}
