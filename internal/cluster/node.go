package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/readmark/readmark/internal/cluster/clusterpb"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pgstore"
	"github.com/readmark/readmark/internal/workers"
)

// Config is what a Node needs.
type Config struct {
	// DSN of the PostgreSQL database holding the store; Table is the store's
	// table (pgstore): the leases and nodes tables are named after it
	// (<table>_leases, <table>_nodes).
	DSN   string
	Table string
	// NodeID identifies the node, stable across restarts (a restarted node
	// re-takes at once the partitions whose lease still names it).
	NodeID string
	// Cluster prefixes every NATS subject of the node (as natsbus does).
	Cluster string
	// Conn is the NATS connection requests are forwarded over; the Node
	// does not close it.
	Conn *nats.Conn
	// Flush waits until every write submitted so far is durable (the
	// Committer): a handoff runs it before releasing the lease.
	Flush  func(ctx context.Context) error
	Logger *slog.Logger
	// LeaseTTL (0 = 5 s) and Renew (0 = 1 s, the heartbeat and routing
	// refresh period too).
	LeaseTTL time.Duration
	Renew    time.Duration
}

// Node is this process's membership of a cluster: it implements Ownership
// with partition leases in PostgreSQL and request forwarding over NATS.
//
// Ownership. Lease rows are pre-created for every partition. The node's
// loop (one goroutine, started by Start, ended by Close) every Renew:
// heartbeats its nodes row, renews all its leases in one statement, reads the
// routing table (partition → owner → NATS subject), then moves toward its
// fair share ceil(Partitions / live nodes): below it, it takes free or
// expired partitions; above it, it hands partitions back one at a time
// (stop admitting, wait for admitted operations, run the OnRelease
// callbacks, Flush, then release the lease), on a goroutine of its own so
// that renewals never wait for a slow operation. A lease is valid locally until
// a deadline measured on the monotonic clock from before the renew request
// was sent: past it, Enter and Fences refuse at once (self-fencing), even
// if the loop is stuck, and every partition is dropped. Writes are fenced in
// PostgreSQL by epoch (see storage.Batch), so a node that does not know yet
// that it lost a lease cannot write over the new owner.
//
// Goroutines: the loop; one handoff at a time and the release of lost
// partitions (bg); the workers serving forwarded requests (work, counted
// in serving while they do). Close ends and waits for all of them.
//
// Lock order: Node.mu before part.mu; refreshMu before awaitMu. None is
// held across I/O.
type Node struct {
	cfg     Config
	pool    *pgxpool.Pool
	leases  string // quoted table names
	nodes   string
	subject string // this node's forwarding subject
	start   time.Time
	m       *Metrics

	// deadline is the local lease deadline, in nanoseconds since start
	// (monotonic); 0 = no valid lease.
	deadline atomic.Int64
	parts    [Partitions]part

	mu        sync.Mutex
	onRelease []func(p uint32)
	handler   func(ctx context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply
	sub       *nats.Subscription

	routes    atomic.Pointer[[Partitions]route]
	refreshMu sync.Mutex // one routing refresh at a time
	refreshed time.Time  // under refreshMu

	awaitMu  sync.Mutex
	awaiting map[*awaited]struct{} // forwarded requests waiting for a reply

	draining atomic.Bool
	handing  atomic.Bool    // a handoff is running (one at a time)
	bg       sync.WaitGroup // handoffs and releases, off the loop
	kick     chan struct{}  // wakes the loop early
	drained  chan struct{}  // closed by the loop once draining left nothing owned
	stop     chan struct{}
	done     chan struct{}
	started  bool

	servingMu sync.Mutex
	closing   bool           // under servingMu: receive serves no more
	serving   sync.WaitGroup // forwarded requests being served
	work      workers.Pool   // serves them
}

// part is one partition's admission gate and lease as this node holds it.
type part struct {
	mu        sync.Mutex
	epoch     int64 // lease epoch held; 0 = not held
	releasing bool  // no longer held, OnRelease not done yet: not to be taken
	admitting bool
	inflight  int
	idle      chan struct{} // closed when inflight drops to 0, if waited for
	release   func()        // p.leave, bound once
}

// route is where a partition is served, from the last routing refresh.
type route struct {
	owner   string
	subject string
	live    bool // lease not expired
}

var _ Ownership = (*Node)(nil)

// Open connects to PostgreSQL, creates the leases and nodes tables if
// missing and registers the node. It takes no partition before Start.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.NodeID == "" || cfg.Cluster == "" || cfg.Conn == nil || cfg.Table == "" {
		return nil, errors.New("cluster: NodeID, Cluster, Conn and Table are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Renew <= 0 {
		cfg.Renew = time.Second
	}
	if cfg.Flush == nil {
		cfg.Flush = func(context.Context) error { return nil }
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// Lease renewal must not queue behind the store's traffic: a pool of
	// its own, small.
	pcfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		pool:     pool,
		leases:   pgstore.LeasesTable(cfg.Table),
		nodes:    pgstore.SuffixedTable(cfg.Table, "_nodes"),
		subject:  forwardSubject(cfg.Cluster, cfg.NodeID),
		start:    time.Now(),
		m:        newMetrics(cfg.NodeID),
		awaiting: make(map[*awaited]struct{}),
		kick:     make(chan struct{}, 1),
		drained:  make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range n.parts {
		pt := &n.parts[i]
		pt.release = pt.leave
	}
	n.routes.Store(&[Partitions]route{})
	if err := n.createTables(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := n.heartbeat(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) createTables(ctx context.Context) error {
	ddl := []string{
		"CREATE TABLE IF NOT EXISTS " + n.leases + " (part int PRIMARY KEY, owner text NOT NULL DEFAULT '', " +
			"epoch bigint NOT NULL DEFAULT 0, expires timestamptz NOT NULL DEFAULT '-infinity')",
		"CREATE TABLE IF NOT EXISTS " + n.nodes + " (node_id text PRIMARY KEY, nats_subject text NOT NULL, " +
			"heartbeat timestamptz NOT NULL, draining bool NOT NULL DEFAULT false)",
	}
	for _, q := range ddl {
		if err := pgstore.CreateTable(ctx, n.pool, q); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	_, err := n.pool.Exec(ctx, "INSERT INTO "+n.leases+" (part) SELECT generate_series(0, $1::int - 1) "+
		"ON CONFLICT (part) DO NOTHING", Partitions)
	if err != nil {
		return fmt.Errorf("cluster: creating lease rows: %w", err)
	}
	return nil
}

// forwardSubject is the NATS subject a node serves forwarded requests on.
// Node IDs may hold any character: hex keeps the subject literal.
func forwardSubject(cluster, nodeID string) string {
	return fmt.Sprintf("%s.fwd.%x", cluster, nodeID)
}

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Metrics are the node's Prometheus collectors.
func (n *Node) Metrics() *Metrics { return n.m }

// OnRelease implements Ownership.
func (n *Node) OnRelease(fn func(p uint32)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onRelease = append(n.onRelease, fn)
}

// Serve implements Ownership.
func (n *Node) Serve(h func(ctx context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handler = h
}

// Start subscribes to the node's forwarding subject and starts the lease
// loop. Register OnRelease and Serve first.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("cluster: node started twice")
	}
	sub, err := n.cfg.Conn.Subscribe(n.subject, n.receive)
	if err != nil {
		return fmt.Errorf("cluster: subscribing %s: %w", n.subject, err)
	}
	if err := n.cfg.Conn.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("cluster: %w", err)
	}
	n.sub = sub
	n.started = true
	go n.loop()
	return nil
}

// Enter implements Ownership.
func (n *Node) Enter(p uint32) (func(), bool) {
	if p >= Partitions || !n.leaseValid() {
		return nil, false
	}
	pt := &n.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if !pt.admitting {
		return nil, false
	}
	pt.inflight++
	return pt.release, true
}

func (pt *part) leave() {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.inflight--
	if pt.inflight == 0 && pt.idle != nil {
		close(pt.idle)
		pt.idle = nil
	}
}

// close stops admitting and returns a channel closed once no admitted
// operation remains.
func (pt *part) close() <-chan struct{} {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.admitting = false
	if pt.inflight == 0 {
		return closedChan
	}
	if pt.idle == nil {
		pt.idle = make(chan struct{})
	}
	return pt.idle
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (n *Node) leaseValid() bool {
	d := n.deadline.Load()
	return d != 0 && int64(time.Since(n.start)) < d
}

// Fences is the storage.Committer hook: the current epochs of parts, or
// storage.ErrFenced if one is not held (or the lease deadline passed).
func (n *Node) Fences(parts []uint32) ([]storage.Fence, error) {
	if !n.leaseValid() {
		return nil, fmt.Errorf("%w: lease deadline passed on node %s", storage.ErrFenced, n.cfg.NodeID)
	}
	fs := make([]storage.Fence, len(parts))
	for i, p := range parts {
		var e int64
		if p < Partitions {
			pt := &n.parts[p]
			pt.mu.Lock()
			e = pt.epoch
			pt.mu.Unlock()
		}
		if e == 0 {
			return nil, fmt.Errorf("%w: partition %d not owned by node %s", storage.ErrFenced, p, n.cfg.NodeID)
		}
		fs[i] = storage.Fence{Part: p, Epoch: e}
	}
	return fs, nil
}

// Epochs reads the current lease epoch of every partition, whoever holds
// it, in partition order (Fence.Part is the index): fences for a write that
// derives from data read after the call and must be refused if any of those
// partitions changed hands since (the groups' one-time index build, run
// before this node owns anything).
func (n *Node) Epochs(ctx context.Context) ([]storage.Fence, error) {
	rows, err := n.pool.Query(ctx, "SELECT part, epoch FROM "+n.leases+" WHERE part < $1 ORDER BY part", Partitions)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading lease epochs: %w", err)
	}
	fs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[storage.Fence])
	if err == nil && len(fs) != Partitions {
		err = fmt.Errorf("%d lease rows, want %d", len(fs), Partitions)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: reading lease epochs: %w", err)
	}
	return fs, nil
}

// Owned lists the partitions this node holds.
func (n *Node) Owned() []uint32 {
	var ps []uint32
	for i := range n.parts {
		pt := &n.parts[i]
		pt.mu.Lock()
		if pt.epoch != 0 {
			ps = append(ps, uint32(i))
		}
		pt.mu.Unlock()
	}
	return ps
}

// Drain hands every partition back, one at a time, for the other nodes to
// take; forwarding keeps working meanwhile. It returns when nothing is
// owned any more, or with ctx's error.
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	n.wake()
	select {
	case <-n.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return errors.New("cluster: node closed while draining")
	}
}

