package test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/webhooks/webhooktest"
	"github.com/readmark/readmark/webhook"
)

// latencyListener records, per received message, the time from its send to
// its arrival (send times are looked up by text).
type latencyListener struct {
	im.BaseAdvancedMsgListener
	sent     *sync.Map // text → time.Time of the SendMessage call
	mu       *sync.Mutex
	samples  *[]time.Duration
	received *atomic.Int64
}

func (l latencyListener) OnRecvNewMessage(m *im.Message) {
	if v, ok := l.sent.Load(m.Text); ok {
		d := time.Since(v.(time.Time))
		l.mu.Lock()
		*l.samples = append(*l.samples, d)
		l.mu.Unlock()
	}
	l.received.Add(1)
}

// BenchmarkGroupFanout100 measures the messaging core end to end: one sender
// sends b.N text messages (from 8 goroutines, pipelined on its one
// connection) to a Work group of 100 members, each online on its own
// WebSocket connection in this process. It waits until every member has
// received every message and reports messages/s sent and delivered, and the
// p50/p99 latency from the start of the SendMessage call to each member's
// OnRecvNewMessage, and the server's write calls on client connections per
// push queued (readmark_socket_writes_total over readmark_pushes_total,
// responses' writes included). Sender, members and server share the
// machine's 2 cores.
func BenchmarkGroupFanout100(b *testing.B) {
	const members = 100
	ts := startServer(b)
	ctx := context.Background()
	sender, _ := ts.dial("sender")
	ids := users("fan", members)
	gid, err := sender.CreateGroup(ctx, im.GroupWork, "", "bench", ids...)
	if err != nil {
		b.Fatal(err)
	}
	var (
		sent     sync.Map
		mu       sync.Mutex
		samples  []time.Duration
		received atomic.Int64
	)
	for _, u := range ids {
		ts.dial(u, im.WithListener(latencyListener{sent: &sent, mu: &mu, samples: &samples, received: &received}))
	}
	writes0, pushes0 := ts.metric("readmark_socket_writes_total"), ts.metric("readmark_pushes_total")
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				text := strconv.FormatInt(i, 10)
				m := sender.CreateTextMessage(text)
				sent.Store(text, time.Now())
				if _, err := sender.SendMessage(ctx, m, "", gid, im.PriorityNormal, false); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := int64(b.N) * members
	deadline := time.Now().Add(2 * time.Minute)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if received.Load() < want {
		b.Fatalf("delivered %d of %d", received.Load(), want)
	}
	mu.Lock()
	slices.Sort(samples)
	p := func(q float64) float64 { return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	mu.Unlock()
	writes, pushes := ts.metric("readmark_socket_writes_total")-writes0, ts.metric("readmark_pushes_total")-pushes0
	b.ReportMetric(writes/pushes, "writes/push")
}

// BenchmarkReceiptsWebhook measures what webhooks cost the receipt path:
// 50 members, each on its own WebSocket connection in this process, send
// b.N read receipts (one message per call, 50 calls in flight) for group
// messages that asked for them; the rate is receipts acknowledged per
// second (each acknowledged receipt is durable). "webhook" attaches an
// endpoint (an in-process receiver answering 204 at once) that wants every
// event type, so each commit also writes outbox events and the delivery
// loops POST them concurrently; after the timer stops it waits until every
// receipt has reached the receiver. Server, clients and receiver share the
// machine's cores.
func BenchmarkReceiptsWebhook(b *testing.B) {
	for _, hook := range []bool{false, true} {
		name := "none"
		if hook {
			name = "webhook"
		}
		b.Run(name, func(b *testing.B) { benchReceipts(b, hook) })
	}
}

func benchReceipts(b *testing.B, hook bool) {
	const readers = 50
	ts := startWebhookServer(b, server.WebhookConfig{})
	var rcv *webhooktest.Receiver
	if hook {
		rcv = webhooktest.New("bench", 1, webhooktest.Behaviour{})
		defer rcv.Close()
		ts.setWebhooks(b, obj{"url": rcv.URL(), "events": webhook.Types, "secret": "bench"})
	}
	ctx := context.Background()
	sender, _ := ts.dial("sender")
	ids := users("br", readers)
	gid, err := sender.CreateGroup(ctx, im.GroupWork, "", "bench", ids...)
	if err != nil {
		b.Fatal(err)
	}
	clients := make([]*im.Client, readers)
	for i, u := range ids {
		clients[i], _ = ts.dial(u)
	}
	perReader := (b.N + readers - 1) / readers
	msgs := make([]*im.Message, perReader)
	for i := range msgs {
		m := sender.CreateTextMessage("bench")
		m.NeedReadReceipt = true
		if msgs[i], err = sender.SendMessage(ctx, m, "", gid, im.PriorityNormal, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	var done atomic.Int64
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for j, m := range msgs {
				if j*readers+i >= b.N {
					return
				}
				if err := c.SendMessageReadReceipts(ctx, []*im.Message{m}); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(done.Load())/elapsed.Seconds(), "receipts/s")
	if hook {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			n := 0
			for _, e := range rcv.Events() {
				n += len(e.Readers)
			}
			if n >= int(done.Load()) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("webhooks delivered %d of %d receipts", n, done.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
