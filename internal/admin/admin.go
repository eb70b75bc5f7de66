// Package admin owns the server's settings (which group types may ask for
// read receipts) and the operator-facing HTTP API served beside the client
// endpoint: /healthz, /metrics, /v1/admin/settings and /debug/pprof/, the
// last two authenticated by a token of the admin user.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/storage"
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
}

// DefaultSettings are the settings of a new server.
func DefaultSettings() Settings {
	return Settings{ReadReceiptGroupTypes: []string{"Work", "Public", "Meeting", "Community"}}
}

var settingsKey = storage.Key("s", "settings")

// SettingsStore holds the current settings, persisted in the Store.
type SettingsStore struct {
	store   storage.Store
	mu      sync.RWMutex
	cur     Settings
	enabled map[pb.GroupType]bool
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
	return Settings{ReadReceiptGroupTypes: slices.Clone(ss.cur.ReadReceiptGroupTypes)}
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
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	b := &storage.Batch{}
	b.Set(settingsKey, raw)
	if err := ss.store.Apply(ctx, b, true); err != nil {
		return err
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
	ss.cur = Settings{ReadReceiptGroupTypes: types}
	ss.enabled = enabled
	ss.mu.Unlock()
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
}

// Routes registers the admin API's handlers on mux.
func Routes(mux *http.ServeMux, cfg Config) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := cfg.Healthy(); err != nil {
			writeError(w, apierr.New(pb.CodeUnavailable, "%v", err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	// Profiles for operators, behind the admin token like the settings.
	mux.HandleFunc("GET /debug/pprof/", cfg.authed(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/profile", cfg.authed(pprof.Profile))
	mux.HandleFunc("GET /v1/admin/settings", cfg.authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, cfg.Settings.Get())
	}))
	mux.HandleFunc("PUT /v1/admin/settings", cfg.authed(func(w http.ResponseWriter, r *http.Request) {
		var s Settings
		dec := json.NewDecoder(io.LimitReader(r.Body, 64*1024))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			writeError(w, apierr.InvalidArgument("settings JSON: %v", err))
			return
		}
		if err := cfg.Settings.Put(r.Context(), s); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, cfg.Settings.Get())
	}))
}

func (cfg Config) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			writeError(w, apierr.New(pb.CodeUnauthenticated, "Authorization: Bearer <token of %s> required", cfg.AdminUser))
			return
		}
		user, err := cfg.Authenticate(token)
		if err != nil {
			writeError(w, apierr.New(pb.CodeUnauthenticated, "token rejected: %v", err))
			return
		}
		if user != cfg.AdminUser {
			writeError(w, apierr.PermissionDenied("user %q is not the admin user", user))
			return
		}
		h(w, r)
	}
}

func writeError(w http.ResponseWriter, err error) { apierr.WriteHTTP(w, err) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
