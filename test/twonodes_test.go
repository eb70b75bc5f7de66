package test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/bus"
	"github.com/readmark/readmark/internal/bus/natsbus"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/internal/testenv"
)

// clusterNode returns a (not started) in-process cluster node on the
// shared PostgreSQL table and NATS cluster name.
func clusterNode(t *testing.T, id, table, name, secret string) *testServer {
	dsn, natsURL := testenv.PostgresDSN(), testenv.NATSURL()
	return &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0",
		openStore: func(ctx context.Context) (storage.Store, error) { return pgstore.Open(ctx, dsn, table) },
		openBus:   func(context.Context) (bus.Bus, error) { return natsbus.OpenPrefixed(natsURL, name) },
		tweak: func(c *server.Config) {
			c.SecretFile = secret
			c.Cluster = &server.ClusterConfig{Name: name, NodeID: id, DSN: dsn, Table: table}
		},
	}
}

// partitionsOf returns the partitions each node owns, from the leases.
func partitionsOf(t *testing.T, table string) map[string][]uint32 {
	t.Helper()
	ctx := ctxT(t)
	c, err := pgx.Connect(ctx, testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT part, owner FROM "+pgx.Identifier{table + "_leases"}.Sanitize()+" WHERE expires > now() ORDER BY part")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint32{}
	var p int32
	var owner string
	if _, err := pgx.ForEachRow(rows, []any{&p, &owner}, func() error {
		out[owner] = append(out[owner], uint32(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func ownedBy(t *testing.T, table, node string, n int) func() bool {
	return func() bool { return len(partitionsOf(t, table)[node]) >= n }
}

// TestTwoNodes: two nodes on one PostgreSQL and one NATS. Users of one group
// and one user's two devices sit on different nodes; requests are forwarded
// to each conversation's owner and pushes cross nodes; counts are exact in
// push and pull. Conversations whose partitions moved from one node to the
// other and back continue from storage (no seq handed out twice).
func TestTwoNodes(t *testing.T) {
	testenv.NeedPostgres(t)
	testenv.NeedNATS(t)
	table := testenv.TempTable(t)
	name := "rmt" + table[len("rmtest_"):]
	secret := filepath.Join(t.TempDir(), "secret")
	a := clusterNode(t, "node-a", table, name, secret)
	a.start()
	t.Cleanup(a.stop)
	waitFor(t, "node a owns every partition", ownedBy(t, table, "node-a", cluster.Partitions))

	// One group per partition, each with a message sent on node a (so
	// node a has them all loaded).
	owner, _ := a.dial("owner")
	ctx := ctxT(t)
	byPart := map[uint32]string{}
	first := map[string]*im.Message{}
	for i := 0; len(byPart) < cluster.Partitions; i++ {
		gid := fmt.Sprintf("g%d", i)
		p := cluster.Of(conv.Group(gid))
		if byPart[p] != "" {
			continue
		}
		byPart[p] = gid
		must[string](t)(owner.CreateGroup(ctx, im.GroupWork, gid, "", "ra", "rb"))
		first[gid] = send(t, owner, "first", "", gid, true)
	}

	b := clusterNode(t, "node-b", table, name, secret)
	b.start()
	t.Cleanup(b.stop)
	waitFor(t, "node b takes partitions", ownedBy(t, table, "node-b", 2))
	parts := partitionsOf(t, table)
	moved, stayed := byPart[parts["node-b"][0]], byPart[parts["node-a"][0]]

	// ra on node a with a second device on node b; rb on node b; the
	// owner's new client may land on either.
	clientOn := func(ts *testServer, user, device string) (*im.Client, *recorder) {
		return ts.dial(user, im.WithDeviceID(device))
	}
	ra, rra := clientOn(a, "ra", "phone")
	_, rra2 := clientOn(b, "ra", "laptop")
	rb, rrb := clientOn(b, "rb", "phone")
	owner.Close()
	rec := newRecorder()
	owner2, err := im.Dial(ctx, b.url()+","+a.url(), "owner", b.token("owner"), im.WithListener(rec),
		im.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner2.Close() })

	for _, gid := range []string{moved, stayed} {
		m := send(t, owner2, "second", "", gid, true)
		if m.Seq != 2 {
			t.Fatalf("%s: second message has seq %d, want 2", gid, m.Seq)
		}
		for _, r := range []*recorder{rra, rra2, rrb} {
			waitForMsg(t, "the second message on every device", r, func() bool {
				return slices.ContainsFunc(r.messages(), func(x *im.Message) bool { return x.MsgID == m.MsgID })
			})
		}
		if err := ra.SendMessageReadReceipts(ctx, []*im.Message{m}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "self receipt on ra's other device", func() bool {
			return slices.ContainsFunc(rra2.selfReceipts(), func(x *im.Message) bool { return x.MsgID == m.MsgID })
		})
		waitFor(t, "receipt push: 1 read, 1 unread", func() bool {
			r := lastReceipt(rec, m.MsgID)
			return r != nil && r.ReadCount == 1 && r.UnreadCount == 1
		})
		if err := rb.SendMessageReadReceipts(ctx, []*im.Message{m}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "receipt push: 2 read", func() bool {
			r := lastReceipt(rec, m.MsgID)
			return r != nil && r.ReadCount == 2 && r.UnreadCount == 0
		})
		first[gid+"/2"] = m
	}
	// One pull naming messages of partitions on both nodes.
	pull := []*im.Message{first[moved], first[moved+"/2"], first[stayed], first[stayed+"/2"]}
	got := must[[]*im.MessageReceipt](t)(owner2.GetMessageReadReceipts(ctx, pull))
	for i, want := range [][2]uint64{{0, 2}, {2, 0}, {0, 2}, {2, 0}} {
		if got[i].MsgID != pull[i].MsgID || got[i].ReadCount != want[0] || got[i].UnreadCount != want[1] {
			t.Fatalf("pull %d: %+v, want read %d unread %d", i, got[i], want[0], want[1])
		}
	}
	if r := ids(walkMembers(t, owner2, first[moved+"/2"], im.ReadMembersFilterRead, 1)); !slices.Equal(r, []string{"ra", "rb"}) {
		t.Fatalf("read list of the moved group: %v", r)
	}

	// Shared caches follow a change made on the other node: the settings,
	// and a profile node b has cached (listing readers of the moved group,
	// owned by node b, names ra).
	if r := walkMembers(t, owner2, first[moved+"/2"], im.ReadMembersFilterRead, 10); r[0].NickName != "" {
		t.Fatalf("ra has a nickname already: %+v", r[0])
	}
	if err := ra.SetSelfInfo(ctx, "Ann", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ra's new nickname in a list served by node b", func() bool {
		return walkMembers(t, owner2, first[moved+"/2"], im.ReadMembersFilterRead, 10)[0].NickName == "Ann"
	})
	if code, body := a.adminDo(http.MethodPut, "/v1/admin/settings", `{"read_receipt_group_types":["Public"]}`, ""); code != http.StatusOK {
		t.Fatalf("PUT settings on node a: %d %s", code, body)
	}
	waitFor(t, "the settings on node b", func() bool {
		code, body := b.adminDo(http.MethodGet, "/v1/admin/settings", "", "")
		return code == http.StatusOK && strings.Contains(body, `["Public"]`)
	})

	// Node b leaves: its partitions go back to node a, which had the moved
	// group loaded before and must now continue from storage.
	b.stop()
	waitFor(t, "node a owns every partition again", ownedBy(t, table, "node-a", cluster.Partitions))
	m := send(t, owner2, "third", "", moved, false)
	if m.Seq != 3 {
		t.Fatalf("after the partition came back: seq %d, want 3", m.Seq)
	}
	waitForMsg(t, "the third message", rra, func() bool {
		return slices.ContainsFunc(rra.messages(), func(x *im.Message) bool { return x.MsgID == m.MsgID })
	})
	got = must[[]*im.MessageReceipt](t)(owner2.GetMessageReadReceipts(ctx, []*im.Message{first[moved+"/2"]}))
	if got[0].ReadCount != 2 {
		t.Fatalf("read state after the move back: %+v", got[0])
	}
}
