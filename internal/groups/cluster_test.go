package groups

import (
	"bytes"
	"context"
	"iter"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/receipts"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/internal/testenv"
)

type nopPusher struct{}

func (nopPusher) Push(string, *pb.ServerFrame)               {}
func (nopPusher) PushEach(iter.Seq[string], *pb.ServerFrame) {}

func openStore(t testing.TB) storage.Store {
	t.Helper()
	st, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newNode is a groups service with its own Committer on a shared store, as
// one cluster node sees it.
func newNode(t testing.TB, st storage.Store) *Service {
	t.Helper()
	c := storage.NewCommitter(st, 0)
	t.Cleanup(c.Close)
	s, err := New(context.Background(), st, c, nopPusher{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func groupIDs(gs []UserGroup) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.GroupID)
	}
	return out
}

// TestUserIndex: the stored user → groups index follows every membership
// change, with the ordinal and joined seq of the membership.
func TestUserIndex(t *testing.T) {
	ctx := context.Background()
	s := newNode(t, openStore(t))
	if _, err := s.Create(ctx, "owner", pb.GroupType_GROUP_TYPE_PUBLIC, "g1", "", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "owner", pb.GroupType_GROUP_TYPE_PUBLIC, "g2", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Sequence(ctx, "g2", "owner", func(uint64, uint32, receipts.RosterSnapshot) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Join(ctx, "alice", "g2"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"created and joined", func() error { return nil }, []string{"g1", "g2"}},
		{"quit", func() error { return s.Quit(ctx, "alice", "g1") }, []string{"g2"}},
		{"kicked", func() error { return s.Kick(ctx, "owner", "g2", []string{"alice"}, "") }, nil},
		{"rejoined", func() error { return s.Join(ctx, "alice", "g1") }, []string{"g1"}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.UserGroups(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(groupIDs(got), st.want) {
			t.Fatalf("%s: alice's groups %v, want %v", st.name, groupIDs(got), st.want)
		}
		for _, g := range got {
			m, ok, err := s.Member(ctx, g.GroupID, "alice")
			if err != nil || !ok || m.Ordinal != g.Ordinal || m.JoinedSeq != g.JoinedSeq {
				t.Fatalf("%s: index %+v, membership %+v %v %v", st.name, g, m, ok, err)
			}
		}
	}
}

// TestUserIndexMigration: a data directory written before the index
// existed (membership records only) gets it built once, at start.
func TestUserIndexMigration(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	old := newNode(t, st)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := old.Create(ctx, "owner", pb.GroupType_GROUP_TYPE_PUBLIC, id, "", []string{"alice", "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Quit(ctx, "bob", "b"); err != nil {
		t.Fatal(err)
	}
	dropUserIndex(t, st, old)

	s := newNode(t, st)
	for user, want := range map[string][]string{"alice": {"a", "b", "c"}, "bob": {"a", "c"}, "owner": {"a", "b", "c"}} {
		got, err := s.UserGroups(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(groupIDs(got), want) {
			t.Errorf("%s: groups %v after migration, want %v", user, groupIDs(got), want)
		}
		for _, g := range got {
			if m, ok, _ := s.Member(ctx, g.GroupID, user); !ok || m.Ordinal != g.Ordinal {
				t.Errorf("%s in %s: index ordinal %d, membership %+v", user, g.GroupID, g.Ordinal, m)
			}
		}
	}
	if _, err := st.Get(ctx, userIndexMarker); err != nil {
		t.Fatalf("marker: %v", err)
	}
}

// dropUserIndex takes st back to the layout before the user index: no
// index, no marker.
func dropUserIndex(t *testing.T, st storage.Store, s *Service) {
	t.Helper()
	ctx := context.Background()
	b := &storage.Batch{}
	p := []byte("ug/")
	if err := st.Scan(ctx, p, storage.PrefixEnd(p), false, func(k, _ []byte) bool {
		b.Delete(append([]byte(nil), k...))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	b.Delete(userIndexMarker)
	if err := st.Apply(ctx, b, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.UserGroups(ctx, "bob"); len(got) != 0 {
		t.Fatalf("index not cleared: %v", got)
	}
}

// TestUserIndexBuildFenced: a node building the index from an old database
// that reads a membership, then stalls while another node finishes the
// build, takes the group's partition and records a quit, must not write
// the membership's entry back (fenced by the lease epochs it read first).
func TestUserIndexBuildFenced(t *testing.T) {
	testenv.NeedPostgres(t)
	testenv.NeedNATS(t)
	ctx := t.Context()
	table := testenv.TempTable(t)
	st, err := pgstore.Open(ctx, testenv.PostgresDSN(), table)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nc, err := nats.Connect(testenv.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	node, err := cluster.Open(ctx, cluster.Config{
		DSN: testenv.PostgresDSN(), Table: table, NodeID: "builder", Cluster: "t" + table, Conn: nc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })

	old := newNode(t, st)
	for _, id := range []string{"a", "b"} {
		if _, err := old.Create(ctx, "owner", pb.GroupType_GROUP_TYPE_PUBLIC, id, "", []string{"bob"}); err != nil {
			t.Fatal(err)
		}
	}
	dropUserIndex(t, st, old)

	// The other node, between the builder's read of gm/ and its write: it
	// builds the index (the marker), takes b's partition, and bob quits b.
	other := func() {
		if err := migrateUserIndex(ctx, st, node.Epochs); err != nil {
			t.Fatal(err)
		}
		part := int32(cluster.Of(conv.Group("b")))
		conn, err := pgx.Connect(ctx, testenv.PostgresDSN())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "UPDATE "+pgstore.LeasesTable(table)+
			" SET owner = 'other', epoch = epoch + 1, expires = now() + interval '1 minute' WHERE part = $1", part); err != nil {
			t.Fatal(err)
		}
		if err := old.Quit(ctx, "bob", "b"); err != nil {
			t.Fatal(err)
		}
	}
	c := storage.NewCommitter(st, 0)
	t.Cleanup(c.Close)
	s, err := New(ctx, &beforeIndexWrite{Store: st, fn: other}, c, nopPusher{}, node.Epochs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.UserGroups(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(groupIDs(got), []string{"a"}) {
		t.Fatalf("bob's groups %v after the build, want [a]: a stale build wrote b back", groupIDs(got))
	}
}

// beforeIndexWrite runs fn once, before the first batch that writes the
// user index is applied.
type beforeIndexWrite struct {
	storage.Store
	once sync.Once
	fn   func()
}

func (s *beforeIndexWrite) Apply(ctx context.Context, b *storage.Batch, sync bool) error {
	if b.Len() > 0 && bytes.HasPrefix(b.Ops[0].Key, []byte("ug/")) {
		s.once.Do(s.fn)
	}
	return s.Store.Apply(ctx, b, sync)
}

// TestDropPartitionReloads: a node that stops owning a partition and gets
// it back serves what storage says, not what it remembered. Two services on
// one store play the two nodes.
func TestDropPartitionReloads(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	a, b := newNode(t, st), newNode(t, st)
	if _, err := a.Create(ctx, "owner", pb.GroupType_GROUP_TYPE_PUBLIC, "g", "", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	// b loads the group lazily.
	if _, ok, err := b.Member(ctx, "g", "alice"); err != nil || !ok {
		t.Fatalf("b: alice %v %v", ok, err)
	}
	// The partition moves to a, which changes the group and sends.
	if err := a.Join(ctx, "bob", "g"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Member(ctx, "g", "bob"); ok {
		t.Fatal("b saw bob without reloading: the test does not test anything")
	}
	b.DropPartition(cluster.Of(conv.Group("g")))
	m, ok, err := b.Member(ctx, "g", "bob")
	if err != nil || !ok {
		t.Fatalf("b after drop: bob %v %v", ok, err)
	}
	var seq uint64
	var wm uint32
	if err := b.Sequence(ctx, "g", "alice", func(s uint64, w uint32, _ receipts.RosterSnapshot) error {
		seq, wm = s, w
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seq != 1 || wm != 3 || m.Ordinal != 2 {
		t.Fatalf("after reload: seq %d watermark %d bob's ordinal %d; want 1, 3, 2", seq, wm, m.Ordinal)
	}
	// A group created on another node is found (not cached as missing).
	if _, err := b.Type(ctx, "late"); !apierr.Is(err, pb.CodeNotFound) {
		t.Fatalf("missing group: %v", err)
	}
	if _, err := a.Create(ctx, "owner", pb.GroupType_GROUP_TYPE_WORK, "late", "", nil); err != nil {
		t.Fatal(err)
	}
	if typ, err := b.Type(ctx, "late"); err != nil || typ != pb.GroupType_GROUP_TYPE_WORK {
		t.Fatalf("late group on b: %v %v", typ, err)
	}
	if _, err := b.Create(ctx, "x", pb.GroupType_GROUP_TYPE_WORK, "g", "", nil); !apierr.Is(err, pb.CodeAlreadyExists) {
		t.Fatalf("creating an existing group: %v", err)
	}
}
