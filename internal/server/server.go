// Package server assembles a Readmark server: it opens storage and the bus,
// builds the services (groups, messages, receipts, admin) and the gateway,
// serves HTTP on one listener, and shuts all of it down in order.
package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/readmark/readmark/internal/admin"
	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/membus"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/dispatch"
	"github.com/readmark/readmark/internal/gateway"
	"github.com/readmark/readmark/internal/groups"
	"github.com/readmark/readmark/internal/messages"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/restapi"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
	"github.com/readmark/readmark/internal/users"
	"github.com/readmark/readmark/internal/webhooks"
	"github.com/readmark/readmark/internal/webui"
	"github.com/readmark/readmark/usersig"
)

// Config is what a server needs; cmd/readmarkd fills it from flags.
type Config struct {
	Listen     string // host:port; port 0 picks a free one
	DataDir    string // embedded storage and the default secret file
	SecretFile string // "" = DataDir/secret
	AdminUser  string
	Logger     *slog.Logger
	// Heartbeat clients must keep to (0 = 30s).
	Heartbeat time.Duration
	// RateLimit and RateBurst bound each user's requests per second on
	// this node, all the user's sessions together (0 = 2,000/s with bursts
	// of 4,000).
	RateLimit float64
	RateBurst int
	// MaxSessionsPerUser bounds a user's sessions on this node (0 = 16).
	MaxSessionsPerUser int
	// MaxSessionQueueBytes bounds each session's output waiting to be
	// written (0 = 4 MiB); over it the session is closed as a slow consumer.
	MaxSessionQueueBytes int
	// MaxConnections bounds the client WebSocket connections on this node
	// (0 = DefaultMaxConnections()). The listener keeps adminHeadroom more
	// connections for /healthz, /metrics and the admin API.
	MaxConnections int
	// AdminRateLimit and AdminRateBurst bound each admin token's requests
	// per second on the admin and server REST API (0 = 500/s with bursts
	// of 1,000).
	AdminRateLimit float64
	AdminRateBurst int
	// WALSyncInterval is the embedded store's least time between two syncs
	// of its write-ahead log (0 = pebblestore.DefaultWALSyncInterval,
	// negative = none: every commit syncs at once).
	WALSyncInterval time.Duration
	// OpenStore and OpenBus replace the embedded defaults (cluster path);
	// StorageName describes OpenStore's backend in the admin overview.
	OpenStore   func(ctx context.Context) (storage.Store, error)
	StorageName string
	OpenBus     func(ctx context.Context) (bus.Bus, error)
	// Cluster, if set, makes the server a node of a cluster: OpenStore must
	// open pgstore and OpenBus natsbus (prefixed with Cluster.Name). nil:
	// this server owns every partition (the embedded default).
	Cluster *ClusterConfig
	// Webhooks tunes webhook delivery (zero values: the defaults of
	// webhooks.Config).
	Webhooks WebhookConfig
	// DeviceTTL is how long a device's delivery cursors are kept after it
	// was last seen (0 = forever; readmarkd's default is 90 days).
	DeviceTTL time.Duration
	// DevTokens lets anyone mint a token for any user (for the demo page).
	// Start refuses it unless the listener is on loopback.
	DevTokens bool
}

// WebhookConfig is the tunable part of webhooks.Config.
type WebhookConfig struct {
	Timeout, Window, MaxAge, BackoffBase, BackoffMax time.Duration
	MaxAttempts, MaxOutbox                           int
}

// Server is a running Readmark server.
type Server struct {
	cfg      Config
	secret   []byte
	store    storage.Store
	bus      bus.Bus
	commit   *storage.Committer
	groups   *groups.Service
	messages *messages.Service
	receipts *receipts.Engine
	settings *admin.SettingsStore
	webhooks *webhooks.Outbox
	gateway  *gateway.Gateway
	http     *http.Server
	ln       net.Listener
	serveErr chan error
	stopping atomic.Bool
	node     *cluster.Node     // nil unless Config.Cluster
	own      cluster.Ownership // node, or cluster.Local()
	// Registry holds the server's Prometheus metrics.
	Registry *prometheus.Registry
}

