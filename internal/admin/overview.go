package admin

import (
	"net/http"
	"runtime"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Overview is the answer of GET /v1/admin/overview: the server at a
// glance, read from its own Prometheus registry. Counters are totals since
// start; a caller derives rates from two readings.
type Overview struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Storage   string `json:"storage"`
	StartedMs int64  `json:"started_ms"`
	UptimeMs  int64  `json:"uptime_ms"`
	NowMs     int64  `json:"now_ms"`
	Sessions  int64  `json:"sessions"`
	// Requests counts requests by type and result code name ("OK" or a
	// Code* name).
	Requests []RequestCount `json:"requests"`
	Pushes   uint64         `json:"pushes"`
	// GroupCommits summarises readmark_group_commit_ops.
	GroupCommits Histogram `json:"group_commits"`
	Goroutines   int64     `json:"goroutines"`
	MemoryBytes  int64     `json:"resident_memory_bytes"`
}

// RequestCount is one series of readmark_requests_total.
type RequestCount struct {
	Type  string `json:"type"`
	Code  string `json:"code"`
	Count uint64 `json:"count"`
}

// Histogram is a Prometheus histogram: Buckets[i] counts observations
// <= UpperBounds[i] (cumulative).
type Histogram struct {
	Count       uint64    `json:"count"`
	Sum         float64   `json:"sum"`
	UpperBounds []float64 `json:"upper_bounds"`
	Buckets     []uint64  `json:"buckets"`
}

func (cfg Config) overview(w http.ResponseWriter, _ *http.Request) {
	families, err := cfg.Gatherer.Gather()
	if err != nil {
		WriteError(w, err)
		return
	}
	now := time.Now()
	o := Overview{
		Version: cfg.Version, GoVersion: runtime.Version(), Storage: cfg.Storage,
		StartedMs: cfg.Started.UnixMilli(), UptimeMs: now.Sub(cfg.Started).Milliseconds(), NowMs: now.UnixMilli(),
		Requests: []RequestCount{}, GroupCommits: Histogram{UpperBounds: []float64{}, Buckets: []uint64{}},
	}
	for _, mf := range families {
		ms := mf.GetMetric()
		if len(ms) == 0 {
			continue
		}
		switch mf.GetName() {
		case "readmark_sessions":
			o.Sessions = int64(ms[0].GetGauge().GetValue())
		case "readmark_pushes_total":
			o.Pushes = uint64(ms[0].GetCounter().GetValue())
		case "go_goroutines":
			o.Goroutines = int64(ms[0].GetGauge().GetValue())
		case "process_resident_memory_bytes":
			o.MemoryBytes = int64(ms[0].GetGauge().GetValue())
		case "readmark_requests_total":
			for _, m := range ms {
				o.Requests = append(o.Requests, RequestCount{
					Type: label(m, "type"), Code: label(m, "code"), Count: uint64(m.GetCounter().GetValue()),
				})
			}
		case "readmark_group_commit_ops":
			h := ms[0].GetHistogram()
			o.GroupCommits.Count, o.GroupCommits.Sum = h.GetSampleCount(), h.GetSampleSum()
			for _, b := range h.GetBucket() {
				o.GroupCommits.UpperBounds = append(o.GroupCommits.UpperBounds, b.GetUpperBound())
				o.GroupCommits.Buckets = append(o.GroupCommits.Buckets, b.GetCumulativeCount())
			}
		}
	}
	WriteJSON(w, http.StatusOK, o)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
