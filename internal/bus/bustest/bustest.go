// Package bustest is the conformance suite for bus.Bus: the in-process membus
// and the NATS natsbus run the same tests, so services can rely on the
// contract written on the interface whatever the deployment.
//
//	func TestConformance(t *testing.T) {
//		bustest.Run(t, func(t *testing.T) bus.Bus { return membus.New() })
//	}
//
// open must return a new bus; the suite closes every bus it opens (once).
// Buses from separate open calls may share a transport (one NATS server), so
// every test uses subjects of its own, unique to the run.
//
// The suite never sleeps to let things happen: it waits for a condition with
// a deadline. A bus may deliver asynchronously, so "nothing else arrived" is
// checked by publishing a marker afterwards and waiting for it: a message
// published on the same subject (or, for another subject, to a subscription
// created in the same bus) after the one that must not arrive.
package bustest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/bus"
)

// Timeout bounds every wait for a delivery.
var Timeout = 10 * time.Second

// Run runs the conformance suite, one subtest per property, each on buses of
// its own.
func Run(t *testing.T, open func(t *testing.T) bus.Bus) {
	var b [6]byte
	rand.Read(b[:])
	run := hex.EncodeToString(b[:])
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Delivery", testDelivery},
		{"SubjectsAreExact", testExactSubjects},
		{"OrderOnePublisher", testOrder},
		{"ConcurrentPublishers", testConcurrentPublishers},
		{"HandlerCallsSerialized", testSerialized},
		{"DataNotAliased", testNotAliased},
		{"EmptyAndLargePayload", testPayloadSizes},
		{"NoSubscriber", testNoSubscriber},
		{"Unsubscribe", testUnsubscribe},
		{"UnsubscribeRacesPublish", testUnsubscribeRace},
		{"Resubscribe", testResubscribe},
		{"ErrClosed", testErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &harness{open: open, run: run, name: tc.name})
		})
	}
}

type harness struct {
	open func(t *testing.T) bus.Bus
	run  string
	name string
	n    int
}

// bus opens a bus, closed when the test ends unless closed first through the
// returned function.
func (h *harness) bus(t *testing.T) (bus.Bus, func() error) {
	t.Helper()
	b := h.open(t)
	if b == nil {
		t.Fatal("open returned a nil bus")
	}
	var (
		once sync.Once
		err  error
	)
	c := func() error {
		once.Do(func() { err = b.Close() })
		return err
	}
	t.Cleanup(func() {
		if err := c(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, c
}

// subject returns a user subject no other test (or run) uses. User IDs are
// [A-Za-z0-9_.@-]; suffix adds to the ID.
func (h *harness) subject(suffix string) string {
	h.n++
	return bus.UserSubject(fmt.Sprintf("t%s.%s.%d%s", h.run, h.name, h.n, suffix))
}

// collector records what a handler receives.
type collector struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (c *collector) handle(data []byte) {
	c.mu.Lock()
	c.msgs = append(c.msgs, data)
	c.mu.Unlock()
}

func (c *collector) snapshot() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// wait waits until the collector holds at least n messages and returns them.
func (c *collector) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.msgs) >= n
	})
	return c.snapshot()
}

// waitFor polls cond until it holds, failing the test after Timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func subscribe(t *testing.T, b bus.Bus, subject string, handler func([]byte)) bus.Subscription {
	t.Helper()
	s, err := b.Subscribe(subject, handler)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", subject, err)
	}
	return s
}

func publish(t *testing.T, b bus.Bus, subject string, data []byte) {
	t.Helper()
	if err := b.Publish(t.Context(), subject, data); err != nil {
		t.Fatalf("Publish(%q): %v", subject, err)
	}
}

func strs(msgs [][]byte) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m)
	}
	return out
}

// testDelivery: a message reaches every subscriber of its subject, once, and
// no subscriber of another subject.
func testDelivery(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s1, s2 := h.subject(""), h.subject("")
	var a1, a2, other collector
	subscribe(t, b, s1, a1.handle)
	subscribe(t, b, s1, a2.handle)
	subscribe(t, b, s2, other.handle)

	publish(t, b, s1, []byte("one"))
	publish(t, b, s1, []byte("two"))
	publish(t, b, s2, []byte("marker"))
	publish(t, b, s1, []byte("end"))
	want := []string{"one", "two", "end"}
	for i, c := range []*collector{&a1, &a2} {
		if got := strs(c.wait(t, 3)); !slices.Equal(got, want) {
			t.Errorf("subscriber %d of %s got %q, want %q", i, s1, got, want)
		}
	}
	if got := strs(other.wait(t, 1)); !slices.Equal(got, []string{"marker"}) {
		t.Errorf("subscriber of %s got %q, want only its marker", s2, got)
	}
	// Nothing more turns up later either.
	publish(t, b, s2, []byte("marker2"))
	if got := strs(other.wait(t, 2)); !slices.Equal(got, []string{"marker", "marker2"}) {
		t.Errorf("subscriber of %s got %q", s2, got)
	}
	if n := len(a1.snapshot()) + len(a2.snapshot()); n != 6 {
		t.Errorf("subscribers of %s got %d messages in all, want 6", s1, n)
	}
}

