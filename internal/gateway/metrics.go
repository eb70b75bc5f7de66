package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Metrics are the gateway's Prometheus metrics. A nil *Metrics records
// nothing (tests).
type Metrics struct {
	sessions      prometheus.Gauge
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	pushes        prometheus.Counter
	slowConsumers prometheus.Counter
	jsonPushes    prometheus.Counter
	socketWrites  prometheus.Counter
	// pushWrites observes pushes by the number of their ServerFrame body
	// field; other holds any number not in the schema.
	pushWrites map[protowire.Number]prometheus.Observer
	otherPush  prometheus.Observer

	// ok and timed hold each request type's children of
	// requests{code="OK"} (prometheus.Counter) and of latency
	// (prometheus.Observer) by type name, resolved on first use: a request
	// costs lock-free lookups, not label hashing under the vectors' locks.
	ok, timed sync.Map
}

// NewMetrics registers the gateway's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "readmark_sessions", Help: "Client sessions (WebSocket connections) logged in now.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readmark_requests_total", Help: "Client requests by type and result code (OK, an error code name, or Cancelled: a read-only request stopped because its connection was gone).",
		}, []string{"type", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readmark_request_seconds", Help: "Time from a request's decoding to its response being queued.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"type"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_pushes_total", Help: "Push frames queued to sessions.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_slow_consumer_closes_total", Help: "Sessions closed because their output queue was over its byte bound.",
		}),
		jsonPushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_push_json_encodings_total", Help: "Pushes encoded to JSON: once per push, however many JSON sessions get it.",
		}),
		socketWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readmark_socket_writes_total", Help: "Write calls on client connections: one per batch of queued frames, not one per frame.",
		}),
	}
	pushWrites := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "readmark_push_write_seconds", Help: "Time from a push reaching this node (from the bus) to its frame being written to a session's connection, by the push's kind (its ServerFrame body field: new_message, receipts, self_receipts, ...).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"kind"})
	// Children resolved once: a push frame costs a map lookup.
	m.pushWrites = make(map[protowire.Number]prometheus.Observer)
	fields := (&pb.ServerFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		m.pushWrites[fd.Number()] = pushWrites.WithLabelValues(string(fd.Name()))
	}
	m.otherPush = pushWrites.WithLabelValues("other")
	reg.MustRegister(m.sessions, m.requests, m.latency, m.pushes, m.slowConsumers, m.jsonPushes, m.socketWrites, pushWrites)
	return m
}

// pushesWritten observes how long each push of batch, just written, took
// from reaching the hub.
func (m *Metrics) pushesWritten(batch []outFrame) {
	if m == nil {
		return
	}
	var now time.Time
	for _, f := range batch {
		if f.push == nil {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		o := m.pushWrites[f.push.kind]
		if o == nil {
			o = m.otherPush
		}
		o.Observe(now.Sub(f.push.at).Seconds())
	}
}

func (m *Metrics) sessionOpened() {
	if m != nil {
		m.sessions.Inc()
	}
}

func (m *Metrics) sessionClosed() {
	if m != nil {
		m.sessions.Dec()
	}
}

func (m *Metrics) request(name string, code int32, d time.Duration) {
	if m == nil {
		return
	}
	if code == 0 {
		child(&m.ok, name, func() prometheus.Counter { return m.requests.WithLabelValues(name, "OK") }).Inc()
	} else {
		c := pb.CodeName[code]
		if c == "" {
			c = strconv.Itoa(int(code))
		}
		m.requests.WithLabelValues(name, c).Inc()
	}
	if d > 0 {
		child(&m.timed, name, func() prometheus.Observer { return m.latency.WithLabelValues(name) }).Observe(d.Seconds())
	}
}

// child returns the child of a vector cached in children under name,
// resolving it on first use.
func child[T any](children *sync.Map, name string, resolve func() T) T {
	if c, ok := children.Load(name); ok {
		return c.(T)
	}
	c, _ := children.LoadOrStore(name, resolve())
	return c.(T)
}

// cancelled counts a read-only request stopped because its connection
// was gone, under the code label "Cancelled" (no client ever sees it).
func (m *Metrics) cancelled(name string) {
	if m != nil {
		m.requests.WithLabelValues(name, "Cancelled").Inc()
	}
}

func (m *Metrics) pushed() {
	if m != nil {
		m.pushes.Inc()
	}
}

func (m *Metrics) slowConsumer() {
	if m != nil {
		m.slowConsumers.Inc()
	}
}

func (m *Metrics) jsonEncoded() {
	if m != nil {
		m.jsonPushes.Inc()
	}
}

func (m *Metrics) socketWrite() {
	if m != nil {
		m.socketWrites.Inc()
	}
}
