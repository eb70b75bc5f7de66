package webhooks

import (
	"errors"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/apierr"
)

func TestValidate(t *testing.T) {
	old := []Endpoint{{URL: "https://a.example/h", Events: []string{"message.sent"}, Secret: "old"}}
	for _, tt := range []struct {
		name    string
		in      []Endpoint
		wantErr bool
		secret  string // of the first endpoint, when valid
		events  int
	}{
		{"keeps the secret of its URL", []Endpoint{{URL: "https://a.example/h", Events: []string{"c2c.mark_read"}}}, false, "old", 1},
		{"new secret wins", []Endpoint{{URL: "https://a.example/h", Events: []string{"c2c.mark_read"}, Secret: "new"}}, false, "new", 1},
		{"duplicate events folded", []Endpoint{{URL: "http://b/h", Events: []string{"message.sent", "message.sent"}, Secret: "s"}}, false, "s", 1},
		{"new URL needs a secret", []Endpoint{{URL: "https://other/h", Events: []string{"message.sent"}}}, true, "", 0},
		{"relative URL", []Endpoint{{URL: "/h", Events: []string{"message.sent"}, Secret: "s"}}, true, "", 0},
		{"other scheme", []Endpoint{{URL: "ftp://b/h", Events: []string{"message.sent"}, Secret: "s"}}, true, "", 0},
		{"no events", []Endpoint{{URL: "http://b/h", Secret: "s"}}, true, "", 0},
		{"unknown event", []Endpoint{{URL: "http://b/h", Events: []string{"message.read"}, Secret: "s"}}, true, "", 0},
		{"URL twice", []Endpoint{{URL: "http://b/h", Events: []string{"message.sent"}, Secret: "s"}, {URL: "http://b/h", Events: []string{"message.sent"}, Secret: "s"}}, true, "", 0},
		{"too many", make([]Endpoint, MaxEndpoints+1), true, "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Validate(tt.in, old)
			if tt.wantErr {
				var e *apierr.Error
				if !errors.As(err, &e) {
					t.Fatalf("got %v, %v; want an apierr", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Secret != tt.secret || len(got[0].Events) != tt.events {
				t.Fatalf("got %+v", got[0])
			}
		})
	}
	if r := Redacted(old); r[0].Secret != "" || r[0].URL != old[0].URL || old[0].Secret != "old" {
		t.Fatalf("redacted %+v, original %+v", r, old)
	}
}

func TestBackoff(t *testing.T) {
	o := &Outbox{cfg: Config{BackoffBase: time.Second, BackoffMax: time.Minute}}
	for _, tt := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{4, 4 * time.Second, 8 * time.Second},
		{7, 30 * time.Second, time.Minute},
		{40, 30 * time.Second, time.Minute},
	} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := o.backoff(tt.attempt)
			if d < tt.min || d > tt.max {
				t.Fatalf("attempt %d: %v not in [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("attempt %d: no jitter", tt.attempt)
		}
	}
}
