package gateway

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
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
	h.users["alice"] = &userSessions{sessions: map[*session]struct{}{{id: 7}: {}, {id: 8}: {}}}
	h.users["bob"] = &userSessions{sessions: map[*session]struct{}{{id: 9}: {}}}
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
