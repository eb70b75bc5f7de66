// Package storage defines the boundary between Readmark's services and the
// database: an ordered key-value Store with atomic batches, and a Committer
// that turns many small synced writes into a few group commits.
//
// Implementations: pebblestore (embedded, the default) and pgstore
// (PostgreSQL, for the cluster path). Both pass storagetest.Run.
//
// Key space. Each service owns a key prefix; keys are built with the helpers
// in keys.go so that big-endian integers sort numerically:
//
//	g/<group>            group metadata                  (groups)
//	gm/<group>/<ord>     membership by ordinal           (groups)
//	ug/<user>/<group>    a user's groups                 (groups)
//	m/<conv>/<seq>       stored message                  (messages)
//	uc/<user>/<peer>     a user's C2C conversations      (messages)
//	mi/<conv>/<sender>/<client_msg_id>  seq of an idempotent send (messages)
//	cur/<user>/<conv>    seq delivered to the user       (messages)
//	r/...                read receipts                   (receipts)
//	s/<name>             server settings                 (admin)
//	u/<user>             user profile                    (users)
//	wo/<part>/<seq>      webhook outbox                  (webhooks)
//	wp/<seq>             parked webhook events           (webhooks)
package storage

import (
	"context"
	"errors"
	"slices"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("storage: not found")

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("storage: closed")

// ErrFenced fails a batch that relies on a partition this node no longer
// owns (a stale lease epoch, or another owner): none of its writes is
// applied. See Batch.Fence.
var ErrFenced = errors.New("storage: fenced: partition not owned by this node")

// Store is an ordered key-value store. Keys and values are arbitrary bytes;
// keys sort bytewise. All methods are safe for concurrent use.
type Store interface {
	// Get returns a copy of the value stored at key, or ErrNotFound.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// GetMany returns copies of the values stored at keys, in the order of
	// keys: nil for a missing key, a non-nil (possibly empty) slice for a
	// present one. It reads one consistent snapshot, and on a networked
	// store costs one round trip whatever the number of keys: use it
	// instead of Gets in a loop.
	GetMany(ctx context.Context, keys [][]byte) ([][]byte, error)
	// LastKeys returns, for each of prefixes, a copy of the greatest key
	// that starts with it (nil if none), in the order of prefixes. Like
	// GetMany it reads one consistent snapshot in one round trip: use it
	// instead of a reverse Scan per prefix (a conversation's head seq is
	// its last message key; a sync needs one per conversation).
	LastKeys(ctx context.Context, prefixes [][]byte) ([][]byte, error)
	// ScanPrefixes calls fn(i, key, value) for every key that starts with
	// prefixes[i], prefix by prefix in the order given and keys ascending
	// within each (a key under two prefixes comes once for each), until fn
	// returns false. Like GetMany it reads one consistent snapshot, and on
	// a networked store costs one round trip when every range is small:
	// use it instead of a Scan per prefix (a login reads five of a user's
	// small ranges). The slices passed to fn are valid only during the call.
	ScanPrefixes(ctx context.Context, prefixes [][]byte, fn func(i int, key, value []byte) bool) error
	// Scan calls fn for every key in [start, end) in ascending order (descending
	// if reverse) until fn returns false. A nil end means no upper bound. The
	// slices passed to fn are valid only during the call. Scan sees a
	// consistent snapshot: batches applied during the scan are either wholly
	// visible or not at all.
	Scan(ctx context.Context, start, end []byte, reverse bool, fn func(key, value []byte) bool) error
	// Apply writes the batch atomically: after a crash either all of its
	// operations are present or none is. With sync, Apply returns only once
	// the batch is durable; without, it may be lost in a crash (but never
	// partially).
	Apply(ctx context.Context, b *Batch, sync bool) error
	// Close flushes and releases the store. It is safe to call once.
	Close() error
}

// Op is one write of a Batch.
type Op struct {
	Key    []byte
	Value  []byte // nil with Delete
	Delete bool
}

// Batch is an ordered list of writes applied atomically by Store.Apply. A
// later write to the same key wins.
//
// Fencing (cluster path). Writes of partition-owned data (see package
// cluster) are valid only while this node owns the partition. Whoever adds
// such a write calls Fence(part); the Committer turns the recorded parts into
// Fences (partition, lease epoch) through its Fences hook right before Apply,
// and a store that shares data between nodes (pgstore) refuses the whole
// batch with ErrFenced if any of them is stale. Stores of one process
// (pebblestore) ignore fences.
type Batch struct {
	Ops []Op
	// Fences are the leases the batch relies on, filled by the Committer.
	Fences []Fence
	parts  []uint32 // recorded by Fence, distinct
	// Hooks registered by prepare functions (see OnSeal, OnApplied).
	sealers  []func(b *Batch)
	appliers []func(err error)
}

// Fence is a partition lease a batch relies on: the batch may be applied
// only while the lease row of Part still has this Epoch.
type Fence struct {
	Part  uint32
	Epoch int64
}

// Fence records that the batch writes data owned by partition part.
func (b *Batch) Fence(part uint32) {
	if !slices.Contains(b.parts, part) {
		b.parts = append(b.parts, part)
	}
}

// Parts are the partitions recorded by Fence, in first-recorded order.
func (b *Batch) Parts() []uint32 { return b.parts }

// Set adds a write of value at key. The batch keeps the slices: do not modify
// them afterwards.
func (b *Batch) Set(key, value []byte) { b.Ops = append(b.Ops, Op{Key: key, Value: value}) }

// Delete adds a deletion of key.
func (b *Batch) Delete(key []byte) { b.Ops = append(b.Ops, Op{Key: key, Delete: true}) }

// Len reports the number of writes.
func (b *Batch) Len() int { return len(b.Ops) }

// OnSeal registers fn to run once the batch is complete: after the last
// prepare gathered into it, before it is applied, on the commit goroutine.
// fn may add writes and register OnApplied hooks. Submissions that change
// the same state use it to write that state once per batch.
func (b *Batch) OnSeal(fn func(b *Batch)) { b.sealers = append(b.sealers, fn) }

// OnApplied registers fn to run on the commit goroutine once the batch is
// durable (err nil) or failed, before the done callbacks of its
// submissions.
func (b *Batch) OnApplied(fn func(err error)) { b.appliers = append(b.appliers, fn) }

// seal runs the OnSeal hooks, in registration order.
func (b *Batch) seal() {
	for _, fn := range b.sealers {
		fn(b)
	}
}

// applied runs the OnApplied hooks, in registration order.
func (b *Batch) applied(err error) {
	for _, fn := range b.appliers {
		fn(err)
	}
}

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	b.Ops = b.Ops[:0]
	b.Fences = b.Fences[:0]
	b.parts = b.parts[:0]
	clear(b.sealers)
	b.sealers = b.sealers[:0]
	clear(b.appliers)
	b.appliers = b.appliers[:0]
}
