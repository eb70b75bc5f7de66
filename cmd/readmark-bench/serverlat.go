package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// The server's latency histograms the load tool reads.
var serverHistFamilies = []string{"readmark_request_seconds", "readmark_group_commit_seconds",
	"readmark_receipt_push_wait_seconds", "readmark_push_write_seconds"}

// serverSeries is one server histogram series reported under a metric
// prefix: prefix_p50_ms, _p99_ms, _p99_9_ms and _count.
type serverSeries struct {
	prefix string
	series string // histSet key
	what   string // one observation, for the metrics' help
}

func requestSeries(prefix, typ, what string) serverSeries {
	return serverSeries{prefix, `readmark_request_seconds{type="` + typ + `"}`, what}
}

var (
	serverReceiptCalls      = requestSeries("server_receipt_call", "send_receipts", "SendMessageReadReceipts calls")
	serverSendCalls         = requestSeries("server_send_call", "send_message", "SendMessage calls")
	serverGroupCommits      = serverSeries{"server_group_commit", "readmark_group_commit_seconds", "group commits' durable writes"}
	serverPushWaits         = serverSeries{"server_receipt_push_wait", "readmark_receipt_push_wait_seconds", "waits of a message's receipts for their push frame"}
	serverReceiptPushWrites = serverSeries{"server_receipt_push_write", `readmark_push_write_seconds{kind="receipts"}`,
		"receipt pushes, from reaching the session to written"}
	serverMessagePushWrites = serverSeries{"server_message_push_write", `readmark_push_write_seconds{kind="new_message"}`,
		"message deliveries, from reaching the session to written"}
)

// hist is a Prometheus histogram: its buckets' upper bounds, ascending and
// ending with +Inf, and the cumulative count of observations ≤ each.
type hist struct {
	le, count []float64
}

// histSet holds histograms by series: the family name and its labels other
// than le as the page spells them, e.g.
// `readmark_request_seconds{type="send_receipts"}` (no braces without labels).
type histSet map[string]*hist

// parseHists reads the buckets of the histograms of families from a parsed
// Prometheus page.
func parseHists(page map[string]*dto.MetricFamily, families []string) (histSet, error) {
	out := histSet{}
	for _, family := range families {
		mf := page[family]
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := seriesKey(family, m.GetLabel())
			buckets := slices.SortedFunc(slices.Values(m.GetHistogram().GetBucket()), func(a, b *dto.Bucket) int {
				return cmp.Compare(a.GetUpperBound(), b.GetUpperBound())
			})
			if len(buckets) == 0 || !math.IsInf(buckets[len(buckets)-1].GetUpperBound(), 1) {
				return nil, fmt.Errorf("%s has no +Inf bucket", key)
			}
			h := &hist{}
			for _, b := range buckets {
				// The parser keeps integer counts apart from float ones.
				h.le = append(h.le, b.GetUpperBound())
				h.count = append(h.count, float64(b.GetCumulativeCount())+b.GetCumulativeCountFloat())
			}
			out[key] = h
		}
	}
	return out, nil
}

// seriesKey spells a series as the page does: the family and its labels
// other than le, by name, e.g. `readmark_request_seconds{type="send_receipts"}`
// (no braces without labels).
func seriesKey(family string, labels []*dto.LabelPair) string {
	var kept []string
	for _, l := range labels {
		kept = append(kept, l.GetName()+"="+strconv.Quote(l.GetValue()))
	}
	if len(kept) == 0 {
		return family
	}
	slices.Sort(kept)
	return family + "{" + strings.Join(kept, ",") + "}"
}

