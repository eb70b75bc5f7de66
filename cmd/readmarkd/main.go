// Command readmarkd is the Readmark server.
//
//	readmarkd [--listen ADDR] [--data DIR] [--secret-file FILE] [--admin-user ID] [--dev-tokens]
//	          [--memory-limit auto|off|SIZE] [--gogc auto|off|PERCENT] [--gomaxprocs auto|N]
//	readmarkd token --user ID [--ttl DURATION]
//
// Cluster: readmarkd --postgres DSN --nats URL [--node-id ID] [--cluster NAME]
// on every node (see docs/architecture.md, "Cluster").
//
// Every flag can also be set by an environment variable READMARK_<NAME>
// (e.g. READMARK_LISTEN, READMARK_SECRET_FILE); a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/natsbus"
	"github.com/readmark/readmark/internal/gateway"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/usersig"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "readmarkd:", err)
		os.Exit(1)
	}
}

// common are the flags the server and the token command share.
type common struct {
	data       string
	secretFile string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.data, "data", "./data", "directory of the embedded storage and the default secret file")
	fs.StringVar(&c.secretFile, "secret-file", "", "file holding the token HMAC key (created with a random key if missing; default DATA/secret)")
}

func (c *common) secretPath() string {
	if c.secretFile != "" {
		return c.secretFile
	}
	return filepath.Join(c.data, "secret")
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return tokenCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("readmarkd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:7700", "address to listen on (port 0 picks a free one)")
	adminUser := fs.String("admin-user", "administrator", "user whose token may use the admin API")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	rateLimit := fs.Float64("rate-limit", 2000, "requests per second each user may send, all the user's sessions on this node together (over it: CodeRateLimited)")
	rateBurst := fs.Int("rate-burst", 4000, "requests a user may send at once above --rate-limit")
	maxSessions := fs.Int("max-sessions-per-user", 16, "sessions one user may have on this node (one more login: CodeSessionLimit)")
	maxQueue := fs.Int("max-session-queue-bytes", gateway.DefaultMaxQueueBytes, "bytes of output a session may have waiting to be written; over it the session is closed as a slow consumer")
	maxConns := fs.Int("max-connections", 0, "client WebSocket connections on this node (one more: HTTP 503 CodeConnectionLimit; 0 = the descriptor limit minus a reserve)")
	walSync := fs.Duration("wal-sync-interval", pebblestore.DefaultWALSyncInterval, "embedded store: least time between two syncs of its write-ahead log; a commit arriving sooner waits and shares the next sync (less CPU under load, up to this much more latency; 0 = every commit syncs at once)")
	deviceTTL := fs.Duration("device-ttl", 90*24*time.Hour, "how long a device's delivery cursors are kept after it was last seen; a device back later starts at the user's baseline like a new one (0 = forever)")
	var wh server.WebhookConfig
	fs.DurationVar(&wh.Timeout, "webhook-timeout", 5*time.Second, "how long one webhook POST may take")
	fs.IntVar(&wh.MaxAttempts, "webhook-max-attempts", 8, "attempts of a webhook POST before its events are parked")
	fs.DurationVar(&wh.MaxAge, "webhook-max-age", time.Hour, "age after which undelivered webhook events are parked")
	fs.DurationVar(&wh.BackoffBase, "webhook-backoff", time.Second, "first retry delay of a webhook POST (doubles per attempt, jittered)")
	fs.DurationVar(&wh.BackoffMax, "webhook-backoff-max", 5*time.Minute, "longest retry delay of a webhook POST")
	fs.IntVar(&wh.MaxOutbox, "webhook-outbox-max", 100_000, "webhook events the outbox holds; when full, new events are dropped (counted in readmark_webhook_dropped_total)")
	adminRateLimit := fs.Float64("admin-rate-limit", 500, "requests per second each admin token may send to the admin and server REST API (over it: 429 RateLimited with Retry-After)")
	adminRateBurst := fs.Int("admin-rate-burst", 1000, "requests an admin token may send at once above --admin-rate-limit")
	postgres := fs.String("postgres", "", "store data in PostgreSQL at this DSN instead of the embedded store (cluster path; see docs/architecture.md)")
	pgTable := fs.String("postgres-table", "readmark_kv", "table used with --postgres")
	natsURL := fs.String("nats", "", "route pushes over NATS at this URL instead of in process (cluster path)")
	nodeID := fs.String("node-id", "", "this node's ID in a cluster (--postgres and --nats), stable across restarts (default hostname:port)")
	clusterName := fs.String("cluster", "readmark", "cluster name: prefixes every NATS subject, so clusters sharing a NATS server never cross")
	devTokens := fs.Bool("dev-tokens", false, "let the demo page mint a token for any user (development only; refused unless --listen is loopback)")
	memoryLimit := fs.String("memory-limit", "auto", "soft limit of the Go runtime's memory (debug.SetMemoryLimit): a size such as 4GiB, off, or auto: GOMEMLIMIT if set, else 75% of the cgroup limit, else 50% of physical memory")
	gogc := fs.String("gogc", "auto", "GC target percentage: a number, off (collect only at the memory limit), or auto: GOGC if set, else 200 with a memory limit and 100 without")
	maxProcs := fs.String("gomaxprocs", "auto", "Go's GOMAXPROCS: a number, or auto: GOMAXPROCS if set, else by load: 1 while the server uses under 0.8 of a core, else the CPUs available but at least 2 (a blocking fsync must not hold the only P)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	mem, err := planMemory(*memoryLimit, *gogc, os.Getenv, cgroupMemoryLimit(), physicalMemory())
	if err != nil {
		return err
	}
	mem.apply()
	logger.Info("memory", "settings", strings.Join(mem.why, ", "))
	procs, err := planProcs(*maxProcs, os.Getenv, runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	if procs.fixed > 0 {
		runtime.GOMAXPROCS(procs.fixed)
	}
	logger.Info("cpu", "settings", procs.why)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if procs.adaptive {
		tuner := newProcsTuner(procs.max, processCPU, func(n int) { runtime.GOMAXPROCS(n) }, logger)
		if err := tuner.start(time.Now()); err != nil {
			runtime.GOMAXPROCS(procs.max)
			logger.Warn("cpu: GOMAXPROCS stays at its most, the load cannot be read", "gomaxprocs", procs.max, "err", err)
		} else {
			tuned := make(chan struct{})
			go func() { defer close(tuned); tuner.run(ctx) }()
			defer func() { stop(); <-tuned }()
		}
	}
	cfg := server.Config{
		Listen: *listen, DataDir: c.data, SecretFile: c.secretPath(), AdminUser: *adminUser, Logger: logger,
		RateLimit: *rateLimit, RateBurst: *rateBurst, DevTokens: *devTokens,
		AdminRateLimit: *adminRateLimit, AdminRateBurst: *adminRateBurst, Webhooks: wh,
		MaxSessionsPerUser: *maxSessions, MaxSessionQueueBytes: *maxQueue, MaxConnections: *maxConns,
		DeviceTTL: *deviceTTL, WALSyncInterval: *walSync,
	}
	if *walSync == 0 {
		cfg.WALSyncInterval = -1 // the Config's 0 is the default
	}
	if *postgres != "" {
		cfg.OpenStore = func(ctx context.Context) (storage.Store, error) { return pgstore.Open(ctx, *postgres, *pgTable) }
		cfg.StorageName = "PostgreSQL (table " + *pgTable + ")"
	}
	if *natsURL != "" {
		cfg.OpenBus = func(context.Context) (bus.Bus, error) { return natsbus.OpenPrefixed(*natsURL, *clusterName) }
	}
	if *postgres != "" && *natsURL != "" {
		cfg.Cluster = &server.ClusterConfig{Name: *clusterName, NodeID: *nodeID, DSN: *postgres, Table: *pgTable}
	}
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s\n", srv.Addr())
	fmt.Fprintf(stdout, "SDK URL: %s   admin API: http://%s/v1/admin/settings\n", srv.URL(), srv.Addr())
	fmt.Fprintf(stdout, "get a token: go run ./cmd/readmarkd token --user alice --secret-file %s\n", c.secretPath())
	fmt.Fprintf(stdout, "demo chat: http://%s/demo/   admin console: http://%s/console/\n", srv.Addr(), srv.Addr())

	select {
	case <-ctx.Done():
	case err := <-srv.Done():
		return fmt.Errorf("serving: %w", err)
	}
	stop()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("readmarkd token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	user := fs.String("user", "", "user ID to mint a token for (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	secret, err := server.LoadSecret(c.secretPath())
	if err != nil {
		return err
	}
	tok, err := usersig.Gen(secret, *user, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// parse applies READMARK_<NAME> environment variables to flags not given on
// the command line.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "READMARK_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	return err
}
