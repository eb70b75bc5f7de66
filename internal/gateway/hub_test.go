package gateway

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/membus"
)

// TestRestingLimits: a user's limiter outlives its last session only while
// its bucket is not full, and only until it must have refilled.
func TestRestingLimits(t *testing.T) {
	h := NewHub(nil, HubConfig{RateLimit: 2, RateBurst: 4}) // refills in 2 s
	now := time.Now()
	used := rate.NewLimiter(2, 4)
	used.AllowN(now, 3)
	h.rest("alice", used, now)
	h.rest("bob", rate.NewLimiter(2, 4), now) // full: nothing to keep
	if h.resting["alice"] != used || h.resting["bob"] != nil {
		t.Fatalf("resting after the sessions closed: %v", h.resting)
	}
	h.pruneResting(now.Add(1999 * time.Millisecond))
	if h.resting["alice"] != used {
		t.Fatal("alice's limiter dropped before it refilled")
	}
	h.pruneResting(now.Add(2 * time.Second))
	if len(h.resting) != 0 || len(h.restingQ) != 0 {
		t.Fatalf("refilled limiters kept: %v, queue %d", h.resting, len(h.restingQ))
	}
}

func TestHubReaches(t *testing.T) {
	h := NewHub(nil, HubConfig{})
	h.users["alice"] = &userSessions{sessions: []*session{{id: 7}, {id: 8}}}
	h.users["bob"] = &userSessions{sessions: []*session{{id: 9}}}
	tests := []struct {
		user   string
		except uint64
		want   bool
	}{
		{"alice", 0, true},
		{"alice", 7, true}, // session 8
		{"bob", 0, true},
		{"bob", 9, false},
		{"carol", 0, false},
	}
	for _, tt := range tests {
		if got := h.Reaches(tt.user, tt.except); got != tt.want {
			t.Errorf("Reaches(%s, %d) = %v, want %v", tt.user, tt.except, got, tt.want)
		}
	}
}

// TestHubRemove: removing one of a user's sessions leaves the others
// registered, and the user leaves the hub with the last one.
func TestHubRemove(t *testing.T) {
	h := NewHub(membus.New(), HubConfig{})
	ss := []*session{{id: 1, user: "alice"}, {id: 2, user: "alice"}, {id: 3, user: "alice"}}
	for _, s := range ss {
		if _, err := h.add(s); err != nil {
			t.Fatal(err)
		}
	}
	h.remove(ss[1])
	if !h.Reaches("alice", 1) || !h.Reaches("alice", 3) {
		t.Fatal("removing session 2 dropped another session")
	}
	h.remove(ss[0])
	if h.Reaches("alice", 3) || !h.Reaches("alice", 0) {
		t.Fatal("after removing 1 and 2, session 3 is not alice's only one")
	}
	h.remove(ss[2])
	if h.users["alice"] != nil {
		t.Fatal("alice still in the hub after her last session left")
	}
}

// gatedBus is a membus whose Subscribe to one subject waits until let is
// closed, as a NATS subscription waits for a round trip, and then fails
// with fail if set.
type gatedBus struct {
	*membus.Bus
	gated    string
	entered  chan struct{} // closed when the gated Subscribe begins
	let      chan struct{}
	fail     error
	subjects chan string // every Subscribe's subject
}

func (b *gatedBus) Subscribe(subject string, handler func([]byte)) (bus.Subscription, error) {
	b.subjects <- subject
	if subject == b.gated {
		close(b.entered)
		<-b.let
		if b.fail != nil {
			return nil, b.fail
		}
	}
	return b.Bus.Subscribe(subject, handler)
}

func newGatedBus(gated string, fail error) *gatedBus {
	return &gatedBus{Bus: membus.New(), gated: gated, fail: fail,
		entered: make(chan struct{}), let: make(chan struct{}), subjects: make(chan string, 10)}
}

// TestHubAddSubscribesUnlocked: while one user's subscription waits for the
// bus, other users log in and get their pushes, and the user's own second
// session waits for that subscription rather than making another.
func TestHubAddSubscribesUnlocked(t *testing.T) {
	b := newGatedBus(bus.UserSubject("alice"), nil)
	h := NewHub(b, HubConfig{})
	alice1, alice2 := &session{id: 1, user: "alice"}, &session{id: 2, user: "alice"}
	added := make(chan error, 2)
	go func() { _, err := h.add(alice1); added <- err }()
	<-b.entered
	go func() { _, err := h.add(alice2); added <- err }()
	waitSessions(t, h, "alice", 2, b) // alice2 waits for alice1's subscription

	bob := &session{id: 3, user: "bob"}
	bobAdded := make(chan error, 1)
	go func() { _, err := h.add(bob); bobAdded <- err }()
	select {
	case err := <-bobAdded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(b.let)
		t.Fatal("bob's add waited for alice's subscription")
	}
	if !h.Reaches("bob", 0) {
		t.Fatal("bob not registered")
	}
	select {
	case err := <-added:
		t.Fatalf("an add of alice returned (%v) before her subscription was made", err)
	default:
	}
	close(b.let)
	for range 2 {
		if err := <-added; err != nil {
			t.Fatal(err)
		}
	}
	close(b.subjects)
	var alices int
	for s := range b.subjects {
		if s == bus.UserSubject("alice") {
			alices++
		}
	}
	if alices != 1 {
		t.Fatalf("alice's subject subscribed %d times, want once", alices)
	}
	h.remove(alice1)
	h.remove(alice2)
	if h.Online("alice") {
		t.Fatal("alice still online after both sessions left")
	}
}

// TestHubAddSubscribeFails: when the user's subscription fails, every
// session of the user that waited for it fails with it, and the user is
// not left in the hub.
func TestHubAddSubscribeFails(t *testing.T) {
	boom := errors.New("bus down")
	b := newGatedBus(bus.UserSubject("alice"), boom)
	h := NewHub(b, HubConfig{})
	added := make(chan error, 2)
	go func() { _, err := h.add(&session{id: 1, user: "alice"}); added <- err }()
	<-b.entered
	go func() { _, err := h.add(&session{id: 2, user: "alice"}); added <- err }()
	// Both wait on the same subscription (a later add would subscribe anew).
	waitSessions(t, h, "alice", 2, b)
	close(b.let)
	for range 2 {
		if err := <-added; !errors.Is(err, boom) {
			t.Fatalf("add: %v, want %v", err, boom)
		}
	}
	if h.Online("alice") {
		t.Fatal("alice left in the hub after her subscription failed")
	}
}

// waitSessions waits until h holds n sessions of user, whose subscription
// b holds back (let go if the wait fails).
func waitSessions(t *testing.T, h *Hub, user string, n int, b *gatedBus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sessions(h, user) < n {
		if time.Now().After(deadline) {
			close(b.let)
			t.Fatalf("%s has %d sessions in the hub, want %d", user, sessions(h, user), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// sessions counts the sessions h holds for user.
func sessions(h *Hub, user string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if us := h.users[user]; us != nil {
		return len(us.sessions)
	}
	return 0
}
