// Package pgstore is a storage.Store on PostgreSQL, for the cluster path:
// several Readmark nodes share one database, so any node can serve any user.
// It passes the same conformance suite (storagetest) as the embedded
// pebblestore.
//
// Layout: one table (k bytea PRIMARY KEY, v bytea NOT NULL), created by Open
// if missing. bytea compares bytewise, the order storage.Store requires; it
// carries no collation.
//
//   - Get is one SELECT; GetMany one SELECT ... WHERE k = ANY($1) for all
//     its keys (one statement: one snapshot).
//   - Scan first reads up to 128 rows (128 kB) by one SELECT, one snapshot,
//     into memory. If that is the whole range, the scan is done in one round
//     trip, without a transaction. Otherwise it reads the range again
//     from its start in pages of pageSize rows (keyset pagination on k,
//     ORDER BY k ASC or DESC), so a huge range is never loaded at once, all
//     inside one REPEATABLE READ READ ONLY transaction: the scan sees one
//     snapshot.
//   - ScanPrefixes reads the first page of every prefix by one SELECT (a
//     LATERAL subquery with a LIMIT per prefix); if one may hold more, it
//     reads them all again, prefix by prefix, in one such transaction.
//   - Apply is one transaction, in one round trip. The batch is first reduced
//     to the last write of each key (later writes win); its statements, one
//     INSERT ... ON CONFLICT DO UPDATE over unnest'ed arrays for the sets and
//     one DELETE ... = ANY for the deletes, are sent as one pipeline, which
//     PostgreSQL runs as one implicit transaction. Rows are locked in key order so
//     that concurrent batches over the same keys queue instead of deadlocking;
//     a deadlock or serialization failure that happens anyway is retried.
//   - Fencing: a batch with Fences (cluster path, see storage.Batch) first
//     locks the lease rows of its partitions in the table <table>_leases
//     (maintained by package cluster) FOR KEY SHARE, in partition order, in
//     the same transaction and the same round trip, and the statement fails
//     unless every one still has the batch's epoch; Apply then returns
//     storage.ErrFenced and writes nothing. FOR KEY SHARE conflicts only
//     with FOR UPDATE, which package cluster takes for every change of
//     epoch (takeover, release): those wait until the batch has committed,
//     so a write is either before the change, and visible to the new owner,
//     or refused; a renewal (FOR NO KEY UPDATE) does not wait for batches.
//   - sync=false sets synchronous_commit = off for that transaction: the
//     commit does not wait for the WAL flush, and a server crash may lose it
//     (never partially). sync=true uses the server's synchronous_commit, which
//     must not be off for Apply(sync=true) to mean durable.
//
// Limits. Every call is at least one network round trip (a Scan past its
// first page one per page plus begin and end; plus a ping when
// pgxpool hands out a connection idle for over a second), so per-operation
// latency is far above pebblestore's: put the Committer in front of it, as the
// services do. A Scan past its first page holds a connection and a snapshot
// for as long as its callback runs; a callback that calls the store then
// needs a second connection, so do not nest scans deeper than the pool size.
// Long-running scans hold back vacuum. Keys are limited by the btree index entry size (about 2.7 kB);
// values by bytea (1 GB) and memory.
//
// A transaction left idle for 5 s (idle_in_transaction_session_timeout,
// settable in the DSN) is ended by the server, so that a paused process
// cannot hold locks indefinitely.
//
// Connections come from a pgxpool.Pool configured by pgxpool.ParseConfig: its
// size is pool_max_conns in the DSN (default the greater of 4 and
// runtime.NumCPU()), and the DSN's other pool_* parameters apply as pgxpool
// documents them.
package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/readmark/readmark/internal/storage"
)

// Store is a storage.Store on a PostgreSQL table.
type Store struct {
	pool     *pgxpool.Pool
	table    string // quoted identifier
	name     string // as given to Open
	pageSize int
	closed   atomic.Bool

	qGet, qGetMany, qLastKeys, qScanPrefixes, qUpsert, qDelete, qLock, qFence string
}

var _ storage.Store = (*Store)(nil)

const defaultPageSize = 1000

// idleTxParam ends, server side, a transaction whose client stopped in its
// middle (a paused or hung process): its locks would otherwise block the
// takeover of its partitions' leases (fencing) forever. Default 5 s; the DSN
// may set it.
const idleTxParam = "idle_in_transaction_session_timeout"