func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Close stops the loop and forwarding, drops every partition (without the
// handoff's wait: Drain first for a graceful exit), unregisters the node and
// closes its database pool.
func (n *Node) Close() error {
	n.mu.Lock()
	started := n.started
	sub := n.sub
	n.mu.Unlock()
	if started {
		close(n.stop)
		<-n.done
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			n.cfg.Logger.Warn("cluster: unsubscribing", "err", err)
		}
		// nats.go may still be running a receive callback.
		n.servingMu.Lock()
		n.closing = true
		n.servingMu.Unlock()
		n.serving.Wait()
		n.work.Stop()
	}
	n.bg.Wait()
	n.dropAll()
	n.bg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := n.pool.Exec(ctx, "DELETE FROM "+n.nodes+" WHERE node_id = $1", n.cfg.NodeID)
	n.pool.Close()
	return err
}

// loop is the node's one background goroutine: renew, refresh, rebalance.
func (n *Node) loop() {
	defer close(n.done)
	t := time.NewTicker(n.cfg.Renew)
	defer t.Stop()
	for {
		n.tick()
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.kick:
		}
	}
}

// tick is one round of the loop.
func (n *Node) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Renew)
	defer cancel()
	if err := n.heartbeat(ctx); err != nil {
		n.cfg.Logger.Warn("cluster: heartbeat failed", "err", err)
	}
	n.renew()
	if err := n.refresh(ctx); err != nil {
		n.cfg.Logger.Warn("cluster: reading routes failed", "err", err)
		return
	}
	if rtt, err := n.cfg.Conn.RTT(); err == nil {
		n.m.busRTT.Set(rtt.Seconds())
	}
	n.rebalance(ctx)
}

