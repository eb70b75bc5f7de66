package gateway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

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

// TestMetricsPushWrites: each written push is observed under its kind,
// from the time it reached the hub; responses are not.
func TestMetricsPushWrites(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	encode := func(f *pb.ServerFrame) []byte {
		b, err := proto.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	receipts := newPush(encode(&pb.ServerFrame{Body: &pb.ServerFrame_Receipts_{Receipts_: &pb.ReceiptsPush{}}}))
	receipts.at = time.Now().Add(-50 * time.Millisecond)
	message := newPush(encode(&pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: &pb.Message{Seq: 1}}}))
	unknown := newPush(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1))
	m.pushesWritten([]outFrame{{push: receipts}, {data: []byte("response")}, {push: message}, {push: unknown}, {push: message}})

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		if mf.GetName() != "readmark_push_write_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if h := mt.GetHistogram(); h.GetSampleCount() > 0 {
				got[mt.GetLabel()[0].GetValue()] = h
			}
		}
	}
	want := map[string]uint64{"receipts": 1, "new_message": 2, "other": 1}
	if len(got) != len(want) {
		t.Fatalf("kinds observed: %v, want %v", got, want)
	}
	for kind, n := range want {
		if c := got[kind].GetSampleCount(); c != n {
			t.Errorf("%s: %d observations, want %d", kind, c, n)
		}
	}
	if s := got["receipts"].GetSampleSum(); s < 0.05 {
		t.Errorf("receipts push observed %v s after waiting 50 ms", s)
	}
}
