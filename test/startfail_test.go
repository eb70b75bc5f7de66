package test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/natsbus"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
)

// TestStartFailsCleanly: a server that cannot open its storage or its bus
// returns an error saying which, and lets go of what it had opened; it
// does not crash on the half-opened backend (a failed Open's nil *Store
// held in an interface).
func TestStartFailsCleanly(t *testing.T) {
	running := startServer(t)
	tests := []struct {
		name  string
		tweak func(*server.Config)
		want  string
	}{
		{"data directory in use", func(c *server.Config) { c.DataDir = running.dir }, "opening storage"},
		{"PostgreSQL unreachable", func(c *server.Config) {
			c.OpenStore = func(ctx context.Context) (storage.Store, error) {
				return pgstore.Open(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=2", "t")
			}
		}, "opening storage"},
		{"NATS unreachable", func(c *server.Config) {
			c.OpenBus = func(context.Context) (bus.Bus, error) { return natsbus.Open("nats://127.0.0.1:1") }
		}, "opening bus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config{
				Listen: "127.0.0.1:0", DataDir: t.TempDir(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			tt.tweak(&cfg)
			srv, err := server.Start(context.Background(), cfg)
			if err == nil {
				srv.Shutdown(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to say %q", err, tt.want)
			}
			if tt.tweak != nil && cfg.OpenStore == nil && cfg.DataDir != running.dir {
				// The embedded store it had opened is closed: the directory
				// opens again.
				ts := &testServer{t: t, dir: cfg.DataDir, addr: "127.0.0.1:0"}
				ts.start()
				ts.stop()
			}
		})
	}
}
