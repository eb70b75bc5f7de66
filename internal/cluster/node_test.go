package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster/clusterpb"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLocalOwnsEverything(t *testing.T) {
	l := Local()
	for p := range uint32(Partitions) {
		release, ok := l.Enter(p)
		if !ok {
			t.Fatalf("Local().Enter(%d) refused", p)
		}
		release()
	}
}

// testCluster is nodes of one cluster on a fresh table, with short leases.
type testCluster struct {
	t     testing.TB
	table string
	name  string
	nc    *nats.Conn
	ttl   time.Duration
}

func newTestCluster(t testing.TB) *testCluster {
	testenv.NeedPostgres(t)
	testenv.NeedNATS(t)
	nc, err := nats.Connect(testenv.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	table := testenv.TempTable(t)
	return &testCluster{t: t, table: table, name: "t" + table, nc: nc, ttl: time.Second}
}

// echo answers with the frame it got, prefixed by the serving node's ID.
func echo(id string) func(context.Context, *clusterpb.Forward) *clusterpb.ForwardReply {
	return func(_ context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply {
		return &clusterpb.ForwardReply{Frame: append([]byte(id+":"), req.Frame...)}
	}
}

func (c *testCluster) node(id string, onRelease func(p uint32)) *Node {
	c.t.Helper()
	n, err := Open(c.t.Context(), Config{
		DSN: testenv.PostgresDSN(), Table: c.table, NodeID: id, Cluster: c.name, Conn: c.nc,
		LeaseTTL: c.ttl, Renew: c.ttl / 8,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	n.Serve(echo(id))
	if onRelease != nil {
		n.OnRelease(onRelease)
	}
	if err := n.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { n.Close() })
	return n
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// partitioned reports whether the nodes together own every partition
// exactly once, each its fair share.
func partitioned(nodes ...*Node) bool {
	seen := map[uint32]bool{}
	share := (Partitions + len(nodes) - 1) / len(nodes)
	for _, n := range nodes {
		owned := n.Owned()
		if len(owned) > share {
			return false
		}
		for _, p := range owned {
			if seen[p] {
				return false
			}
			seen[p] = true
		}
	}
	return len(seen) == Partitions
}

func TestNodesShareAndDrain(t *testing.T) {
	c := newTestCluster(t)
	a := c.node("a", nil)
	waitFor(t, "a to own everything", func() bool { return partitioned(a) })
	var released sync.Map
	b := c.node("b", func(p uint32) { released.Store(p, true) })
	waitFor(t, "a and b to share", func() bool { return partitioned(a, b) })
	// Drain b: a takes everything back; b ran OnRelease for all it had.
	had := b.Owned()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := b.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if len(b.Owned()) != 0 {
		t.Fatalf("b owns %v after Drain", b.Owned())
	}
	for _, p := range had {
		if _, ok := released.Load(p); !ok {
			t.Errorf("OnRelease not run for partition %d", p)
		}
	}
	waitFor(t, "a to own everything again", func() bool { return partitioned(a) })
}

// TestForward: requests reach the partition's owner wherever it is, also
// while partitions move; a node answers "not owner" for what it does not own.
func TestForward(t *testing.T) {
	c := newTestCluster(t)
	a := c.node("a", nil)
	waitFor(t, "a to own everything", func() bool { return partitioned(a) })
	b := c.node("b", nil)
	waitFor(t, "a and b to share", func() bool { return partitioned(a, b) })
	for p := range uint32(Partitions) {
		owner := "a"
		if slices.Contains(b.Owned(), p) {
			owner = "b"
		}
		for _, from := range []*Node{a, b} {
			reply, err := from.Forward(t.Context(), p, &clusterpb.Forward{Frame: []byte("x")}, false)
			if err != nil {
				t.Fatalf("forward p%d from %s: %v", p, from.ID(), err)
			}
			if got, want := string(reply.Frame), owner+":x"; got != want {
				t.Errorf("forward p%d from %s answered by %q, want %q", p, from.ID(), got, want)
			}
		}
	}
	// The receiver refuses a partition it does not own.
	p := a.Owned()[0]
	data, _ := proto.Marshal(&clusterpb.Forward{Partition: p, Frame: []byte("x")})
	m, err := c.nc.Request(b.subject, data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply clusterpb.ForwardReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil || !reply.NotOwner {
		t.Fatalf("b answered %v (%v) for a's partition, want not_owner", &reply, err)
	}

	// While b drains, forwards from a keep succeeding (retrying "not owner").
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 1)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := a.Forward(t.Context(), uint32(i%Partitions), &clusterpb.Forward{}, true); err != nil {
				errs <- err
				return
			}
		}
	})
	if err := b.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to own everything again", func() bool { return partitioned(a) })
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("forward during the move: %v", err)
	default:
	}
}

