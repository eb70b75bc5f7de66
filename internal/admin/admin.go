// Package admin owns the server's settings (which group types may ask for
// read receipts) and the operator-facing HTTP API served beside the client
// endpoint: /healthz and /metrics, and behind a token of the admin user
// (rate limited per token) /v1/admin/settings, the server overview, the
// message read path (/v1/admin/messages/lookup and a group message's read
// members) and Go's profiles under /debug/pprof/. The server REST API (package restapi) uses
// its authentication and JSON helpers.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/dispatch"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/webhooks"
)

// GroupTypes maps the API's group type names to the wire enum.
var GroupTypes = map[string]pb.GroupType{
	"Work":       pb.GroupType_GROUP_TYPE_WORK,
	"Public":     pb.GroupType_GROUP_TYPE_PUBLIC,
	"Meeting":    pb.GroupType_GROUP_TYPE_MEETING,
	"Community":  pb.GroupType_GROUP_TYPE_COMMUNITY,
	"AVChatRoom": pb.GroupType_GROUP_TYPE_AVCHATROOM,
}

// Settings is the settings object of GET/PUT /v1/admin/settings.
type Settings struct {
	// ReadReceiptGroupTypes lists the group types whose messages may ask
	// for read receipts. C2C read receipts need no setting.
	ReadReceiptGroupTypes []string `json:"read_receipt_group_types"`
	// Webhooks are the webhook endpoints (docs/server-api.md). Secrets are
	// write-only: Get leaves them out. In a PUT, absent (null) keeps the
	// current list, and an endpoint without a secret keeps the secret of the
	// current endpoint with its URL.
	Webhooks []webhooks.Endpoint `json:"webhooks"`
}

// DefaultSettings are the settings of a new server.
func DefaultSettings() Settings {
	return Settings{ReadReceiptGroupTypes: []string{"Work", "Public", "Meeting", "Community"}}
}

var settingsKey = storage.Key("s", "settings")

// SettingsStore holds the current settings, persisted in the Store.
type SettingsStore struct {
	// Changed, if set before use, gets the stored form of the settings
	// after each Put: the server broadcasts it so that the other nodes of a
	// cluster apply it too (Apply).
	Changed func(raw []byte)

	store   storage.Store
	putMu   sync.Mutex // serializes Put (validation reads the current webhooks)
	mu      sync.RWMutex
	cur     Settings
	enabled map[pb.GroupType]bool
	watch   func([]webhooks.Endpoint) // called under mu
}

// LoadSettings reads the settings, or the defaults if none were saved.
func LoadSettings(ctx context.Context, s storage.Store) (*SettingsStore, error) {
	ss := &SettingsStore{store: s}
	cur := DefaultSettings()
	v, err := s.Get(ctx, settingsKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(v, &cur); err != nil {
			return nil, fmt.Errorf("admin: stored settings: %w", err)
		}
	}
	if err := ss.set(cur); err != nil {
		return nil, err
	}
	return ss, nil
}

// Get returns the current settings.
func (ss *SettingsStore) Get() Settings {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return Settings{ReadReceiptGroupTypes: slices.Clone(ss.cur.ReadReceiptGroupTypes), Webhooks: webhooks.Redacted(ss.cur.Webhooks)}
}

// WatchWebhooks calls fn with the webhook endpoints (secrets included) now
// and after every change.
func (ss *SettingsStore) WatchWebhooks(fn func([]webhooks.Endpoint)) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.watch = fn
	fn(ss.cur.Webhooks)
}

// Put validates, durably stores and applies new settings.
func (ss *SettingsStore) Put(ctx context.Context, s Settings) error {
	if s.ReadReceiptGroupTypes == nil {
		return apierr.InvalidArgument("read_receipt_group_types is required (use [] to disable group read receipts)")
	}
	types, err := normalize(s.ReadReceiptGroupTypes)
	if err != nil {
		return err
	}
	s.ReadReceiptGroupTypes = types
	ss.putMu.Lock()
	defer ss.putMu.Unlock()
	ss.mu.RLock()
	cur := ss.cur.Webhooks
	ss.mu.RUnlock()
	if s.Webhooks == nil {
		s.Webhooks = cur
	} else if s.Webhooks, err = webhooks.Validate(s.Webhooks, cur); err != nil {
		return err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	b := &storage.Batch{}
	b.Set(settingsKey, raw)
	if err := ss.store.Apply(ctx, b, true); err != nil {
		return err
	}
	if err := ss.set(s); err != nil {
		return err
	}
	if ss.Changed != nil {
		ss.Changed(raw)
	}
	return nil
}

// Apply sets the settings from their stored form, as another node of the
// cluster saved them.
func (ss *SettingsStore) Apply(raw []byte) error {
	var s Settings
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("admin: settings: %w", err)
	}
	return ss.set(s)
}

