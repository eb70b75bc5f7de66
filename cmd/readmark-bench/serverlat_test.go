package main

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestHistQuantile(t *testing.T) {
	inf := math.Inf(1)
	le := []float64{0.001, 0.002, 0.004, inf}
	type want struct {
		q, v   float64
		beyond bool
	}
	for _, tc := range []struct {
		name  string
		le    []float64
		count []float64
		want  []want
	}{
		{"empty", le, []float64{0, 0, 0, 0}, []want{{0.5, math.NaN(), false}, {0.99, math.NaN(), false}}},
		{"only +Inf bucket", []float64{inf}, []float64{7}, []want{{0.5, math.NaN(), false}}},
		{"all in one bucket", le, []float64{0, 10, 10, 10}, []want{
			{0.5, 0.0015, false}, {0.99, 0.00199, false}, {0.999, 0.001999, false},
		}},
		{"first bucket starts at 0", le, []float64{10, 10, 10, 10}, []want{{0.5, 0.0005, false}}},
		{"spread", le, []float64{50, 90, 99, 100}, []want{
			{0.5, 0.001, false}, {0.7, 0.0015, false}, {0.9, 0.002, false}, {0.99, 0.004, false},
			{0.999, 0.004, true}, // in the +Inf bucket: the highest finite bound
		}},
		{"all beyond", le, []float64{0, 0, 0, 3}, []want{{0.5, 0.004, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &hist{le: tc.le, count: tc.count}
			for _, w := range tc.want {
				v, beyond := h.quantile(w.q)
				same := math.Abs(v-w.v) < 1e-12 || (math.IsNaN(v) && math.IsNaN(w.v))
				if !same || beyond != w.beyond {
					t.Errorf("q%v = %v beyond %v, want %v beyond %v", w.q, v, beyond, w.v, w.beyond)
				}
			}
		})
	}
}

// A page as promhttp writes it, plus what the format also allows: labels
// after le, escapes in values, a timestamp, buckets out of order.
const samplePage = `# HELP readmark_request_seconds Time from a request's decoding to its response being queued.
# TYPE readmark_request_seconds histogram
readmark_request_seconds_bucket{type="send_receipts",le="0.0001"} 1
readmark_request_seconds_bucket{type="send_receipts",le="0.0002"} 4
readmark_request_seconds_bucket{type="send_receipts",le="+Inf"} 5
readmark_request_seconds_sum{type="send_receipts"} 0.01
readmark_request_seconds_count{type="send_receipts"} 5
readmark_request_seconds_bucket{type="send_message",le="0.0002"} 3 1700000000000
readmark_request_seconds_bucket{type="send_message",le="0.0001"} 2
readmark_request_seconds_bucket{type="send_message",le="+Inf"} 3
readmark_request_seconds_bucket{le="0.0001",type="odd \"x\", y}"} 0
readmark_request_seconds_bucket{le="+Inf",type="odd \"x\", y}"} 9
# TYPE readmark_group_commit_ops histogram
readmark_group_commit_ops_bucket{le="1"} 4
readmark_group_commit_ops_bucket{le="+Inf"} 4
# TYPE readmark_group_commit_seconds histogram
readmark_group_commit_seconds_bucket{le="0.0001"} 6
readmark_group_commit_seconds_bucket{le="+Inf"} 8
readmark_group_commit_seconds_count 8
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
`

// parseText parses a page as fetchPage does, then its histograms.
func parseText(text string) (histSet, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	page, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	return parseHists(page, serverHistFamilies)
}

func TestParseHists(t *testing.T) {
	got, err := parseText(samplePage)
	if err != nil {
		t.Fatal(err)
	}
	inf := math.Inf(1)
	want := histSet{
		`readmark_request_seconds{type="send_receipts"}`: {le: []float64{0.0001, 0.0002, inf}, count: []float64{1, 4, 5}},
		`readmark_request_seconds{type="send_message"}`:  {le: []float64{0.0001, 0.0002, inf}, count: []float64{2, 3, 3}},
		`readmark_request_seconds{type="odd \"x\", y}"}`: {le: []float64{0.0001, inf}, count: []float64{0, 9}},
		`readmark_group_commit_seconds`:                  {le: []float64{0.0001, inf}, count: []float64{6, 8}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", dumpHists(got), dumpHists(want))
	}

	for _, bad := range []string{
		"readmark_group_commit_seconds_bucket{le=\"0.1\"} 1\n", // no +Inf bucket
		"readmark_group_commit_seconds_bucket{le=\"+Inf} 1\n",  // unterminated value
		"readmark_group_commit_seconds_bucket{le=\"x\"} 1\n",
		"readmark_group_commit_seconds_bucket{} 1\n",
	} {
		bad = "# TYPE readmark_group_commit_seconds histogram\n" + bad
		if _, err := parseText(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func dumpHists(s histSet) map[string]hist {
	out := map[string]hist{}
	for k, h := range s {
		out[k] = *h
	}
	return out
}

// TestCombineHists: nodes' histograms add up, a phase is the end minus the
// start (a series born during the phase counts from 0), and counts that fall
// or buckets that differ are errors.
func TestCombineHists(t *testing.T) {
	le := []float64{0.001, math.Inf(1)}
	h := func(c ...float64) *hist { return &hist{le: le, count: c} }
	sum, err := combine(histSet{"a": h(1, 2)}, histSet{"a": h(3, 4), "b": h(5, 6)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := (histSet{"a": h(4, 6), "b": h(5, 6)}); !reflect.DeepEqual(sum, want) {
		t.Errorf("sum %v, want %v", dumpHists(sum), dumpHists(want))
	}
	d, err := combine(sum, histSet{"a": h(1, 1)}, -1)
	if err != nil {
		t.Fatal(err)
	}
	if want := (histSet{"a": h(3, 5), "b": h(5, 6)}); !reflect.DeepEqual(d, want) {
		t.Errorf("delta %v, want %v", dumpHists(d), dumpHists(want))
	}
	if _, err := combine(histSet{"a": h(1, 1)}, histSet{"a": h(2, 2)}, -1); err == nil {
		t.Error("falling counts accepted")
	}
	if _, err := combine(histSet{"a": h(1, 1)}, histSet{"a": {le: []float64{0.002, math.Inf(1)}, count: []float64{0, 0}}}, 1); err == nil {
		t.Error("different buckets accepted")
	}
}

// TestServerLatencyReport: the figures, the +Inf case's note, and a failed
// scrape's note instead of figures.
func TestServerLatencyReport(t *testing.T) {
	le := []float64{0.001, 0.002, math.Inf(1)}
	res := newResult("x")
	serverLatency{delta: histSet{
		serverReceiptCalls.series: {le: le, count: []float64{0, 998, 1000}},
	}, nodes: 1}.report(res, "the phase", serverReceiptCalls, serverSendCalls)
	want := map[string]float64{
		"server_receipt_call_count":    1000,
		"server_receipt_call_p50_ms":   1 + 500.0/998,
		"server_receipt_call_p99_ms":   1 + 990.0/998,
		"server_receipt_call_p99_9_ms": 2, // rank 999 > 998: beyond
		"server_send_call_count":       0,
	}
	for name, v := range want {
		if got, ok := res.Values[name]; !ok || math.Abs(got-v) > 1e-9 {
			t.Errorf("%s = %v (reported %v), want %v", name, got, ok, v)
		}
	}
	if _, ok := res.Values["server_send_call_p50_ms"]; ok {
		t.Error("quantiles of an empty histogram reported")
	}
	notes := strings.Join(res.Notes, "\n")
	if !strings.Contains(notes, "SERVER-SIDE") || !strings.Contains(notes, "server_receipt_call_p99_9_ms lies beyond the highest bucket") ||
		strings.Contains(notes, "p99_ms lies beyond") {
		t.Errorf("notes:\n%s", notes)
	}

	res = newResult("x")
	serverLatency{err: errors.New("connection refused")}.report(res, "the phase", serverReceiptCalls)
	if len(res.Values) != 0 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "not measured: connection refused") {
		t.Errorf("failed scrape: metrics %v, notes %q", res.Values, res.Notes)
	}
}
