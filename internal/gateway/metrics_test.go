package gateway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// TestMetricsRequest: the pre-resolved children count what the labelled
// vectors would.
func TestMetricsRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for range 3 {
		m.request("sync", 0, time.Millisecond)
	}
	m.request("sync", pb.CodeRateLimited, 0)
	m.request("login", 0, 0)
	for _, c := range []struct {
		typ, code string
		want      float64
	}{{"sync", "OK", 3}, {"sync", pb.CodeName[pb.CodeRateLimited], 1}, {"login", "OK", 1}} {
		if got := requests(t, reg, c.typ, c.code); got != c.want {
			t.Errorf("requests{type=%q,code=%q} = %v, want %v", c.typ, c.code, got, c.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "readmark_request_seconds" {
			if ms := mf.GetMetric(); len(ms) != 1 || ms[0].GetHistogram().GetSampleCount() != 3 {
				t.Errorf("latency: %v, want sync's 3 samples alone (login had no duration)", ms)
			}
		}
	}
}

// BenchmarkMetricsRequest is the bookkeeping of one successful request
// (every request of every session pays it).
func BenchmarkMetricsRequest(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.request("send_receipts", 0, time.Millisecond)
		}
	})
}