// Start opens everything and starts serving. The caller must Shutdown.
func Start(ctx context.Context, cfg Config) (srv *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AdminUser == "" {
		cfg.AdminUser = "administrator"
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections()
	}
	if cfg.SecretFile == "" {
		cfg.SecretFile = filepath.Join(cfg.DataDir, "secret")
	}
	s := &Server{cfg: cfg, Registry: prometheus.NewRegistry(), serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.closeBackends()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	if s.secret, err = LoadSecret(cfg.SecretFile); err != nil {
		return nil, err
	}
	// Listen first: a node's default ID is made of the port.
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, err
	}
	s.ln = newLimitListener(s.ln, cfg.MaxConnections+adminHeadroom)
	// What a failed open returns is not kept: it may be a nil *Store in a
	// non-nil interface, which the cleanup would close.
	storageName := cfg.StorageName
	var store storage.Store
	if cfg.OpenStore != nil {
		store, err = cfg.OpenStore(ctx)
	} else {
		storageName = "embedded (Pebble) at " + filepath.Join(cfg.DataDir, "db")
		interval := cmp.Or(cfg.WALSyncInterval, pebblestore.DefaultWALSyncInterval)
		var ps *pebblestore.Store
		if ps, err = pebblestore.OpenWith(filepath.Join(cfg.DataDir, "db"), pebblestore.Options{WALSyncInterval: max(interval, 0)}); err == nil {
			store = ps
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening storage: %w", err)
	}
	s.store = store
	if cfg.OpenBus != nil {
		b, err := cfg.OpenBus(ctx)
		if err != nil {
			return nil, fmt.Errorf("opening bus: %w", err)
		}
		s.bus = b
	} else {
		s.bus = membus.New()
	}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.commit = storage.NewCommitter(s.store, 0)
	commits := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "readmark_group_commit_ops", Help: "Writes per group commit (one synced storage batch).",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	})
	// The time of each group commit's durable write, apart from the waits
	// around it: whether a slow receipt call waited on the disk.
	applies := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "readmark_group_commit_seconds", Help: "Time of each group commit's durable write (storage Apply with sync).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
	})
	s.Registry.MustRegister(commits, applies)
	s.commit.OnCommit = func(ops, _ int) { commits.Observe(float64(ops)) }
	s.commit.OnApply = func(d time.Duration) { applies.Observe(d.Seconds()) }
	if err := s.joinCluster(ctx); err != nil {
		return nil, err
	}

	pusher := &bus.Pusher{Bus: s.bus, OnError: func(err error) { cfg.Logger.Warn("push failed", "err", err) }}
	hub := gateway.NewHub(s.bus, gateway.HubConfig{
		Logger: cfg.Logger, MaxSessionsPerUser: cfg.MaxSessionsPerUser,
		RateLimit: rate.Limit(cfg.RateLimit), RateBurst: cfg.RateBurst,
	})
	if cfg.OpenBus == nil {
		// The bus is this node's own: every session is in hub.
		pusher.Reaches = hub.Reaches
	}
	if s.settings, err = admin.LoadSettings(ctx, s.store); err != nil {
		return nil, err
	}
	wh, err := webhooks.New(ctx, webhooks.Config{
		Store: s.store, Committer: s.commit, Owner: s.own.Enter, Registry: s.Registry, Logger: cfg.Logger,
		Timeout: cfg.Webhooks.Timeout, Window: cfg.Webhooks.Window, MaxAttempts: cfg.Webhooks.MaxAttempts,
		MaxAge: cfg.Webhooks.MaxAge, BackoffBase: cfg.Webhooks.BackoffBase, BackoffMax: cfg.Webhooks.BackoffMax,
		MaxOutbox: cfg.Webhooks.MaxOutbox,
	})
	if err != nil {
		return nil, err
	}
	s.webhooks = wh
	s.own.OnRelease(wh.Release)
	s.settings.WatchWebhooks(wh.SetEndpoints)
	var epochs groups.Epochs // fences of the user index build: cluster only
	if s.node != nil {
		epochs = s.node.Epochs
	}
	if s.groups, err = groups.New(ctx, s.store, s.commit, pusher, epochs); err != nil {
		return nil, err
	}
	s.messages = messages.New(messages.Config{
		Store: s.store, Committer: s.commit, Groups: s.groups, Pusher: pusher,
		ReceiptGroupTypes: s.settings.ReceiptsEnabled,
		Online:            hub.Online,
		DeviceTTL:         cfg.DeviceTTL,
		Logger:            cfg.Logger,
		Webhooks:          wh,
	})
	profiles := users.New(s.store, s.commit)
	if err := s.shareCaches(profiles); err != nil {
		return nil, err
	}
	// With readmark_push_write_seconds{kind="receipts"}, where a receipt
	// push's time goes: held for a token, then queued to the session.
	pushWait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "readmark_receipt_push_wait_seconds", Help: "How long each message's receipts waited for their push frame to the sender (the push rate limit; 0 when pushed at once), per message per frame.",
		// Fine around the push interval (1/18 s), where a busy sender's
		// waits gather: doubling buckets would spread them over 51-102 ms.
		Buckets: []float64{0.0001, 0.001, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.055, 0.06, 0.065, 0.07, 0.08, 0.1, 0.15, 0.25, 0.5, 1},
	})
	s.Registry.MustRegister(pushWait)
	s.receipts, err = receipts.New(receipts.Config{
		Store: s.store, Committer: s.commit, Messages: s.messages, Roster: s.groups,
		Pusher: pusher, Profiles: profiles, Logger: cfg.Logger, Webhooks: wh,
		OnPushWait: func(d time.Duration) { pushWait.Observe(d.Seconds()) },
	})
	if err != nil {
		return nil, err
	}
	s.messages.SetReceipts(s.receipts)
	authenticate := func(token string) (string, error) { return usersig.Verify(s.secret, token, time.Now()) }
	dispatcher := dispatch.New(dispatch.Services{
		Groups: s.groups, Messages: s.messages, Receipts: s.receipts, Users: profiles,
	}, s.own, cfg.Logger)
	s.gateway = gateway.New(gateway.Config{
		Authenticate:   authenticate,
		Hub:            hub,
		Dispatcher:     dispatcher,
		Metrics:        gateway.NewMetrics(s.Registry),
		Logger:         cfg.Logger,
		Heartbeat:      cfg.Heartbeat,
		MaxQueueBytes:  cfg.MaxSessionQueueBytes,
		MaxConnections: cfg.MaxConnections,
	})
	mux := http.NewServeMux()
	mux.Handle(gateway.Path, s.gateway)
	adminAPI := admin.New(admin.Config{
		Settings: s.settings, Authenticate: authenticate, AdminUser: cfg.AdminUser,
		Gatherer: s.Registry, Messages: s.messages, Dispatcher: dispatcher,
		Version: Version(), Storage: storageName, Started: time.Now(),
		Healthy: func() error {
			if s.stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
		RateLimit: rate.Limit(cfg.AdminRateLimit), RateBurst: cfg.AdminRateBurst,
		Role: s.role,
	})
	adminAPI.Routes(mux)
	restapi.Routes(mux, restapi.Config{Admin: adminAPI, Dispatcher: dispatcher, Messages: s.messages, Groups: s.groups, Webhooks: wh})
	pages := webui.Config{}
	if cfg.DevTokens {
		if ip := s.ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
			return nil, fmt.Errorf("--dev-tokens lets anyone sign in as anyone, so it needs a loopback listener (127.0.0.1 or [::1]), not %s", s.ln.Addr())
		}
		cfg.Logger.Warn("DEV TOKENS ENABLED: anyone who can reach " + s.ln.Addr().String() + webui.DevTokenPath + " can sign in as any user, the admin included; never use --dev-tokens outside development")
		pages.DevTokenSecret = s.secret
	}
	webui.Routes(mux, pages)
	if s.node != nil {
		// Services and the dispatcher have registered their hooks.
		if err := s.node.Start(); err != nil {
			return nil, err
		}
	}
	// IdleTimeout: an idle keep-alive connection must not hold one of the
	// listener's places for the operator's requests for ever.
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	go func() { s.serveErr <- s.http.Serve(s.ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base address clients dial.
func (s *Server) URL() string { return "ws://" + s.Addr() }

// Secret is the HMAC key tokens are signed with.
func (s *Server) Secret() []byte { return s.secret }

// Store exposes the storage (disk usage reports in benchmarks).
func (s *Server) Store() storage.Store { return s.store }

// Done yields the HTTP server's exit error once it stops serving.
func (s *Server) Done() <-chan error { return s.serveErr }

// Shutdown stops accepting connections, lets sessions finish their requests
// and tells them to go, delivers and commits what is queued, and closes
// storage. After ctx expires the remaining sessions are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.stopping.Swap(true) {
		return nil
	}
	var errs []error
	if s.node != nil {
		// Hand every partition to the other nodes while sessions can still
		// reach them (forwarding works throughout).
		errs = append(errs, s.node.Drain(ctx))
	}
	errs = append(errs, s.http.Shutdown(ctx))
	errs = append(errs, s.gateway.Shutdown(ctx))
	s.closeBackends()
	return errors.Join(errs...)
}

