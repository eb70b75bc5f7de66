package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// samples is a latency histogram: every sample kept, sorted on demand.
// Safe for concurrent use.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

func (s *samples) addAll(ds []time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, ds...)
	s.mu.Unlock()
}

// Summary is the distribution of a set of latencies, in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func (s *samples) summary() Summary {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum float64
	for _, x := range d {
		sum += ms(x)
	}
	return Summary{
		Count: len(d),
		Min:   ms(d[0]),
		Mean:  sum / float64(len(d)),
		P50:   ms(quantile(d, 0.50)),
		P90:   ms(quantile(d, 0.90)),
		P99:   ms(quantile(d, 0.99)),
		P999:  ms(quantile(d, 0.999)),
		Max:   ms(d[len(d)-1]),
	}
}

// quantile is the nearest-rank quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ackEv is an acknowledged receipt: at time t (since the run's start) the
// k-th receipt of its message was acknowledged.
type ackEv struct {
	t time.Duration
	k uint64
}

// pushEv is a receipt push seen by the sender: at time t the pushed
// ReadCount was count.
type pushEv struct {
	t     time.Duration
	count uint64
}

// msgTrack follows one message's receipts: acknowledgements on the readers'
// side and pushes on the sender's.
type msgTrack struct {
	acks   []ackEv
	pushes []pushEv
	acked  uint64
	maxCnt uint64
}

// tracker pairs receipt acknowledgements with the sender's pushes, per
// message. Acks are numbered under the lock together with their time, so k
// grows with t for each message.
type tracker struct {
	start time.Time
	mu    sync.Mutex
	msgs  map[string]*msgTrack
}

func newTracker(start time.Time) *tracker {
	return &tracker{start: start, msgs: make(map[string]*msgTrack)}
}

func (tr *tracker) get(id string) *msgTrack {
	m := tr.msgs[id]
	if m == nil {
		m = &msgTrack{}
		tr.msgs[id] = m
	}
	return m
}

// acked records that a receipt call for ids returned successfully.
func (tr *tracker) acked(ids []string) {
	tr.mu.Lock()
	t := time.Since(tr.start)
	for _, id := range ids {
		m := tr.get(id)
		m.acked++
		m.acks = append(m.acks, ackEv{t: t, k: m.acked})
	}
	tr.mu.Unlock()
}

// pushed records a push of id's ReadCount and returns the highest count
// seen for it so far.
func (tr *tracker) pushed(id string, count uint64) uint64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := tr.get(id)
	m.pushes = append(m.pushes, pushEv{t: time.Since(tr.start), count: count})
	m.maxCnt = max(m.maxCnt, count)
	return m.maxCnt
}

// catchUpMethod explains catchUp in the report.
const catchUpMethod = "receipt->push latency (catch-up method): for each acknowledged receipt of message X " +
	"(its SendMessageReadReceipts call returned) let k be the number of receipts of X acknowledged so far, " +
	"itself included; the latency is the time until the sender first holds a pushed ReadCount >= k for X. " +
	"The server counts every acknowledged receipt (it acks after the durable commit) and pushes counts in " +
	"non-decreasing order, so this is how long the sender's view lags behind what readers were told is " +
	"recorded. A push that arrives before the ack (they race on different connections) counts as 0 (clamped). " +
	"Client-side times on one clock; callback dispatch delay on the sender included."

// catchUp computes the catch-up latencies (see catchUpMethod) over all
// messages, the number clamped to 0 and the number never caught up.
func (tr *tracker) catchUp() (lat []time.Duration, clamped, missing int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, m := range tr.msgs {
		run := make([]uint64, len(m.pushes))
		var hi uint64
		for i, p := range m.pushes {
			hi = max(hi, p.count)
			run[i] = hi
		}
		for _, a := range m.acks {
			j, _ := slices.BinarySearch(run, a.k)
			if j == len(run) {
				missing++
				continue
			}
			d := m.pushes[j].t - a.t
			if d <= 0 {
				d = 0
				clamped++
			}
			lat = append(lat, d)
		}
	}
	return lat, clamped, missing
}

// pushStats returns the number of pushed receipt entries and the most
// pushes one message got within one wall-clock second of the run.
func (tr *tracker) pushStats() (total int, maxPerMsgSec int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, m := range tr.msgs {
		total += len(m.pushes)
		per := map[int64]int{}
		for _, p := range m.pushes {
			s := int64(p.t / time.Second)
			per[s]++
			maxPerMsgSec = max(maxPerMsgSec, per[s])
		}
	}
	return total, maxPerMsgSec
}

// lastAck is the time of the latest acknowledgement.
func (tr *tracker) lastAck() time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var t time.Duration
	for _, m := range tr.msgs {
		if n := len(m.acks); n > 0 {
			t = max(t, m.acks[n-1].t)
		}
	}
	return t
}

// maxCount is the highest ReadCount pushed for id so far.
func (tr *tracker) maxCount(id string) uint64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if m := tr.msgs[id]; m != nil {
		return m.maxCnt
	}
	return 0
}
