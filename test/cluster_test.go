package test

import (
	"context"
	"testing"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/natsbus"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/internal/testenv"
)

// TestClusterBackends runs the read-receipt flow on PostgreSQL storage and
// the NATS bus, through a restart, exactly as on the embedded default.
func TestClusterBackends(t *testing.T) {
	testenv.NeedPostgres(t)
	testenv.NeedNATS(t)
	dsn, natsURL, table := testenv.PostgresDSN(), testenv.NATSURL(), testenv.TempTable(t)
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
