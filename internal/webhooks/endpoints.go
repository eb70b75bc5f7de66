package webhooks

import (
	"net/url"
	"slices"

	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/webhook"
)

// MaxEndpoints bounds the configured endpoints.
const MaxEndpoints = 16

// Endpoint is one webhook receiver in the settings: its URL, the event
// types it wants and its signing secret (write-only: never returned).
type Endpoint struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
	Secret string   `json:"secret,omitempty"`
}

// Validate checks new endpoints. An endpoint without a secret keeps the
// secret of the old endpoint with the same URL (so a GET-edit-PUT round
// trip, which cannot see secrets, keeps them); a new URL needs one.
func Validate(eps, old []Endpoint) ([]Endpoint, error) {
	if len(eps) > MaxEndpoints {
		return nil, apierr.TooMany("%d webhooks, at most %d", len(eps), MaxEndpoints)
	}
	out := make([]Endpoint, 0, len(eps))
	for _, ep := range eps {
		u, err := url.Parse(ep.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, apierr.InvalidArgument("webhook url %q: must be an absolute http:// or https:// URL", ep.URL)
		}
		if slices.ContainsFunc(out, func(o Endpoint) bool { return o.URL == ep.URL }) {
			return nil, apierr.InvalidArgument("webhook url %q listed twice", ep.URL)
		}
		if len(ep.Events) == 0 {
			return nil, apierr.InvalidArgument("webhook %q: events must name at least one of %v", ep.URL, webhook.Types)
		}
		var events []string
		for _, e := range ep.Events {
			if !slices.Contains(webhook.Types, e) {
				return nil, apierr.InvalidArgument("webhook %q: unknown event %q (known: %v)", ep.URL, e, webhook.Types)
			}
			if !slices.Contains(events, e) {
				events = append(events, e)
			}
		}
		secret := ep.Secret
		if secret == "" {
			if i := slices.IndexFunc(old, func(o Endpoint) bool { return o.URL == ep.URL }); i >= 0 {
				secret = old[i].Secret
			}
		}
		if secret == "" {
			return nil, apierr.InvalidArgument("webhook %q: secret is required", ep.URL)
		}
		out = append(out, Endpoint{URL: ep.URL, Events: events, Secret: secret})
	}
	return out, nil
}

// Redacted returns eps without their secrets, for display.
func Redacted(eps []Endpoint) []Endpoint {
	out := make([]Endpoint, len(eps))
	for i, ep := range eps {
		out[i] = Endpoint{URL: ep.URL, Events: slices.Clone(ep.Events)}
	}
	return out
}

// endpointSet is an immutable view of the configured endpoints.
type endpointSet struct {
	list  []Endpoint
	wants map[string]bool // event types any endpoint wants
}

func newEndpointSet(eps []Endpoint) *endpointSet {
	s := &endpointSet{list: eps, wants: make(map[string]bool)}
	for _, ep := range eps {
		for _, e := range ep.Events {
			s.wants[e] = true
		}
	}
	return s
}

func (s *endpointSet) find(url string) (Endpoint, bool) {
	i := slices.IndexFunc(s.list, func(e Endpoint) bool { return e.URL == url })
	if i < 0 {
		return Endpoint{}, false
	}
	return s.list[i], true
}