// TestForwardOwnerChanges: a forward waits for a slow owner, but gives up
// once the partition changes owner while it waits: a request that may have
// run fails with Unavailable (not idempotent), without waiting for its
// deadline.
func TestForwardOwnerChanges(t *testing.T) {
	c := newTestCluster(t)
	a := c.node("a", nil)
	waitFor(t, "a to own everything", func() bool { return partitioned(a) })
	b := c.node("b", nil)
	waitFor(t, "a and b to share", func() bool { return partitioned(a, b) })
	running, unblock := make(chan struct{}), make(chan struct{})
	a.Serve(func(ctx context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply {
		close(running)
		<-unblock
		return &clusterpb.ForwardReply{}
	})
	defer close(unblock)
	p := a.Owned()[0]
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Forward(ctx, p, &clusterpb.Forward{}, false)
		done <- err
	}()
	<-running
	select {
	case err := <-done:
		t.Fatalf("Forward returned while the owner works: %v", err)
	case <-time.After(3 * c.ttl): // longer than a few route refreshes
	}
	conn, err := pgx.Connect(t.Context(), testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "UPDATE "+pgstore.LeasesTable(c.table)+
		" SET owner = 'thief', epoch = epoch + 1 WHERE part = $1", int32(p)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Code != pb.CodeUnavailable {
			t.Fatalf("Forward after the owner changed: %v, want Unavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("Forward still waiting for the old owner at its deadline")
	}
}

// TestForwardNoOwner: with nobody owning the partition, Forward fails with
// Unavailable when its context ends.
func TestForwardNoOwner(t *testing.T) {
	c := newTestCluster(t)
	n, err := Open(t.Context(), Config{DSN: testenv.PostgresDSN(), Table: c.table, NodeID: "lonely", Cluster: c.name, Conn: c.nc})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = n.Forward(ctx, 3, &clusterpb.Forward{}, true)
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Code != pb.CodeUnavailable {
		t.Fatalf("Forward without owner: %v, want Unavailable", err)
	}
}

// TestTakeoverAndFencing: a node that stops renewing (closed without
// draining) loses its partitions to the other within the lease TTL, and a
// batch fenced with its old epochs is refused by the store.
func TestTakeoverAndFencing(t *testing.T) {
	c := newTestCluster(t)
	store, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), c.table)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a := c.node("a", nil)
	waitFor(t, "a to own everything", func() bool { return partitioned(a) })
	old, err := a.Fences([]uint32{5})
	if err != nil {
		t.Fatal(err)
	}
	write := func(fences []storage.Fence, key string) error {
		b := &storage.Batch{Fences: fences}
		b.Set([]byte(key), []byte("v"))
		return store.Apply(t.Context(), b, true)
	}
	if err := write(old, "before"); err != nil {
		t.Fatalf("write with a's current fence: %v", err)
	}
	b := c.node("b", nil)
	waitFor(t, "a and b to share", func() bool { return partitioned(a, b) })
	stopLoop(a)
	start := time.Now()
	waitFor(t, "b to take everything", func() bool { return partitioned(b) })
	t.Logf("takeover after the last renewal: %v (TTL %v)", time.Since(start), c.ttl)
	if a.leaseValid() {
		t.Error("a's lease still valid locally after the TTL")
	}
	if _, ok := a.Enter(5); ok {
		t.Error("a admits after its lease deadline")
	}
	if _, err := a.Fences([]uint32{5}); !errors.Is(err, storage.ErrFenced) {
		t.Errorf("a.Fences after its deadline: %v, want ErrFenced", err)
	}
	if err := write(old, "after"); !errors.Is(err, storage.ErrFenced) {
		t.Fatalf("write with a's old fence after takeover: %v, want ErrFenced", err)
	}
	cur, err := b.Fences([]uint32{5})
	if err != nil {
		t.Fatal(err)
	}
	if cur[0].Epoch <= old[0].Epoch {
		t.Errorf("epoch after takeover %d, before %d", cur[0].Epoch, old[0].Epoch)
	}
	if err := write(cur, "new owner"); err != nil {
		t.Fatalf("write with b's fence: %v", err)
	}
}