// combine returns a's counts plus (sign 1) or minus (sign -1) b's, series
// by series; a series missing from b counts as empty.
func combine(a, b histSet, sign float64) (histSet, error) {
	out := histSet{}
	for key, ha := range a {
		h := &hist{le: ha.le, count: slices.Clone(ha.count)}
		if hb := b[key]; hb != nil {
			if !slices.Equal(ha.le, hb.le) {
				return nil, fmt.Errorf("%s: the buckets differ between nodes or scrapes", key)
			}
			for i, c := range hb.count {
				if h.count[i] += sign * c; h.count[i] < 0 {
					return nil, fmt.Errorf("%s: counts went down (server restarted?)", key)
				}
			}
		}
		out[key] = h
	}
	if sign > 0 {
		for key, hb := range b {
			if a[key] == nil {
				out[key] = hb
			}
		}
	}
	return out, nil
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile does:
// linearly interpolated within the bucket holding it, the first bucket
// starting at 0. If that is the +Inf bucket, it returns the highest finite
// bound and beyond true. NaN if the histogram is empty.
func (h *hist) quantile(q float64) (v float64, beyond bool) {
	n := len(h.le)
	if n < 2 || h.count[n-1] == 0 {
		return math.NaN(), false
	}
	rank := q * h.count[n-1]
	b := sort.Search(n-1, func(i int) bool { return h.count[i] >= rank })
	if b == n-1 {
		return h.le[n-2], true
	}
	start, below := 0.0, 0.0
	if b > 0 {
		start, below = h.le[b-1], h.count[b-1]
	}
	return start + (h.le[b]-start)*(rank-below)/(h.count[b]-below), false
}

// scrapeHists sums the server histograms over the /metrics of t's nodes.
func scrapeHists(ctx context.Context, t *target) (histSet, error) {
	if t == nil || t.echo {
		return nil, errors.New("not a Readmark server")
	}
	sum := histSet{}
	for _, u := range t.urls {
		m, err := metricsURL(u)
		if err != nil {
			return nil, err
		}
		page, err := fetchPage(ctx, m)
		if err != nil {
			return nil, err
		}
		h, err := parseHists(page, serverHistFamilies)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		if sum, err = combine(sum, h, 1); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// serverLatWindow reads the server's latency histograms at the start of a
// phase, serverLatency their change over it.
type serverLatWindow struct {
	t     *target
	start histSet
	err   error
}

type serverLatency struct {
	delta histSet
	nodes int
	err   error
}

func startServerLat(ctx context.Context, t *target) *serverLatWindow {
	w := &serverLatWindow{t: t}
	w.start, w.err = scrapeHists(ctx, t)
	return w
}

// end reads the histograms again and takes the change since the start.
func (w *serverLatWindow) end(ctx context.Context) serverLatency {
	if w.err != nil {
		return serverLatency{err: w.err}
	}
	now, err := scrapeHists(ctx, w.t)
	if err == nil {
		var d histSet
		if d, err = combine(now, w.start, -1); err == nil {
			return serverLatency{delta: d, nodes: len(w.t.urls)}
		}
	}
	return serverLatency{err: err}
}

// report adds the quantiles of series over the phase (named by over), or a
// note saying why they are missing.
func (l serverLatency) report(res *Result, over string, series ...serverSeries) {
	if l.err != nil {
		res.noteOnce("server-side latencies not measured: " + l.err.Error())
		return
	}
	from := "the server's /metrics"
	if l.nodes > 1 {
		from = fmt.Sprintf("the /metrics of the %d nodes, summed", l.nodes)
	}
	res.noteOnce("server_*_ms figures are SERVER-SIDE, unlike the LATENCY table: quantiles of the change over the measured phase of " +
		"histograms scraped from " + from + ". Calls: readmark_request_seconds, from a request's decoding to its response " +
		"being queued (no network, no client-side encoding, scheduling or retries). Group commits: readmark_group_commit_seconds, " +
		"each commit's durable write. Receipt push waits: readmark_receipt_push_wait_seconds, how long a message's receipts " +
		"waited for their push frame (the push rate limit). Push writes: readmark_push_write_seconds, from a push reaching " +
		"the node's sessions to its frame being written. Estimated like Prometheus' histogram_quantile, linearly within buckets that double " +
		"from 0.1 ms (the push waits': finer, 5 ms apart around the 1/18 s push interval), so the resolution is the bucket's width " +
		"(a p99 of 5 ms lies somewhere in 3.2-6.4 ms).")
	for _, s := range series {
		h := l.delta[s.series]
		var n float64
		if h != nil {
			n = h.count[len(h.count)-1]
		}
		res.metric(s.prefix+"_count", n, "", fmt.Sprintf("%s the server timed over %s", s.what, over))
		if n == 0 {
			continue
		}
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p99", 0.99}, {"p99_9", 0.999}} {
			v, beyond := h.quantile(q.q)
			name := s.prefix + "_" + q.name + "_ms"
			res.metric(name, v*1000, "ms", fmt.Sprintf("server-side %s of those %s (see notes)", strings.ReplaceAll(q.name, "_", "."), s.what))
			if beyond {
				res.note("%s lies beyond the highest bucket: more than %s ms, reported as that bound", name, num(v*1000))
			}
		}
	}
}
