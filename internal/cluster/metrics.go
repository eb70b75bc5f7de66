package cluster

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a node's Prometheus collectors; register them with
// Collectors.
type Metrics struct {
	owned     prometheus.Gauge
	moves     *prometheus.CounterVec
	forwarded *prometheus.HistogramVec
	notOwner  prometheus.Counter
	served    prometheus.Counter
	busRTT    prometheus.Gauge
	fenced    prometheus.Counter
}

func newMetrics(nodeID string) *Metrics {
	node := prometheus.Labels{"node": nodeID}
	return &Metrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "readmark_cluster_partitions_owned", Help: "Partitions this node owns.", ConstLabels: node,
		}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readmark_cluster_ownership_moves_total", ConstLabels: node,
			Help: "Partition ownership changes on this node: acquired, released (handoff), lost (lease).",
		}, []string{"kind"}),
		forwarded: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readmark_cluster_forwarded_seconds", ConstLabels: node,
			Help:    "Requests forwarded to the owner of their partition: latency by outcome (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"outcome"}),
		notOwner: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_cluster_forward_retries_total", ConstLabels: node,
			Help: "Forwarding attempts retried because the receiver was not the owner or nobody answered.",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_cluster_forwarded_served_total", ConstLabels: node,
			Help: "Requests forwarded to this node by others and run here.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_cluster_fenced_commits_total", ConstLabels: node,
			Help: "Group commits refused because they relied on a partition lease no longer held (storage.ErrFenced).",
		}),
		busRTT: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "readmark_cluster_bus_rtt_seconds", ConstLabels: node,
			Help: "Round trip to the NATS server, measured every renew period.",
		}),
	}
}

// Collectors are the collectors to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.owned, m.moves, m.forwarded, m.notOwner, m.served, m.busRTT, m.fenced}
}

// Fenced counts a commit refused by fencing.
func (m *Metrics) Fenced() { m.fenced.Inc() }