// testExactSubjects: subjects are matched as whole strings: no prefix
// matching, no wildcards, dots are ordinary characters. (User IDs are
// validated, but a transport with a subject syntax must not leak it.)
func testExactSubjects(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	base := h.subject("")
	subjects := []string{
		base, base + "x", base + ".x", base + ".x.y", base + ".*", base + ".>",
		base + "*", base + ">", base + "..x", base + ".", base + " x", base + "@a-b_c",
		"_RMX." + base, // looks like natsbus's escape prefix
	}
	cols := make([]*collector, len(subjects))
	for i, s := range subjects {
		cols[i] = &collector{}
		subscribe(t, b, s, cols[i].handle)
	}
	for i, s := range subjects {
		publish(t, b, s, fmt.Appendf(nil, "%d", i))
	}
	// Second round: each subject's second message is its marker.
	for i, s := range subjects {
		publish(t, b, s, fmt.Appendf(nil, "%d", i))
	}
	for i, c := range cols {
		want := []string{fmt.Sprint(i), fmt.Sprint(i)}
		if got := strs(c.wait(t, 2)); !slices.Equal(got, want) {
			t.Errorf("subscriber of %q got %q, want %q", subjects[i], got, want)
		}
	}
}

// testOrder: messages from one publisher on one subject arrive in publish
// order, at each subscriber.
func testOrder(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	const n = 1000
	var c1, c2 collector
	subscribe(t, b, s, c1.handle)
	subscribe(t, b, s, c2.handle)
	for i := range n {
		publish(t, b, s, binary.BigEndian.AppendUint32(nil, uint32(i)))
	}
	for _, c := range []*collector{&c1, &c2} {
		got := c.wait(t, n)
		if len(got) != n {
			t.Fatalf("%d messages, want %d", len(got), n)
		}
		for i, m := range got {
			if binary.BigEndian.Uint32(m) != uint32(i) {
				t.Fatalf("message %d is %d", i, binary.BigEndian.Uint32(m))
			}
		}
	}
}

// testConcurrentPublishers: many goroutines publish at once on one subject;
// all messages arrive, each publisher's in its order.
func testConcurrentPublishers(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	const publishers, each = 8, 200
	var c collector
	subscribe(t, b, s, c.handle)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if err := b.Publish(context.Background(), s, []byte{byte(p), byte(i >> 8), byte(i)}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := c.wait(t, publishers*each)
	if len(got) != publishers*each {
		t.Fatalf("%d messages, want %d", len(got), publishers*each)
	}
	next := make([]int, publishers)
	for _, m := range got {
		p, i := int(m[0]), int(m[1])<<8|int(m[2])
		if i != next[p] {
			t.Fatalf("publisher %d: message %d arrived when %d was expected", p, i, next[p])
		}
		next[p]++
	}
}

// testSerialized: a subscription's handler runs one call at a time, even with
// concurrent publishers; different subscriptions may run in parallel.
func testSerialized(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	const publishers, each = 4, 250
	var (
		inFlight atomic.Int32
		overlap  atomic.Bool
		count    atomic.Int32
	)
	subscribe(t, b, s, func([]byte) {
		if inFlight.Add(1) != 1 {
			overlap.Store(true)
		}
		for range 100 { // widen the window for an overlap
			if inFlight.Load() != 1 {
				overlap.Store(true)
			}
		}
		inFlight.Add(-1)
		count.Add(1)
	})
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range each {
				if err := b.Publish(context.Background(), s, []byte("x")); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "all messages", func() bool { return count.Load() == publishers*each })
	if overlap.Load() {
		t.Error("handler calls of one subscription overlapped")
	}
}

// testNotAliased: a handler may keep the data it is given: the bus does not
// reuse it for later messages.
func testNotAliased(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	var c collector // keeps the slices as given, without copying
	subscribe(t, b, s, c.handle)
	var want [][]byte
	for i := range 300 {
		m := bytes.Repeat([]byte{byte(i)}, 1+i%37)
		want = append(want, m)
		publish(t, b, s, bytes.Clone(m))
	}
	got := c.wait(t, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("kept message %d changed: %x, want %x", i, got[i], want[i])
		}
	}
}

func testPayloadSizes(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	var c collector
	subscribe(t, b, s, c.handle)
	large := make([]byte, 256<<10)
	for i := range large {
		large[i] = byte(i * 31)
	}
	publish(t, b, s, nil)
	publish(t, b, s, []byte{})
	publish(t, b, s, large)
	publish(t, b, s, []byte{0, 0xff, '\r', '\n'})
	got := c.wait(t, 4)
	if len(got[0]) != 0 || len(got[1]) != 0 {
		t.Errorf("empty payloads arrived as %q, %q", got[0], got[1])
	}
	if !bytes.Equal(got[2], large) {
		t.Errorf("large payload: %d bytes, equal %v", len(got[2]), bytes.Equal(got[2], large))
	}
	if !bytes.Equal(got[3], []byte{0, 0xff, '\r', '\n'}) {
		t.Errorf("binary payload arrived as %q", got[3])
	}
}

