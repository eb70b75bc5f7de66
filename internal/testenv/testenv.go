// Package testenv is for tests that need the external services of the
// cluster path (PostgreSQL, NATS): where they are, and what to do when one is
// not there — skip, or fail when READMARK_REQUIRE_SERVICES=1 (CI, where the
// services must run and a skip would hide a broken backend).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
)

// PostgresDSN is READMARK_TEST_POSTGRES or the machine's local server.
func PostgresDSN() string {
	return envOr("READMARK_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// NATSURL is READMARK_TEST_NATS or the machine's local server.
func NATSURL() string { return envOr("READMARK_TEST_NATS", "nats://127.0.0.1:4222") }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var (
	mu     sync.Mutex
	probed = map[string]error{} // service name → result of its one probe
)

// NeedPostgres skips or fails t unless PostgreSQL answers at PostgresDSN.
func NeedPostgres(t testing.TB) {
	t.Helper()
	need(t, "PostgreSQL at "+PostgresDSN()+" (READMARK_TEST_POSTGRES)", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, PostgresDSN())
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		return c.Ping(ctx)
	})
}

// NeedNATS skips or fails t unless NATS answers at NATSURL.
func NeedNATS(t testing.TB) {
	t.Helper()
	need(t, "NATS at "+NATSURL()+" (READMARK_TEST_NATS)", func() error {
		nc, err := nats.Connect(NATSURL(), nats.Timeout(3*time.Second), nats.NoReconnect())
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	})
}

func need(t testing.TB, service string, probe func() error) {
	t.Helper()
	mu.Lock()
	err, done := probed[service]
	if !done {
		err = probe()
		probed[service] = err
	}
	mu.Unlock()
	if err == nil {
		return
	}
	msg := service + " unreachable: " + err.Error()
	if os.Getenv("READMARK_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg + " (READMARK_REQUIRE_SERVICES=1)")
	}
	t.Skip(msg + "; set READMARK_REQUIRE_SERVICES=1 to fail instead")
}

// TempTable returns a PostgreSQL table name no other test uses, dropped
// (with its cluster tables <name>_leases and <name>_nodes) when t ends (after the stores on it are closed: cleanups run last-in
// first-out).
func TempTable(t testing.TB) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	name := "rmtest_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, PostgresDSN())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		// With the cluster's tables named after it (package cluster).
		q := "DROP TABLE IF EXISTS " + pgx.Identifier{name}.Sanitize() + ", " +
			pgx.Identifier{name + "_leases"}.Sanitize() + ", " + pgx.Identifier{name + "_nodes"}.Sanitize()
		if _, err := c.Exec(ctx, q); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}