// stopLoop simulates a crash of n: its loop stops, its leases stay until
// they expire.
func stopLoop(n *Node) {
	close(n.stop)
	<-n.done
	n.mu.Lock()
	n.started = false // Close must not stop the loop again
	n.mu.Unlock()
}

// Lease row locks (see renew): a fenced batch's lock lets renewals pass and
// makes every change of epoch wait. Each case holds a real batch's
// transaction open and watches with pg_blocking_pids who waits for it.
func TestLeaseLocks(t *testing.T) {
	const part = 9
	// setup starts node a owning everything, with leases long enough that
	// nothing expires unasked.
	setup := func(t *testing.T) (*testCluster, *pgstore.Store, *Node, []storage.Fence) {
		c := newTestCluster(t)
		c.ttl = 10 * time.Second
		store, err := pgstore.Open(t.Context(), testenv.PostgresDSN(), c.table)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		a := c.node("a", nil)
		waitFor(t, "a to own everything", func() bool { return partitioned(a) })
		fences, err := a.Fences([]uint32{part})
		if err != nil {
			t.Fatal(err)
		}
		return c, store, a, fences
	}
	write := func(t *testing.T, store *pgstore.Store, fences []storage.Fence) error {
		b := &storage.Batch{Fences: fences}
		b.Set([]byte("late"), []byte("v"))
		return store.Apply(t.Context(), b, true)
	}

	t.Run("a renewal does not wait for a batch", func(t *testing.T) {
		c, store, a, fences := setup(t)
		db := connect(t)
		_, finish := openBatch(t, db, store, c.table, fences)
		before := expires(t, db, c.table, part)
		a.renew()
		if after := expires(t, db, c.table, part); !after.After(before) {
			t.Errorf("lease not renewed while a batch held its lock (expires %v, before %v)", after, before)
		}
		if err := finish(); err != nil {
			t.Fatalf("batch: %v", err)
		}
	})

	t.Run("a takeover waits for a batch", func(t *testing.T) {
		c, store, a, fences := setup(t)
		db := connect(t)
		stopLoop(a)
		if _, err := db.Exec(t.Context(), "UPDATE "+pgstore.LeasesTable(c.table)+
			" SET expires = now() - interval '1 second' WHERE part = $1", part); err != nil {
			t.Fatal(err)
		}
		pid, finish := openBatch(t, db, store, c.table, fences)
		b := c.node("b", nil) // takes the expired partition
		waitFor(t, "b's takeover to wait for the batch (or to end)", func() bool {
			return waitsFor(t, db, pid) || slices.Contains(b.Owned(), part)
		})
		if slices.Contains(b.Owned(), part) {
			t.Fatal("b took the partition while a batch of the old epoch held its lock")
		}
		if err := finish(); err != nil {
			t.Fatalf("batch before the takeover: %v", err)
		}
		waitFor(t, "b to take the partition", func() bool { return slices.Contains(b.Owned(), part) })
		if err := write(t, store, fences); !errors.Is(err, storage.ErrFenced) {
			t.Fatalf("batch of the old epoch after the takeover: %v, want ErrFenced", err)
		}
		// a finds out at its next renewal.
		a.renew()
		if _, ok := a.Enter(part); ok {
			t.Error("a admits the partition after losing it")
		}
	})

	t.Run("a release waits for a batch", func(t *testing.T) {
		c, store, a, fences := setup(t)
		db := connect(t)
		pid, finish := openBatch(t, db, store, c.table, fences)
		released := make(chan struct{})
		go func() {
			defer close(released)
			a.handOff(part)
		}()
		isReleased := func() bool {
			select {
			case <-released:
				return true
			default:
				return false
			}
		}
		waitFor(t, "the release to wait for the batch (or to end)", func() bool {
			return waitsFor(t, db, pid) || isReleased()
		})
		if isReleased() {
			t.Fatal("the release did not wait for a batch of its epoch")
		}
		if err := finish(); err != nil {
			t.Fatalf("batch before the release: %v", err)
		}
		<-released
		if err := write(t, store, fences); !errors.Is(err, storage.ErrFenced) {
			t.Fatalf("batch of the old epoch after the release: %v, want ErrFenced", err)
		}
	})
}