func testNoSubscriber(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	for i := range 10 {
		publish(t, b, h.subject(""), []byte{byte(i)})
	}
	// A subject that had a subscriber once.
	s := h.subject("")
	sub := subscribe(t, b, s, func([]byte) {})
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	publish(t, b, s, []byte("nobody"))
}

// testUnsubscribe: after Unsubscribe returns, the handler is not called, and
// the other subscriptions of the subject go on.
func testUnsubscribe(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	var (
		gone     atomic.Bool
		late     atomic.Int32
		received atomic.Int32
	)
	sub := subscribe(t, b, s, func([]byte) {
		if gone.Load() {
			late.Add(1)
		}
		received.Add(1)
	})
	var stays collector
	subscribe(t, b, s, stays.handle)
	publish(t, b, s, []byte("before"))
	waitFor(t, "delivery before Unsubscribe", func() bool { return received.Load() == 1 })
	if err := sub.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	gone.Store(true)
	for range 100 {
		publish(t, b, s, []byte("after"))
	}
	// The remaining subscription got them all: the bus has delivered what it
	// will deliver of these.
	stays.wait(t, 101)
	if n := late.Load(); n != 0 {
		t.Errorf("handler called %d times after Unsubscribe returned", n)
	}
	// Unsubscribing again is harmless.
	_ = sub.Unsubscribe()
	publish(t, b, s, []byte("again"))
	stays.wait(t, 102)
	if n := late.Load(); n != 0 {
		t.Errorf("handler called %d times after Unsubscribe returned", n)
	}
}

// testUnsubscribeRace: Unsubscribe while messages are being published and
// delivered: when Unsubscribe returns no handler call is running, and none
// starts later.
func testUnsubscribeRace(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	for round := range 20 {
		s := h.subject("")
		var (
			gone     atomic.Bool
			late     atomic.Int32
			received atomic.Int32
		)
		sub := subscribe(t, b, s, func([]byte) {
			if gone.Load() {
				late.Add(1)
			}
			received.Add(1)
			// Still running when Unsubscribe returns counts too.
			for range 1000 {
				if gone.Load() {
					late.Add(1)
					return
				}
			}
		})
		var marker collector
		subscribe(t, b, s, marker.handle)
		stop := make(chan struct{})
		var sent atomic.Int32
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := b.Publish(context.Background(), s, []byte("flood")); err != nil {
						t.Errorf("Publish: %v", err)
						return
					}
					sent.Add(1)
				}
			})
		}
		waitFor(t, "deliveries", func() bool { return received.Load() > 10 })
		if err := sub.Unsubscribe(); err != nil {
			t.Fatalf("Unsubscribe: %v", err)
		}
		gone.Store(true)
		close(stop)
		wg.Wait()
		publish(t, b, s, []byte("marker"))
		waitFor(t, "marker", func() bool {
			m := marker.snapshot()
			return len(m) > 0 && string(m[len(m)-1]) == "marker"
		})
		if n := late.Load(); n != 0 {
			t.Fatalf("round %d: handler called %d times after Unsubscribe returned", round, n)
		}
	}
}

// testResubscribe: a subject can be subscribed again after Unsubscribe, and a
// subscription made after a publish does not get it.
func testResubscribe(t *testing.T, h *harness) {
	b, _ := h.bus(t)
	s := h.subject("")
	var first collector
	sub := subscribe(t, b, s, first.handle)
	publish(t, b, s, []byte("1"))
	first.wait(t, 1)
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	var second collector
	subscribe(t, b, s, second.handle)
	publish(t, b, s, []byte("2"))
	if got := strs(second.wait(t, 1)); !slices.Equal(got, []string{"2"}) {
		t.Errorf("new subscription got %q, want [2]", got)
	}
	if got := strs(first.snapshot()); !slices.Equal(got, []string{"1"}) {
		t.Errorf("old subscription got %q, want [1]", got)
	}
}

// testErrClosed: after Close, Publish and Subscribe fail with ErrClosed, no
// handler runs, and Unsubscribe of an old subscription is harmless.
func testErrClosed(t *testing.T, h *harness) {
	b, closeBus := h.bus(t)
	s := h.subject("")
	var (
		closed atomic.Bool
		late   atomic.Int32
		c      collector
	)
	sub := subscribe(t, b, s, func(d []byte) {
		if closed.Load() {
			late.Add(1)
		}
		c.handle(d)
	})
	publish(t, b, s, []byte("x"))
	c.wait(t, 1)
	// Messages in flight while closing must not reach the handler after Close
	// returns.
	for range 50 {
		publish(t, b, s, []byte("y"))
	}
	if err := closeBus(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed.Store(true)
	if err := b.Publish(t.Context(), s, []byte("z")); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(s, func([]byte) {}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	_ = sub.Unsubscribe() // must not panic or hang
	if n := late.Load(); n != 0 {
		t.Errorf("handler called %d times after Close returned", n)
	}
}
