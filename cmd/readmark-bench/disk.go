package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/readmark/readmark/internal/storage/pebblestore"
)

// diskMeter measures what the receipt phase adds to the embedded store.
type diskMeter struct {
	ps      *pebblestore.Store
	before  uint64
	tables  int64             // sstable bytes before
	walIn   uint64            // WAL bytes written before
	logical map[string]uint64 // key-space prefix -> key+value bytes
	err     error
}

// startDisk flushes the memtable and records the disk usage and the
// logical size per key space; nil-safe for remote targets.
func startDisk(ctx context.Context, t *target) *diskMeter {
	d := &diskMeter{ps: t.pebble()}
	if d.ps == nil {
		return d
	}
	if d.err = d.ps.DB().Flush(); d.err != nil {
		return d
	}
	d.before = d.ps.DiskUsage()
	m := d.ps.DB().Metrics()
	d.tables, d.walIn = m.Total().TablesSize, m.WAL.BytesWritten
	d.logical, d.err = logicalBytes(ctx, d.ps)
	return d
}

func (d *diskMeter) finish(ctx context.Context, res *Result, receipts int64) error {
	if d.ps == nil {
		res.note("on-disk bytes not measured: remote server")
		return nil
	}
	if d.err != nil {
		return d.err
	}
	if receipts <= 0 {
		return nil
	}
	db := d.ps.DB()
	if err := db.Flush(); err != nil {
		return err
	}
	flushed := d.ps.DiskUsage()
	after, err := logicalBytes(ctx, d.ps)
	if err != nil {
		return err
	}
	if err := db.Compact(ctx, []byte{0}, bytes.Repeat([]byte{0xff}, 16), true); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	compacted := d.ps.DiskUsage()
	m := db.Metrics()
	res.metric("sstable_bytes_per_receipt_compacted", (float64(m.Total().TablesSize)-float64(d.tables))/float64(receipts), "B",
		"growth of the sstables alone (no WAL) after compaction / receipts")
	res.metric("wal_bytes_written_per_receipt", (float64(m.WAL.BytesWritten)-float64(d.walIn))/float64(receipts), "B",
		"WAL bytes written during the receipt phase / receipts (write cost, not space)")
	res.metric("wal_physical_mib", float64(m.WAL.PhysicalSize)/(1<<20), "MiB", "WAL files on disk at the end (included in DiskSpaceUsage; recycled, not receipt data)")
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(receipts) }
	res.metric("disk_bytes_per_receipt_flushed", per(flushed, d.before), "B",
		"(Pebble DiskSpaceUsage after the receipt phase and a memtable flush - before) / receipts")
	res.metric("disk_bytes_per_receipt_compacted", per(compacted, d.before), "B",
		"same after a full manual compaction (superseded versions dropped)")
	res.metric("logical_receipt_bytes_per_receipt", per(after["r"], d.logical["r"]), "B",
		"growth of the r/ key space (read sets + receipt log), keys+values uncompressed, / receipts")
	var parts []string
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if after[k] != d.logical[k] {
			parts = append(parts, fmt.Sprintf("%s/ %+d B", k, int64(after[k])-int64(d.logical[k])))
		}
	}
	res.metric("disk_total_mib_compacted", float64(compacted)/(1<<20), "MiB", "whole database after compaction")
	res.note("disk: DiskSpaceUsage counts sstables, WAL and manifest; 'flushed' still holds every rewritten version of the per-message read sets "+
		"(one per group commit) until compaction; 'compacted' is the steady-state cost. Logical growth by key space during the receipt phase: %s "+
		"(cur/ are the members' sync cursors written at login, not receipts).", strings.Join(parts, ", "))
	return nil
}

// logicalBytes sums key+value sizes per first key component.
func logicalBytes(ctx context.Context, ps *pebblestore.Store) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := ps.Scan(ctx, nil, []byte{0xff, 0xff, 0xff, 0xff}, false, func(k, v []byte) bool {
		p, _, _ := bytes.Cut(k, []byte("/"))
		out[string(p)] += uint64(len(k) + len(v))
		return true
	})
	return out, err
}