func (s *Server) closeBackends() {
	if s.webhooks != nil {
		// Delivery stops first; undelivered events stay in the outbox.
		s.webhooks.Close()
	}
	if s.messages != nil {
		s.messages.Close()
	}
	if s.receipts != nil {
		s.receipts.Close()
	}
	if s.node != nil {
		// After the services' last writes (fenced), before the Committer
		// closes.
		if err := s.node.Close(); err != nil {
			s.cfg.Logger.Warn("leaving the cluster", "err", err)
		}
	}
	if s.commit != nil {
		s.commit.Close()
	}
	if s.bus != nil {
		s.bus.Close()
	}
	if s.ln != nil && s.http == nil {
		s.ln.Close() // Start failed before serving
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.cfg.Logger.Error("closing storage", "err", err)
		}
	}
}

// Version is the server's version: the module version and VCS revision
// the binary was built from, as far as the build recorded them.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " " + rev + modified
	}
	return v
}

// LoadSecret reads the HMAC key from path (surrounding white space
// trimmed), creating the file with a random hex key if it does not exist.
func LoadSecret(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var key [32]byte
		rand.Read(key[:])
		raw = []byte(hex.EncodeToString(key[:]) + "\n")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	secret := []byte(strings.TrimSpace(string(raw)))
	if len(secret) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return secret, nil
}
