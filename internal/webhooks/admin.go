package webhooks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/readmark/readmark/internal/storage"
)

// Status is the delivery state shown by GET /v1/admin/webhooks/status.
type Status struct {
	OutboxDepth int64  `json:"outbox_depth"`
	OutboxMax   int    `json:"outbox_max"`
	Parked      int64  `json:"parked"`
	ParkedMax   int    `json:"parked_max"`
	Delivered   uint64 `json:"delivered_total"`
	Retried     uint64 `json:"retried_total"`
	ParkedTotal uint64 `json:"parked_total"`
	Dropped     uint64 `json:"dropped_total"`
}

// Status returns the delivery state (counters since start).
func (o *Outbox) Status() Status {
	return Status{
		OutboxDepth: o.depth.Load(), OutboxMax: o.cfg.MaxOutbox,
		Parked: o.parked.Load(), ParkedMax: o.cfg.MaxParked,
		Delivered: counterValue(o.m.delivered), Retried: counterValue(o.m.retried),
		ParkedTotal: counterValue(o.m.parked), Dropped: counterValue(o.m.dropped),
	}
}

// ParkedEvent is a parked event as GET /v1/admin/webhooks/parked lists it.
type ParkedEvent struct {
	ID        uint64          `json:"id"`
	URL       string          `json:"url"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error"`
	ParkedMs  int64           `json:"parked_ms"`
	Event     json.RawMessage `json:"event"`
}

// Parked lists up to limit parked events, oldest first, from ID after on.
func (o *Outbox) Parked(ctx context.Context, after uint64, limit int) ([]ParkedEvent, error) {
	out := []ParkedEvent{}
	err := o.scanParked(ctx, after, limit, func(id uint64, r parkedRecord) {
		out = append(out, ParkedEvent{ID: id, URL: r.URL, Attempts: r.Attempts, LastError: r.LastError, ParkedMs: r.ParkedMs, Event: r.Event})
	})
	return out, err
}

func (o *Outbox) scanParked(ctx context.Context, after uint64, limit int, fn func(id uint64, r parkedRecord)) error {
	var decErr error
	n := 0
	err := o.cfg.Store.Scan(ctx, parkedKey(after+1), storage.PrefixEnd(parkedPrefix()), false, func(k, v []byte) bool {
		var r parkedRecord
		if err := json.Unmarshal(v, &r); err != nil {
			decErr = fmt.Errorf("parked record %x: %w", k, err)
			return false
		}
		fn(storage.Uint64Suffix(k), r)
		n++
		return n < limit
	})
	if err == nil {
		err = decErr
	}
	return err
}

// Replay moves up to limit parked events (oldest first) back into the
// outbox, with their event IDs, to be delivered again to every endpoint
// that wants them (receivers de-duplicate by event_id). Events of
// partitions this node does not own are left for their owner. It returns
// how many it moved.
func (o *Outbox) Replay(ctx context.Context, limit int) (int, error) {
	type item struct {
		id uint64
		r  parkedRecord
	}
	var items []item
	if err := o.scanParked(ctx, 0, limit, func(id uint64, r parkedRecord) { items = append(items, item{id, r}) }); err != nil {
		return 0, err
	}
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	var take []item
	for _, it := range items {
		if o.depth.Load()+int64(len(take)) >= int64(o.cfg.MaxOutbox) {
			break // full: the rest stay parked
		}
		release, ok := o.cfg.Owner(it.r.Partition)
		if !ok {
			continue
		}
		releases = append(releases, release)
		take = append(take, it)
	}
	if len(take) == 0 {
		return 0, nil
	}
	err := o.cfg.Committer.Commit(ctx, func(b *storage.Batch) {
		for _, it := range take {
			o.addRaw(b, it.r.Partition, it.r.Event)
			b.Delete(parkedKey(it.id))
		}
	})
	if err != nil {
		return 0, err
	}
	o.parked.Add(-int64(len(take)))
	return len(take), nil
}

func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}
