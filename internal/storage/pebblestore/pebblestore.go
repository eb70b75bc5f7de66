// Package pebblestore is the embedded storage.Store, on Pebble: the default,
// needing nothing but a directory.
//
// A Pebble database belongs to one process, which owns every partition:
// Apply ignores a batch's Fences (there is no other node to fence off).
package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/readmark/readmark/internal/storage"
)

// Store is a storage.Store backed by a Pebble database.
type Store struct {
	db     *pebble.DB
	fs     io.Closer // the disk-health checks' goroutine
	closed atomic.Bool
}

var _ storage.Store = (*Store)(nil)

// cacheBytes is the block cache: big enough that the hot part of read
// state, receipt logs and recent messages is served from memory.
const cacheBytes = 256 << 20

// DefaultWALSyncInterval is the server's Options.WALSyncInterval. Under
// load most group commits hold one or two writes and each pays a WAL sync
// (fdatasync: about 75 µs of CPU on a virtual disk); holding the next sync
// back this long lets the commits in between share it: in steady 5,000
// receipts/s, 15 % less server CPU for 1-1.5 ms more at the median of a
// receipt call (BENCHMARKS.md). A write after a quiet spell syncs at once.
const DefaultWALSyncInterval = 500 * time.Microsecond

// Options tune a Store; the zero value syncs every commit at once.
type Options struct {
	// WALSyncInterval is the least time between two syncs of the
	// write-ahead log: a synced write arriving sooner waits for the
	// interval to end, and shares the sync with whatever arrived
	// meanwhile. 0 = no wait.
	WALSyncInterval time.Duration
}

// Open opens (creating if needed) the database in dir with zero Options.
func Open(dir string) (*Store, error) { return OpenWith(dir, Options{}) }

// OpenWith opens (creating if needed) the database in dir.
func OpenWith(dir string, o Options) (*Store, error) {
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref() // the DB holds its own reference
	// Pebble's default file system, with its disk-health checks, made
	// here: Pebble closes the checks' goroutine when the DB closes, but
	// not when Open fails (say, the directory is another server's).
	fs, fsCloser := vfs.WithDiskHealthChecks(vfs.Default, diskSlowThreshold, nil, func(info vfs.DiskSlowInfo) {
		slog.Warn("storage: a disk operation is slow", "path", info.Path, "op", info.OpType.String(), "for", info.Duration)
	})
	opts := &pebble.Options{
		Logger:       quietLogger{},
		Cache:        cache,
		MemTableSize: 64 << 20,
		FS:           fs,
	}
	if o.WALSyncInterval > 0 {
		opts.WALMinSyncInterval = func() time.Duration { return o.WALSyncInterval }
	}
	// Bloom filters let point lookups (messages, read sets) skip tables.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		fsCloser.Close()
		return nil, err
	}
	return &Store{db: db, fs: fsCloser}, nil
}

// diskSlowThreshold is Pebble's default for its disk-health checks.
const diskSlowThreshold = 5 * time.Second

// DB exposes the Pebble handle, for metrics and disk-usage reports.
func (s *Store) DB() *pebble.DB { return s.db }

// Get implements storage.Store.
func (s *Store) Get(_ context.Context, key []byte) ([]byte, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	return out, closer.Close()
}

// GetMany implements storage.Store: one iterator (a consistent view, as a
// snapshot is) sought to each key in turn. A prefix seek of the whole key
// consults the tables' bloom filters as Get does, but reuses the
// iterator's levels instead of setting up a lookup per key
// (BenchmarkGetMany: 20 adjacent keys, as a sync's read states, ~3x
// cheaper; scattered or missing keys too).
func (s *Store) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	it, err := s.db.NewIterWithContext(ctx, nil)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		if !it.SeekPrefixGE(k) || !bytes.Equal(it.Key(), k) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, err
		}
		out[i] = append([]byte{}, v...)
	}
	if err := it.Error(); err != nil {
		it.Close()
		return nil, err
	}
	return out, it.Close()
}

// LastKeys implements storage.Store: one iterator, sought below each
// prefix's end in turn. It is bounded by the prefixes' range, so that it
// skips the tables outside it (for one prefix, as a reverse Scan does).
func (s *Store) LastKeys(ctx context.Context, prefixes [][]byte) ([][]byte, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	out := make([][]byte, len(prefixes))
	if len(prefixes) == 0 {
		return out, nil
	}
	ends := make([][]byte, len(prefixes))
	unbounded := false
	for i, p := range prefixes {
		ends[i] = storage.PrefixEnd(p)
		unbounded = unbounded || ends[i] == nil
	}
	opts := &pebble.IterOptions{LowerBound: slices.MinFunc(prefixes, bytes.Compare)}
	if !unbounded {
		opts.UpperBound = slices.MaxFunc(ends, bytes.Compare)
	}
	it, err := s.db.NewIterWithContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	for i, p := range prefixes {
		var ok bool
		if ends[i] != nil {
			ok = it.SeekLT(ends[i])
		} else {
			ok = it.Last()
		}
		if ok && bytes.HasPrefix(it.Key(), p) {
			out[i] = bytes.Clone(it.Key())
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return nil, err
	}
	return out, it.Close()
}

// ScanPrefixes implements storage.Store: one iterator, a seek per prefix.
func (s *Store) ScanPrefixes(ctx context.Context, prefixes [][]byte, fn func(i int, k, v []byte) bool) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	if len(prefixes) == 0 {
		return nil
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: slices.MinFunc(prefixes, bytes.Compare)})
	if err != nil {
		return err
	}
scan:
	for i, p := range prefixes {
		var ok bool
		if len(p) == 0 {
			ok = it.First() // SeekGE refuses an empty key in invariants builds
		} else {
			ok = it.SeekGE(p)
		}
		for ; ok && bytes.HasPrefix(it.Key(), p); ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return err
			}
			if !fn(i, it.Key(), v) {
				break scan
			}
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// Scan implements storage.Store.
func (s *Store) Scan(ctx context.Context, start, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return err
	}
	valid := it.First
	next := it.Next
	if reverse {
		valid, next = it.Last, it.Prev
	}
	for ok := valid(); ok; ok = next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if !fn(it.Key(), v) {
			break
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// Apply implements storage.Store.
func (s *Store) Apply(_ context.Context, b *storage.Batch, sync bool) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	pb := s.db.NewBatch()
	for _, op := range b.Ops {
		var err error
		if op.Delete {
			err = pb.Delete(op.Key, nil)
		} else {
			err = pb.Set(op.Key, op.Value, nil)
		}
		if err != nil {
			pb.Close()
			return err
		}
	}
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := pb.Commit(wo); err != nil {
		pb.Close()
		return err
	}
	return pb.Close()
}

// Close implements storage.Store: it flushes the memtable and closes.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	defer s.fs.Close() // after the DB's last file operation
	if err := s.db.Flush(); err != nil {
		s.db.Close()
		return err
	}
	return s.db.Close()
}

// DiskUsage reports the bytes of the database's files on disk.
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// quietLogger drops Pebble's informational chatter; errors still reach the
// caller through return values.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