func (n *Node) heartbeat(ctx context.Context) error {
	_, err := n.pool.Exec(ctx, "INSERT INTO "+n.nodes+" (node_id, nats_subject, heartbeat, draining) "+
		"VALUES ($1, $2, now(), $3) ON CONFLICT (node_id) DO UPDATE SET nats_subject = EXCLUDED.nats_subject, "+
		"heartbeat = now(), draining = EXCLUDED.draining", n.cfg.NodeID, n.subject, n.draining.Load())
	return err
}

// held returns the partitions held and their epochs.
func (n *Node) held() (parts []int32, epochs []int64) {
	for i := range n.parts {
		pt := &n.parts[i]
		pt.mu.Lock()
		if pt.epoch != 0 {
			parts = append(parts, int32(i))
			epochs = append(epochs, pt.epoch)
		}
		pt.mu.Unlock()
	}
	return parts, epochs
}

// Lease row locks. A fenced batch locks its lease rows FOR KEY SHARE
// (pgstore), which conflicts only with FOR UPDATE. Every change of epoch
// (take, release) locks FOR UPDATE, so it waits for the batches relying on
// the old epoch; a renewal changes only expires and locks FOR NO KEY
// UPDATE, so it never waits for a batch (a plain UPDATE of a non-key
// column takes that mode too: not enough for a change of epoch). All lock
// in partition order, as batches do, so that they queue rather than
// deadlock.

