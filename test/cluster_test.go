package test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/natsbus"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// needService skips when the service at rawURL is unreachable, unless
// READMARK_REQUIRE_SERVICES=1 (CI), where that is a failure.
func needService(t *testing.T, name, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("READMARK_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s at %s unreachable: %v", name, u.Host, err)
	}
	t.Skipf("%s at %s unreachable (%v); set READMARK_REQUIRE_SERVICES=1 to fail instead", name, u.Host, err)
}

// TestClusterBackends runs the read-receipt flow on PostgreSQL storage and
// the NATS bus, through a restart, exactly as on the embedded default.
func TestClusterBackends(t *testing.T) {
	dsn := envOr("READMARK_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	natsURL := envOr("READMARK_TEST_NATS", "nats://127.0.0.1:4222")
	needService(t, "PostgreSQL", dsn)
	needService(t, "NATS", natsURL)
	var suffix [6]byte
	rand.Read(suffix[:])
	table := "rmit_" + hex.EncodeToString(suffix[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP TABLE IF EXISTS "+table)
			c.Close(ctx)
		}
	})
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0",
		openStore: func(ctx context.Context) (storage.Store, error) { return pgstore.Open(ctx, dsn, table) },
		openBus:   func(context.Context) (bus.Bus, error) { return natsbus.Open(natsURL) },
	}
	ts.start()
	t.Cleanup(ts.stop)

	owner, ro := ts.dial("owner")
	ctx := ctxT(t)
	gid := must[string](t)(owner.CreateGroup(ctx, im.GroupWork, "", "", "a", "b", "c"))
	msg := send(t, owner, "on postgres", "", gid, true)
	a, ra := ts.dial("a")
	waitFor(t, "sync over NATS-backed push path", func() bool { return len(ra.messages()) == 1 })
	if err := a.SendMessageReadReceipts(ctx, ra.messages()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "receipt push over NATS", func() bool {
		r := lastReceipt(ro, msg.MsgID)
		return r != nil && r.ReadCount == 1 && r.UnreadCount == 2
	})
	ts.restart()
	owner, _ = ts.dial("owner")
	got := must[[]*im.MessageReceipt](t)(owner.GetMessageReadReceipts(ctxT(t), []*im.Message{msg}))
	if got[0].ReadCount != 1 || got[0].UnreadCount != 2 {
		t.Fatalf("after restart on PostgreSQL: %+v", got[0])
	}
	if r := ids(walkMembers(t, owner, msg, im.ReadMembersFilterRead, 10)); len(r) != 1 || r[0] != "a" {
		t.Fatalf("read list %v", r)
	}
}
