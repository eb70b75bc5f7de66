package gateway

import (
	"testing"
	"time"

	"golang.org/x/time/rate"

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
