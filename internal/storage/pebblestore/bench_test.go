package pebblestore

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/readmark/readmark/internal/storage"
)

// BenchmarkSyncedApply measures one synced batch of one small key per op:
// the cost of a durable write without group commit (fsync latency bound),
// and the process's CPU per op (cpu-µs/op, user and system: on some virtual
// disks the fsync itself costs tens of µs of kernel CPU).
func BenchmarkSyncedApply(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var i uint64
	cpu0 := processCPU(b)
	defer func() { b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op") }()
	for b.Loop() {
		i++
		batch := &storage.Batch{}
		batch.Set(binary.BigEndian.AppendUint64([]byte("k/"), i), []byte("value"))
		if err := s.Apply(ctx, batch, true); err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU is the user and system CPU this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCommitterGroupCommit measures durable small writes submitted by
// 256 concurrent writers through storage.Committer, which gathers them into
// shared synced batches; reports writes/s and writes per fsync.
func BenchmarkCommitterGroupCommit(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := storage.NewCommitter(s, 0)
	var commits atomic.Int64
	c.OnCommit = func(int, int) { commits.Add(1) }
	ctx := context.Background()
	var next atomic.Uint64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 256 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > uint64(b.N) {
					return
				}
				key := binary.BigEndian.AppendUint64([]byte("k/"), i)
				if err := c.Commit(ctx, func(bt *storage.Batch) { bt.Set(key, []byte("value")) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	c.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(b.N)/float64(commits.Load()), "writes/fsync")
}

// BenchmarkGet measures a point lookup of a key written moments before
// (memtable or block cache), as the receipt path does for messages.
func BenchmarkGet(b *testing.B) {
	s := open10k(b)
	ctx := context.Background()
	var i uint64
	for b.Loop() {
		i = (i + 7919) % 10000
		if _, err := s.Get(ctx, binary.BigEndian.AppendUint64([]byte("k/"), i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMany measures one GetMany of 20 keys: adjacent (a sync's
// read states of one group's messages), scattered, or all missing; in the
// memtable or flushed to a table.
func BenchmarkGetMany(b *testing.B) {
	for _, tt := range []struct {
		name  string
		flush bool
		key   func(i uint64) []byte
	}{
		{"adjacent/memtable", false, func(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte("k/"), 5000+i) }},
		{"adjacent/table", true, func(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte("k/"), 5000+i) }},
		{"scattered/table", true, func(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte("k/"), (i*7919)%10000) }},
		{"missing/table", true, func(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte("x/"), i*499) }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s := open10k(b)
			ctx := context.Background()
			if tt.flush {
				if err := s.db.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			keys := make([][]byte, 20)
			for i := range keys {
				keys[i] = tt.key(uint64(i))
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.GetMany(ctx, keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// open10k opens a store holding keys "k/" + 0..9999 (big-endian), 200-byte
// values, closed with b.
func open10k(b *testing.B) *Store {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	batch := &storage.Batch{}
	for i := range uint64(10000) {
		batch.Set(binary.BigEndian.AppendUint64([]byte("k/"), i), make([]byte, 200))
	}
	if err := s.Apply(context.Background(), batch, false); err != nil {
		b.Fatal(err)
	}
	return s
}