// renew extends every held lease in one statement. A lease it cannot renew
// is lost: dropped at once. If renewal fails until the local deadline,
// everything is dropped.
func (n *Node) renew() {
	parts, epochs := n.held()
	if len(parts) == 0 {
		return
	}
	sent := time.Since(n.start) // before the request: the lease cannot outlast this + TTL
	ctx, cancel := n.untilDeadline()
	defer cancel()
	rows, err := n.pool.Query(ctx, "WITH mine AS (SELECT l.part FROM "+n.leases+" l "+
		"JOIN unnest($1::int[], $2::bigint[]) AS f(part, epoch) ON l.part = f.part AND l.epoch = f.epoch "+
		"WHERE l.owner = $3 ORDER BY l.part FOR NO KEY UPDATE OF l) "+
		"UPDATE "+n.leases+" l SET expires = now() + $4::interval FROM mine WHERE l.part = mine.part RETURNING l.part",
		parts, epochs, n.cfg.NodeID, n.cfg.LeaseTTL)
	var renewed []int32
	if err == nil {
		renewed, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	}
	if err != nil {
		n.cfg.Logger.Warn("cluster: renewing leases failed", "err", err, "partitions", len(parts))
		if !n.leaseValid() {
			n.cfg.Logger.Error("cluster: lease deadline passed, dropping every partition", "node", n.cfg.NodeID)
			n.dropAll()
		}
		return
	}
	n.setDeadline(sent)
	var lost []uint32
	for _, p := range parts {
		if !slices.Contains(renewed, p) {
			lost = append(lost, uint32(p))
		}
	}
	if len(lost) > 0 {
		n.cfg.Logger.Warn("cluster: leases lost", "partitions", lost)
		n.drop(lost...)
	}
}

// setDeadline moves the local deadline to sent + TTL, less a margin for
// the two clocks' drift.
func (n *Node) setDeadline(sent time.Duration) {
	n.deadline.Store(int64(sent + n.cfg.LeaseTTL - n.cfg.LeaseTTL/10))
}

// untilDeadline bounds a lease statement by the local deadline (or Renew
// when nothing is held).
func (n *Node) untilDeadline() (context.Context, context.CancelFunc) {
	d := time.Duration(n.deadline.Load()) - time.Since(n.start)
	if d <= 0 {
		d = n.cfg.Renew
	}
	return context.WithTimeout(context.Background(), d)
}

