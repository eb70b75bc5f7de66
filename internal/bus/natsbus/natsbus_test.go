package natsbus

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/bustest"
	"github.com/readmark/readmark/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *Bus {
	t.Helper()
	b, err := Open(testenv.NATSURL())
	if err != nil {
		t.Fatalf("Open(%s): %v", testenv.NATSURL(), err)
	}
	return b
}

// twoNodes opens two buses, as two nodes would, closed when the test ends,
// and a user subject unique to the run.
func twoNodes(t *testing.T, name string) (a, b *Bus, subject string) {
	t.Helper()
	testenv.NeedNATS(t)
	a, b = open(t), open(t)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b, bus.UserSubject(name + "." + nats.NewInbox()[7:])
}

func TestConformance(t *testing.T) {
	testenv.NeedNATS(t)
	bustest.Run(t, func(t *testing.T) bus.Bus { return open(t) })
}

// TestAcrossConnections: two buses are two nodes; a subscription on one gets
// what the other publishes after Subscribe returned, in order.
func TestAcrossConnections(t *testing.T) {
	a, b, subject := twoNodes(t, "cross")
	got := make(chan []byte, 1000)
	sub, err := b.Subscribe(subject, func(d []byte) { got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := range 1000 {
		if err := a.Publish(t.Context(), subject, []byte{byte(i >> 8), byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		select {
		case d := <-got:
			if n := int(d[0])<<8 | int(d[1]); n != i {
				t.Fatalf("message %d arrived as %d", i, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out at message %d", i)
		}
	}
}

// TestLocalOnce: a subscriber on the publishing bus is called once per
// message (directly, not again when NATS would echo it back), and one on
// another bus still gets every message through NATS.
func TestLocalOnce(t *testing.T) {
	a, b, subject := twoNodes(t, "local")
	const n = 100
	var (
		mu    sync.Mutex
		local []string
	)
	marker := make(chan struct{})
	subA, err := a.Subscribe(subject, func(d []byte) {
		if string(d) == "marker" {
			close(marker)
			return
		}
		mu.Lock()
		local = append(local, string(d))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Unsubscribe()
	remote := make(chan string, n)
	subB, err := b.Subscribe(subject, func(d []byte) { remote <- string(d) })
	if err != nil {
		t.Fatal(err)
	}
	defer subB.Unsubscribe()
	for i := range n {
		if err := a.Publish(t.Context(), subject, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case d := <-remote:
			if d != strconv.Itoa(i) {
				t.Fatalf("remote got %q as message %d", d, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("remote timed out at message %d", i)
		}
	}
	// Once the server has answered a's flush, any echo of a's messages was
	// written to a's connection before the marker b publishes next, and
	// a's subscription handles its messages in order.
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), subject, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-marker:
	case <-time.After(10 * time.Second):
		t.Fatal("the marker from the other bus did not arrive")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(local) != n {
		t.Fatalf("local subscriber called %d times for %d messages", len(local), n)
	}
	for i, d := range local {
		if d != strconv.Itoa(i) {
			t.Fatalf("local message %d is %q", i, d)
		}
	}
}

func TestNATSSubject(t *testing.T) {
	for _, s := range []string{"rm.u.alice", "rm.u.a.b", "rm.u.a@b-c_d", "x"} {
		if got := natsSubject(s); got != s {
			t.Errorf("natsSubject(%q) = %q, want unchanged", s, got)
		}
	}
	seen := map[string]string{}
	for _, s := range []string{
		"", ".", "a.", ".a", "a..b", "rm.u.*", "rm.u.>", "rm.u.a b", "rm.u.a\tb", "rm.u.\x00", "rm.u.é",
		"_RMX.726d", "_RMX." + "rm.u.*", "rm.u.>x",
	} {
		got := natsSubject(s)
		if len(got) < len(escPrefix) || got[:len(escPrefix)] != escPrefix || !literal(got) {
			t.Errorf("natsSubject(%q) = %q, want an escaped literal", s, got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("natsSubject(%q) = natsSubject(%q) = %q", s, prev, got)
		}
		seen[got] = s
	}
	// An escaped subject never equals a literal one.
	if natsSubject("_RMX.") == "_RMX." {
		t.Error("escape prefix not escaped")
	}
}

func TestOpenBadURL(t *testing.T) {
	if _, err := Open("nats://127.0.0.1:1", nats.Timeout(time.Second), nats.NoReconnect()); err == nil {
		t.Error("Open on a closed port: no error")
	}
}

// TestCloseWithUserCallback: a ClosedHandler given in the options still runs.
func TestCloseWithUserCallback(t *testing.T) {
	testenv.NeedNATS(t)
	called := make(chan struct{})
	b, err := Open(testenv.NATSURL(), nats.ClosedHandler(func(*nats.Conn) { close(called) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-called:
	default:
		t.Error("user ClosedHandler had not run when Close returned")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPrefixIsolates: buses with different prefixes on one server do not
// see each other's messages; buses with the same prefix do.
func TestPrefixIsolates(t *testing.T) {
	testenv.NeedNATS(t)
	if _, err := OpenPrefixed(testenv.NATSURL(), "bad prefix"); err == nil {
		t.Fatal("OpenPrefixed accepted a prefix with a space")
	}
	uniq := nats.NewInbox()[7:]
	openP := func(prefix string) *Bus {
		b, err := OpenPrefixed(testenv.NATSURL(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	other, sender, receiver := openP("a"+uniq), openP("b"+uniq), openP("b"+uniq)
	subject := bus.UserSubject("prefixed")
	got := make(chan string, 2)
	sub, err := receiver.Subscribe(subject, func(d []byte) { got <- string(d) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := other.Publish(t.Context(), subject, []byte("other cluster")); err != nil {
		t.Fatal(err)
	}
	if err := other.nc.Flush(); err != nil { // published before the next one
		t.Fatal(err)
	}
	if err := sender.Publish(t.Context(), subject, []byte("same cluster")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != "same cluster" {
			t.Fatalf("got %q across prefixes", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the same-prefix message did not arrive")
	}
	// The other cluster's message was flushed first; had it crossed, it
	// would have been queued before.
	select {
	case d := <-got:
		t.Fatalf("got %q as well", d)
	default:
	}
}