func (ss *SettingsStore) set(s Settings) error {
	types, err := normalize(s.ReadReceiptGroupTypes)
	if err != nil {
		return err
	}
	enabled := make(map[pb.GroupType]bool, len(types))
	for _, t := range types {
		enabled[GroupTypes[t]] = true
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.cur = Settings{ReadReceiptGroupTypes: types, Webhooks: s.Webhooks}
	ss.enabled = enabled
	if ss.watch != nil {
		ss.watch(s.Webhooks)
	}
	return nil
}

// ReceiptsEnabled reports whether messages in groups of type t may ask for
// read receipts.
func (ss *SettingsStore) ReceiptsEnabled(t pb.GroupType) bool {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return ss.enabled[t]
}

func normalize(types []string) ([]string, error) {
	out := make([]string, 0, len(types))
	for _, t := range types {
		if _, ok := GroupTypes[t]; !ok {
			return nil, apierr.InvalidArgument("unknown group type %q (known: Work, Public, Meeting, Community, AVChatRoom)", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Config wires the admin HTTP API.
type Config struct {
	Settings *SettingsStore
	// Authenticate checks a token and returns its user.
	Authenticate func(token string) (string, error)
	AdminUser    string
	Gatherer     prometheus.Gatherer
	// Healthy reports whether the server can serve (storage open, not
	// shutting down).
	Healthy func() error
	// RateLimit and RateBurst bound each admin token's requests per second
	// (0 = 500/s with bursts of 1,000).
	RateLimit rate.Limit
	RateBurst int
	// Role, if set, adds the node's place in the cluster to /healthz (node
	// ID, partitions owned).
	Role func() map[string]any
	// Messages and Dispatcher serve the message read path.
	Messages   MessageLookup
	Dispatcher *dispatch.Dispatcher
	// Version, Storage (a description of the backend) and Started are
	// shown in the overview.
	Version string
	Storage string
	Started time.Time
}

// API serves the admin HTTP API; Routes registers it, and other packages
// (the server REST API) put their handlers behind its Authed.
type API struct {
	cfg    Config
	limits *tokenLimits
}

// New returns the admin API for cfg.
func New(cfg Config) *API {
	if cfg.RateLimit <= 0 {
		cfg.RateLimit, cfg.RateBurst = 500, 1000
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = max(1, int(cfg.RateLimit))
	}
	return &API{cfg: cfg, limits: &tokenLimits{limit: cfg.RateLimit, burst: cfg.RateBurst, m: make(map[string]*rate.Limiter)}}
}

// Routes registers the admin API's handlers on mux.
func (a *API) Routes(mux *http.ServeMux) {
	cfg := a.cfg
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Healthy(); err != nil {
			WriteError(w, apierr.New(pb.CodeUnavailable, "%v", err))
			return
		}
		body := map[string]any{"status": "ok"}
		if cfg.Role != nil {
			maps.Copy(body, cfg.Role())
		}
		WriteJSON(w, http.StatusOK, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	a.profileRoutes(mux)
	mux.HandleFunc("GET /v1/admin/settings", a.Authed(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, cfg.Settings.Get())
	}))
	mux.HandleFunc("PUT /v1/admin/settings", a.Authed(func(w http.ResponseWriter, r *http.Request) {
		var s Settings
		if err := Decode(r, &s); err != nil {
			WriteError(w, err)
			return
		}
		if err := cfg.Settings.Put(r.Context(), s); err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, cfg.Settings.Get())
	}))
	mux.HandleFunc("GET /v1/admin/overview", a.Authed(cfg.overview))
	cfg.messageRoutes(mux, a.Authed)
}

// Authed lets a request through to h only with a valid token of the admin
// user, within that token's rate limit.
func (a *API) Authed(h http.HandlerFunc) http.HandlerFunc {
	cfg := a.cfg
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			WriteError(w, apierr.New(pb.CodeUnauthenticated, "Authorization: Bearer <token of %s> required", cfg.AdminUser))
			return
		}
		user, err := cfg.Authenticate(token)
		if err != nil {
			WriteError(w, apierr.New(pb.CodeUnauthenticated, "token rejected: %v", err))
			return
		}
		if user != cfg.AdminUser {
			WriteError(w, apierr.PermissionDenied("user %q is not the admin user", user))
			return
		}
		if wait := a.limits.reserve(token); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			WriteError(w, apierr.New(pb.CodeRateLimited, "more than %g requests/s with this token; retry after %v", float64(cfg.RateLimit), wait.Round(time.Millisecond)))
			return
		}
		h(w, r)
	}
}

// tokenLimits holds a rate limiter per admin token. Only valid admin tokens
// get one; the map is cleared when it reaches maxTokens (tokens are few in
// practice), so it cannot grow without bound.
type tokenLimits struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

const maxTokens = 1024

// reserve takes one request from token's budget; if there is none, it
// takes nothing and returns how long until there is.
func (t *tokenLimits) reserve(token string) time.Duration {
	t.mu.Lock()
	l := t.m[token]
	if l == nil {
		if len(t.m) >= maxTokens {
			clear(t.m)
		}
		l = rate.NewLimiter(t.limit, t.burst)
		t.m[token] = l
	}
	t.mu.Unlock()
	now := time.Now()
	res := l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// Decode reads r's JSON body (at most 1 MiB) into v, rejecting unknown
// fields with an InvalidArgument error.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierr.InvalidArgument("request JSON: %v", err)
	}
	return nil
}

// WriteError writes err as {"code", "name", "desc"} with the code's HTTP
// status.
func WriteError(w http.ResponseWriter, err error) { apierr.WriteHTTP(w, err) }

// WriteJSON writes v as the JSON response body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