// connect is a connection for the test's own statements.
func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// openBatch applies a batch with fences through store and keeps its
// transaction open after its fence statement ran (it holds the lease rows'
// locks): a transaction of its own holds the row the batch writes, so the
// batch waits for it. It returns the batch's backend and finish, which lets
// the batch commit and returns Apply's result.
func openBatch(t *testing.T, db *pgx.Conn, store *pgstore.Store, table string, fences []storage.Fence) (pid uint32, finish func() error) {
	t.Helper()
	key := []byte("held")
	b := &storage.Batch{}
	b.Set(key, []byte("0"))
	if err := store.Apply(t.Context(), b, true); err != nil {
		t.Fatal(err)
	}
	holder := connect(t)
	tx, err := holder.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "SELECT 1 FROM "+pgx.Identifier{table}.Sanitize()+" WHERE k = $1 FOR UPDATE", key); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		b := &storage.Batch{Fences: fences}
		b.Set(key, []byte("1"))
		done <- store.Apply(context.Background(), b, true)
	}()
	waitFor(t, "the batch to wait for the held row", func() bool {
		err := db.QueryRow(t.Context(), "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
			holder.PgConn().PID()).Scan(&pid)
		return err == nil
	})
	return pid, func() error {
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		return <-done
	}
}

// waitsFor reports whether a backend waits for a lock pid holds.
func waitsFor(t *testing.T, db *pgx.Conn, pid uint32) bool {
	t.Helper()
	var waits bool
	if err := db.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))",
		pid).Scan(&waits); err != nil {
		t.Fatal(err)
	}
	return waits
}

// expires is the expiry of part's lease.
func expires(t *testing.T, db *pgx.Conn, table string, part int32) time.Time {
	t.Helper()
	var e time.Time
	if err := db.QueryRow(t.Context(), "SELECT expires FROM "+pgstore.LeasesTable(table)+" WHERE part = $1", part).Scan(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

func ExampleNode() {
	fmt.Println(forwardSubject("readmark", "host:7700"))
	// Output: readmark.fwd.686f73743a37373030
}

// BenchmarkForward is what forwarding adds to a request: from one node to
// the owner of the partition over NATS request-reply, to a handler that only
// echoes (envelope encoding, route lookup, the round trip, the owner's
// gate), beside the same request served locally, as package dispatch does
// on the owner (the gate, the handler, no round trip). serial: the latency
// one request adds; parallel: one node serving many sessions at once.
//
// cpu-µs/op is this process's CPU time (user + system, getrusage) over the
// timed loop divided by its requests. Both nodes run in this process, so it
// is the sender's and the owner's CPU together, plus the nodes' lease
// renewals in the background; the NATS server's (another process) is not
// in it.
func BenchmarkForward(b *testing.B) {
	c := newTestCluster(b)
	c.ttl = 5 * time.Second // no lease lapses on a loaded machine mid-run
	a := c.node("a", nil)
	waitFor(b, "a to own everything", func() bool { return partitioned(a) })
	other := c.node("b", nil)
	waitFor(b, "a and b to share", func() bool { return partitioned(a, other) })
	p := a.Owned()[0]
	req := &clusterpb.Forward{UserId: "bench", Frame: make([]byte, 100)}
	handle := echo("a")
	ways := []struct {
		name string
		do   func(r *clusterpb.Forward) error
	}{
		{"forwarded", func(r *clusterpb.Forward) error {
			_, err := other.Forward(context.Background(), p, r, true)
			return err
		}},
		{"local", func(r *clusterpb.Forward) error {
			release, ok := a.Enter(p)
			if !ok {
				return fmt.Errorf("the owner refused partition %d", p)
			}
			handle(context.Background(), r)
			release()
			return nil
		}},
	}
	for _, w := range ways {
		b.Run(w.name+"/serial", func(b *testing.B) {
			cpu := cpuTime(b)
			for b.Loop() {
				if err := w.do(req); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
		b.Run(w.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(16)
			cpu := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				r := proto.Clone(req).(*clusterpb.Forward)
				for pb.Next() {
					if err := w.do(r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU(b, cpu)
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time used since start per operation.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}