// refresh reads the routing table.
func (n *Node) refresh(ctx context.Context) error {
	n.refreshMu.Lock()
	defer n.refreshMu.Unlock()
	rows, err := n.pool.Query(ctx, "SELECT l.part, l.owner, l.expires > now(), coalesce(nd.nats_subject, '') "+
		"FROM "+n.leases+" l LEFT JOIN "+n.nodes+" nd ON nd.node_id = l.owner")
	if err != nil {
		return err
	}
	var rt [Partitions]route
	var (
		p int32
		r route
	)
	_, err = pgx.ForEachRow(rows, []any{&p, &r.owner, &r.live, &r.subject}, func() error {
		if p >= 0 && p < Partitions {
			rt[p] = r
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.routes.Store(&rt)
	n.refreshed = time.Now()
	n.endMoved(&rt)
	return nil
}

// refreshSoon refreshes the routing table unless that was done in the last
// moment (many forwarders may find a stale route at once).
func (n *Node) refreshSoon(ctx context.Context) {
	n.refreshMu.Lock()
	recent := time.Since(n.refreshed) < 50*time.Millisecond
	n.refreshMu.Unlock()
	if !recent {
		if err := n.refresh(ctx); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("cluster: reading routes failed", "err", err)
		}
	}
}

// rebalance moves the node toward its fair share.
func (n *Node) rebalance(ctx context.Context) {
	var live int
	err := n.pool.QueryRow(ctx, "SELECT count(*) FROM "+n.nodes+" WHERE heartbeat > now() - $1::interval AND NOT draining",
		n.cfg.LeaseTTL).Scan(&live)
	if err != nil {
		n.cfg.Logger.Warn("cluster: counting nodes failed", "err", err)
		return
	}
	target := 0
	if !n.draining.Load() {
		target = (Partitions + max(live, 1) - 1) / max(live, 1)
	}
	owned, _ := n.held()
	switch {
	case len(owned) < target:
		n.take(ctx, target-len(owned))
	case len(owned) > target && n.handing.CompareAndSwap(false, true):
		// One at a time, each handed over completely before the next, off
		// the loop so that renewals go on meanwhile.
		p := uint32(owned[len(owned)-1])
		n.bg.Go(func() {
			n.handOff(p)
			n.handing.Store(false)
			n.wake()
		})
	}
	if n.draining.Load() && len(n.Owned()) == 0 && !n.handing.Load() {
		select {
		case <-n.drained:
		default:
			close(n.drained)
		}
	}
}

// take acquires up to want free or expired partitions (and those whose
// lease still names this node, from before a restart).
func (n *Node) take(ctx context.Context, want int) {
	rt := n.routes.Load()
	var mine, free []int32
	for i, r := range rt {
		if n.busy(uint32(i)) {
			continue
		}
		switch {
		case r.owner == n.cfg.NodeID:
			mine = append(mine, int32(i))
		case r.owner == "" || !r.live:
			free = append(free, int32(i))
		}
	}
	if len(mine)+len(free) == 0 {
		return
	}
	// Random picks: nodes starting together rarely race for the same rows.
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	hadAny := len(n.Owned()) > 0
	cand := append(mine, free...)
	cand = cand[:min(want, len(cand))]
	sent := time.Since(n.start)
	// lock_timeout: rows locked by fenced batches (of a stopped process,
	// or a stream of them: FOR UPDATE does not stop new key-share lockers)
	// must not stall the loop; the next round tries again.
	tx, err := n.pool.Begin(ctx)
	if err != nil {
		n.cfg.Logger.Warn("cluster: taking partitions failed", "err", err)
		return
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit: a no-op
	if _, err = tx.Exec(ctx, "SET LOCAL lock_timeout = '500ms'"); err != nil {
		n.cfg.Logger.Warn("cluster: taking partitions failed", "err", err)
		return
	}
	rows, err := tx.Query(ctx, "WITH c AS (SELECT part FROM "+n.leases+" WHERE part = ANY($1::int[]) "+
		"AND (owner = '' OR owner = $2 OR expires < now()) ORDER BY part FOR UPDATE) "+
		"UPDATE "+n.leases+" l SET owner = $2, epoch = l.epoch + 1, expires = now() + $3::interval "+
		"FROM c WHERE l.part = c.part RETURNING l.part, l.epoch", cand, n.cfg.NodeID, n.cfg.LeaseTTL)
	type taken struct {
		Part  int32
		Epoch int64
	}
	var got []taken
	if err == nil {
		got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[taken])
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		n.cfg.Logger.Warn("cluster: taking partitions failed", "err", err)
		return
	}
	if len(got) == 0 {
		return
	}
	if !hadAny {
		// The first leases set the deadline; later ones expire after the
		// held ones, which keep it.
		n.setDeadline(sent)
	}
	for _, t := range got {
		pt := &n.parts[t.Part]
		pt.mu.Lock()
		pt.epoch, pt.admitting = t.Epoch, true
		pt.mu.Unlock()
		n.m.moves.WithLabelValues("acquired").Inc()
	}
	n.m.owned.Set(float64(len(n.Owned())))
	n.cfg.Logger.Info("cluster: took partitions", "count", len(got), "node", n.cfg.NodeID)
	if err := n.refresh(ctx); err != nil {
		n.cfg.Logger.Warn("cluster: reading routes failed", "err", err)
	}
}

// busy reports whether p is held, or still being released.
func (n *Node) busy(p uint32) bool {
	pt := &n.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.epoch != 0 || pt.releasing
}

// handoffWait bounds how long a handoff waits for admitted operations
// (they are bounded by their requests' deadlines anyway).
const handoffWait = 15 * time.Second

// handOff gives partition p back gracefully: no new operations, admitted
// ones finish, services drop its state after submitting their writes, the
// writes commit, and only then is the lease released.
func (n *Node) handOff(p uint32) {
	pt := &n.parts[p]
	select {
	case <-pt.close():
	case <-time.After(handoffWait):
		n.cfg.Logger.Warn("cluster: handoff proceeds with operations still running", "partition", p)
	}
	n.released(p)
	ctx, cancel := n.untilDeadline()
	defer cancel()
	if err := n.cfg.Flush(ctx); err != nil {
		n.cfg.Logger.Warn("cluster: flushing before handoff", "partition", p, "err", err)
	}
	pt.mu.Lock()
	epoch := pt.epoch
	pt.epoch = 0
	pt.mu.Unlock()
	// Bumping the epoch on release as well: a late batch of this tenure is
	// fenced even if the next owner has not taken the row yet. FOR UPDATE:
	// a batch of this tenure still committing lands before the release.
	_, err := n.pool.Exec(ctx, "WITH r AS (SELECT part FROM "+n.leases+" WHERE part = $1 AND owner = $2 "+
		"AND epoch = $3 FOR UPDATE) "+
		"UPDATE "+n.leases+" l SET owner = '', epoch = l.epoch + 1, expires = now() FROM r WHERE l.part = r.part",
		int32(p), n.cfg.NodeID, epoch)
	if err != nil {
		// It expires by itself within the TTL.
		n.cfg.Logger.Warn("cluster: releasing lease", "partition", p, "err", err)
	}
	n.m.moves.WithLabelValues("released").Inc()
	n.m.owned.Set(float64(len(n.Owned())))
}

// drop forgets lost partitions at once: no admission, no fence; then, off
// the loop, once their admitted operations are done, their state (until
// then they are not taken again).
func (n *Node) drop(ps ...uint32) {
	for _, p := range ps {
		pt := &n.parts[p]
		idle := pt.close()
		pt.mu.Lock()
		had := pt.epoch != 0
		pt.epoch = 0
		pt.releasing = pt.releasing || had
		pt.mu.Unlock()
		if !had {
			continue
		}
		n.m.moves.WithLabelValues("lost").Inc()
		n.bg.Go(func() {
			select {
			case <-idle:
			case <-time.After(handoffWait):
				n.cfg.Logger.Warn("cluster: dropping a lost partition with operations still running", "partition", p)
			}
			n.released(p)
			pt.mu.Lock()
			pt.releasing = false
			pt.mu.Unlock()
		})
	}
	n.m.owned.Set(float64(len(n.Owned())))
}

func (n *Node) dropAll() {
	n.deadline.Store(0)
	all := make([]uint32, Partitions)
	for i := range all {
		all[i] = uint32(i)
	}
	n.drop(all...)
}

// released runs the OnRelease callbacks of p.
func (n *Node) released(p uint32) {
	n.mu.Lock()
	fns := slices.Clone(n.onRelease)
	n.mu.Unlock()
	for _, fn := range fns {
		fn(p)
	}
}