// maxAttempts bounds the retries of an Apply that lost a deadlock or a
// serialization conflict.
const maxAttempts = 5

// Open connects to the database at dsn (a libpq URL or key=value string, as
// pgx parses it) and creates table if it does not exist. table may be
// schema-qualified ("readmark.kv"); it is quoted, so it is case-sensitive.
// The DSN may set pool_max_conns and pgxpool's other pool_* parameters.
func Open(ctx context.Context, dsn string, table string) (*Store, error) {
	if table == "" {
		return nil, errors.New("pgstore: empty table name")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if _, set := cfg.ConnConfig.RuntimeParams[idleTxParam]; !set {
		cfg.ConnConfig.RuntimeParams[idleTxParam] = "5s"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	t := pgx.Identifier(strings.Split(table, ".")).Sanitize()
	s := &Store{
		pool:     pool,
		table:    t,
		name:     table,
		pageSize: defaultPageSize,
		qGet:     "SELECT v FROM " + t + " WHERE k = $1",
		qGetMany: "SELECT k, v FROM " + t + " WHERE k = ANY($1::bytea[])",
		// Per prefix, the last key below its end (an index scan backwards,
		// stopping at the first row); a prefix without an end (all 0xff)
		// has every key at or above it, and the second subquery, gated off
		// for the others, takes the last of those.
		qLastKeys: "SELECT COALESCE(" +
			"(SELECT k FROM " + t + " WHERE k >= p.lo AND k < p.hi ORDER BY k DESC LIMIT 1), " +
			"(SELECT k FROM " + t + " WHERE p.hi IS NULL AND k >= p.lo ORDER BY k DESC LIMIT 1)) " +
			"FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS p(lo, hi, i) ORDER BY p.i",
		// The first rows of each prefix: bounded on both sides, so that each
		// is an index range scan that stops at its LIMIT or its end.
		qScanPrefixes: "SELECT p.i, r.k, r.v FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS p(lo, hi, i), " +
			"LATERAL (SELECT k, v FROM " + t + " WHERE k >= p.lo AND k < p.hi ORDER BY k LIMIT $3) r ORDER BY p.i, r.k",
		qUpsert: "INSERT INTO " + t + " (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) " +
			"ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
		qDelete: "DELETE FROM " + t + " WHERE k = ANY($1::bytea[])",
		qLock:   "SELECT 1 FROM " + t + " WHERE k = ANY($1::bytea[]) ORDER BY k FOR UPDATE",
		// A pipelined statement cannot stop the ones after it, but an error
		// aborts the transaction: divide by zero unless every fence matched
		// (mapped to ErrFenced by its SQLSTATE, for this statement only).
		qFence: "SELECT 1 / (count(*) = $3)::int FROM (SELECT 1 FROM " + LeasesTable(table) + " l " +
			"JOIN unnest($1::int[], $2::bigint[]) AS f(part, epoch) ON l.part = f.part AND l.epoch = f.epoch " +
			"ORDER BY l.part FOR KEY SHARE OF l) held",
	}
	if err := s.createTable(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// LeasesTable is the quoted name of the partition leases table that fences
// of a store on table are checked against: table with "_leases" appended to
// its last component.
func LeasesTable(table string) string { return SuffixedTable(table, "_leases") }

// SuffixedTable is the quoted name of table with suffix appended to its last
// component: the tables that go with a store's (package cluster's).
func SuffixedTable(table, suffix string) string {
	parts := strings.Split(table, ".")
	parts[len(parts)-1] += suffix
	return pgx.Identifier(parts).Sanitize()
}

func (s *Store) createTable(ctx context.Context) error {
	q := "CREATE TABLE IF NOT EXISTS " + s.table + " (k bytea PRIMARY KEY, v bytea NOT NULL)"
	if err := CreateTable(ctx, s.pool, q); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	return nil
}

// CreateTable runs a CREATE TABLE IF NOT EXISTS statement, tolerating
// another node running it at the same moment.
func CreateTable(ctx context.Context, pool *pgxpool.Pool, ddl string) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Release()
	_, err = c.Exec(ctx, ddl)
	if isCode(err, "23505", "42P07", "42710") {
		// IF NOT EXISTS is not race-free in PostgreSQL (unique violation on
		// the catalog, or the table's row type already existing). Once more
		// finds it there.
		_, err = c.Exec(ctx, ddl)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ddl, err)
	}
	return nil
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key []byte) ([]byte, error) {
	c, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	var v []byte
	err = c.QueryRow(ctx, s.qGet, nonNil(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// GetMany implements storage.Store.
func (s *Store) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	arg := make([][]byte, len(keys))
	for i, k := range keys {
		arg[i] = nonNil(k)
	}
	c, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	rows, err := c.Query(ctx, s.qGetMany, arg)
	if err != nil {
		return nil, err
	}
	found := make(map[string][]byte, len(keys))
	for rows.Next() {
		var k pgtype.DriverBytes
		var v []byte // scanning into []byte copies
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return nil, err
		}
		found[string(k)] = nonNil(v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	given := make(map[string]bool, len(found))
	for i, k := range keys {
		v, ok := found[string(k)]
		if !ok {
			continue
		}
		if given[string(k)] {
			v = bytes.Clone(v) // a key asked twice: a copy of its own, as from two Gets
		}
		given[string(k)] = true
		out[i] = v
	}
	return out, nil
}

// LastKeys implements storage.Store: one statement.
func (s *Store) LastKeys(ctx context.Context, prefixes [][]byte) ([][]byte, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	out := make([][]byte, 0, len(prefixes))
	if len(prefixes) == 0 {
		return out, nil
	}
	los := make([][]byte, len(prefixes))
	his := make([][]byte, len(prefixes)) // nil: NULL, no end
	for i, p := range prefixes {
		los[i], his[i] = nonNil(p), storage.PrefixEnd(p)
	}
	c, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	rows, err := c.Query(ctx, s.qLastKeys, los, his)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k []byte // scanning into []byte copies; NULL: nil
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != len(prefixes) {
		return nil, fmt.Errorf("pgstore: %d last keys for %d prefixes", len(out), len(prefixes))
	}
	return out, nil
}

// Scan implements storage.Store. Most scans are small (a user's groups,
// devices and cursors at every login): their first page, of at most
// firstPageRows rows and firstPageBytes bytes, is read by one statement,
// which sees one snapshot by itself, so they need no transaction (its BEGIN
// and ROLLBACK were two of a small scan's three round trips). That page is
// buffered until it is known to be the whole range: rows handed to fn
// cannot be taken back, and a longer range is read again from its start in
// one transaction. fn runs after the connection is released.
func (s *Store) Scan(ctx context.Context, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	q, args := s.pageQuery(start, end, reverse, nil, false, s.firstLimit())
	err := s.scanSmall(ctx, q, args, false, func(_ int, k, v []byte) bool { return fn(k, v) })
	if err != errTooBig {
		return err
	}
	return s.inSnapshot(ctx, func(tx pgx.Tx) error {
		_, err := s.pages(ctx, tx, start, end, reverse, fn)
		return err
	})
}

// ScanPrefixes implements storage.Store: as Scan, one statement reads the
// first page of every prefix (LATERAL, a LIMIT each), and only if one of
// them may hold more are the prefixes read again, one by one, in a
// transaction.
func (s *Store) ScanPrefixes(ctx context.Context, prefixes [][]byte, fn func(i int, key, value []byte) bool) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	if len(prefixes) == 0 {
		return nil
	}
	los, his := make([][]byte, len(prefixes)), make([][]byte, len(prefixes))
	bounded := true
	for i, p := range prefixes {
		los[i], his[i] = nonNil(p), storage.PrefixEnd(p)
		bounded = bounded && his[i] != nil
	}
	err := errTooBig
	if bounded { // a prefix without an end (all 0xff) is not worth a statement of its own
		err = s.scanSmall(ctx, s.qScanPrefixes, []any{los, his, s.firstLimit()}, true, fn)
	}
	if err != errTooBig {
		return err
	}
	return s.inSnapshot(ctx, func(tx pgx.Tx) error {
		for i := range prefixes {
			stopped, err := s.pages(ctx, tx, los[i], his[i], false, func(k, v []byte) bool { return fn(i, k, v) })
			if stopped || err != nil {
				return err
			}
		}
		return nil
	})
}

// firstPageRows and firstPageBytes bound the first page a Scan reads into
// memory (per prefix for ScanPrefixes): a scan that needs more pays one
// such page twice, one that stops early (a sync page, the last key of a
// range) reads only this much.
const (
	firstPageRows  = 128
	firstPageBytes = 128 << 10
)

func (s *Store) firstLimit() int { return min(firstPageRows, s.pageSize) }

// errTooBig reports that a first page may not be the whole range.
var errTooBig = errors.New("pgstore: more than a first page")

// scanSmall runs query, which returns at most firstLimit rows per range
// (columns k, v; with indexed, the range's 1-based index first), buffers
// them and, if no range filled its limit and they fit in firstPageBytes,
// calls fn with them once the connection is released; else it returns
// errTooBig and calls nothing.
func (s *Store) scanSmall(ctx context.Context, query string, args []any, indexed bool, fn func(i int, key, value []byte) bool) error {
	page := pageBufs.Get().(*pageBuf)
	defer page.release()
	if err := s.readPage(ctx, query, args, indexed, page); err != nil {
		return err
	}
	page.each(fn)
	return nil
}

// readPage reads query's rows into page for scanSmall, or fails with
// errTooBig.
func (s *Store) readPage(ctx context.Context, query string, args []any, indexed bool, page *pageBuf) error {
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	rows, err := c.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	limit := s.firstLimit()
	i, last, n := int64(1), int64(0), 0
	var k, v pgtype.DriverBytes // valid until the next row: copied below
	dest := []any{&k, &v}
	if indexed {
		dest = []any{&i, &k, &v}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if i != last {
			last, n = i, 0
		}
		if n++; n == limit || len(page.data)+len(k)+len(v) > firstPageBytes {
			return errTooBig
		}
		page.add(int(i-1), k, v)
	}
	rows.Close()
	return rows.Err()
}

// inSnapshot runs fn in a REPEATABLE READ READ ONLY transaction: every
// statement of it sees the same snapshot.
func (s *Store) inSnapshot(ctx context.Context, fn func(tx pgx.Tx) error) error {
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	// Read-only: ending it with a rollback loses nothing. A failed rollback
	// leaves the connection in a transaction, and Release then destroys it.
	defer tx.Rollback(context.Background()) //nolint:errcheck
	return fn(tx)
}

// pages scans [start, end) in pages of pageSize rows in tx; stopped
// reports that fn returned false.
func (s *Store) pages(ctx context.Context, tx pgx.Tx, start, end []byte, reverse bool, fn func(key, value []byte) bool) (stopped bool, err error) {
	var cursor []byte // last key of the previous page
	for page := 0; ; page++ {
		q, args := s.pageQuery(start, end, reverse, cursor, page > 0, s.pageSize)
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return false, err
		}
		n := 0
		for rows.Next() {
			// DriverBytes alias the connection's read buffer, valid until the
			// next row: what Scan promises fn, without a copy per row.
			var k, v pgtype.DriverBytes
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return false, err
			}
			n++
			if n == s.pageSize {
				cursor = append(cursor[:0], k...)
			}
			if !fn(k, nonNil(v)) {
				stopped = true
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, err
		}
		if stopped || n < s.pageSize {
			return stopped, nil
		}
	}
}

// pageBuf holds the rows of a first page: their keys and values one after
// another in data, ends[2j] and ends[2j+1] the ends of row j's key and
// value, ranges[j] the index of its range.
type pageBuf struct {
	data   []byte
	ends   []int
	ranges []int
}

var pageBufs = sync.Pool{New: func() any { return &pageBuf{data: make([]byte, 0, 1024)} }}

func (p *pageBuf) add(i int, k, v []byte) {
	p.data = append(p.data, k...)
	p.ends = append(p.ends, len(p.data))
	p.data = append(p.data, v...)
	p.ends = append(p.ends, len(p.data))
	p.ranges = append(p.ranges, i)
}

// each calls fn with the rows in order until it returns false.
func (p *pageBuf) each(fn func(i int, key, value []byte) bool) {
	from := 0
	for j, i := range p.ranges {
		kEnd, vEnd := p.ends[2*j], p.ends[2*j+1]
		// Capacities cut at the ends: fn appending to a slice must not
		// overwrite the next row.
		if !fn(i, p.data[from:kEnd:kEnd], p.data[kEnd:vEnd:vEnd]) {
			return
		}
		from = vEnd
	}
}

// release empties p and returns it to the pool; a buffer grown past a
// page's bound is dropped.
func (p *pageBuf) release() {
	if cap(p.data) > 2*firstPageBytes {
		return
	}
	p.data, p.ends, p.ranges = p.data[:0], p.ends[:0], p.ranges[:0]
	pageBufs.Put(p)
}

// pageQuery builds the query for one page of limit rows: bounds [start,
// end), continuing after cursor if more.
func (s *Store) pageQuery(start, end []byte, reverse bool, cursor []byte, more bool, limit int) (string, []any) {
	var (
		conds []string
		args  []any
	)
	cond := func(op string, v []byte) {
		args = append(args, nonNil(v))
		conds = append(conds, "k "+op+" $"+strconv.Itoa(len(args)))
	}
	order := "ASC"
	if reverse {
		order = "DESC"
		if more {
			cond("<", cursor)
		} else if end != nil {
			cond("<", end)
		}
		if len(start) > 0 {
			cond(">=", start)
		}
	} else {
		if more {
			cond(">", cursor)
		} else if len(start) > 0 {
			cond(">=", start)
		}
		if end != nil {
			cond("<", end)
		}
	}
	q := "SELECT k, v FROM " + s.table
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY k " + order + " LIMIT " + strconv.Itoa(limit)
	return q, args
}

// Apply implements storage.Store.
func (s *Store) Apply(ctx context.Context, b *storage.Batch, sync bool) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	if b.Len() == 0 {
		return nil
	}
	setK, setV, delK := reduce(b.Ops)
	fenceParts := make([]int32, len(b.Fences))
	fenceEpochs := make([]int64, len(b.Fences))
	for i, f := range b.Fences {
		fenceParts[i], fenceEpochs[i] = int32(f.Part), f.Epoch
	}
	var all [][]byte
	if len(setK) > 0 && len(delK) > 0 {
		all = slices.Concat(setK, delK)
		slices.SortFunc(all, bytes.Compare)
	}
	statements := func() *pgx.Batch { // a fresh one per attempt
		batch := &pgx.Batch{}
		if !sync {
			batch.Queue("SET LOCAL synchronous_commit = off")
		}
		if len(b.Fences) > 0 {
			batch.Queue(s.qFence, fenceParts, fenceEpochs, len(b.Fences))
		}
		if all != nil {
			// Sets and deletes are two statements, each locking in key order,
			// but together not: lock the batch's existing rows in order first.
			batch.Queue(s.qLock, all)
		}
		if len(setK) > 0 {
			batch.Queue(s.qUpsert, setK, setV)
		}
		if len(delK) > 0 {
			batch.Queue(s.qDelete, delK)
		}
		return batch
	}
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		err = s.applyOnce(ctx, statements())
		if err == nil || !isCode(err, "40P01", "40001") || ctx.Err() != nil {
			break
		}
	}
	if len(b.Fences) > 0 && isCode(err, "22012") {
		// Only the fence statement divides; no write of the batch can.
		return fmt.Errorf("%w (fences %v)", storage.ErrFenced, b.Fences)
	}
	return err
}

// applyOnce runs batch's statements in one round trip. They need no BEGIN
// and COMMIT (two more round trips per group commit): the statements of a
// pipeline up to its Sync run in one implicit transaction, which commits at
// the Sync, or rolls back whole when one fails (SET LOCAL holds within it
// too).
func (s *Store) applyOnce(ctx context.Context, batch *pgx.Batch) error {
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return c.SendBatch(ctx, batch).Close()
}

// reduce keeps the last write of each key, in key order: sets as parallel
// key and value arrays, deletes as keys.
func reduce(ops []storage.Op) (setK, setV, delK [][]byte) {
	last := make(map[string]int, len(ops))
	for i, op := range ops {
		last[string(op.Key)] = i
	}
	idx := make([]int, 0, len(last))
	for _, i := range last {
		idx = append(idx, i)
	}
	slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(ops[a].Key, ops[b].Key) })
	for _, i := range idx {
		op := ops[i]
		if op.Delete {
			delK = append(delK, nonNil(op.Key))
		} else {
			setK = append(setK, nonNil(op.Key))
			setV = append(setV, nonNil(op.Value))
		}
	}
	return setK, setV, delK
}

// Close implements storage.Store: it waits for calls in progress to finish
// and closes every connection. The data is the server's; nothing to flush.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// acquire borrows a connection from the pool. It fails with storage.ErrClosed
// once Close has begun, including for calls that were waiting for a
// connection when it did.
func (s *Store) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil && s.closed.Load() {
		return nil, storage.ErrClosed
	}
	return c, err
}

// nonNil maps nil to an empty slice: pgx sends a nil []byte as NULL, but an
// empty key or a Set with a nil value means the empty byte string.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func isCode(err error, codes ...string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return slices.Contains(codes, pe.Code)
}
