package storagetest

import (
	"context"
	"sync/atomic"

	"github.com/readmark/readmark/internal/storage"
)

// Counting is a Store that counts the reads made through it: each Get,
// GetMany, LastKeys, ScanPrefixes and Scan is one lookup (at least one round trip on a
// networked store). Tests use it to pin how many lookups a request makes, so that a
// loop of Gets per item cannot come back unnoticed.
type Counting struct {
	storage.Store
	lookups atomic.Int64
}

// Lookups reports the lookups made since the last Reset.
func (c *Counting) Lookups() int64 { return c.lookups.Load() }

// Reset sets the count to zero.
func (c *Counting) Reset() { c.lookups.Store(0) }

// Get implements storage.Store.
func (c *Counting) Get(ctx context.Context, key []byte) ([]byte, error) {
	c.lookups.Add(1)
	return c.Store.Get(ctx, key)
}

// GetMany implements storage.Store.
func (c *Counting) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	c.lookups.Add(1)
	return c.Store.GetMany(ctx, keys)
}

// LastKeys implements storage.Store.
func (c *Counting) LastKeys(ctx context.Context, prefixes [][]byte) ([][]byte, error) {
	c.lookups.Add(1)
	return c.Store.LastKeys(ctx, prefixes)
}

// ScanPrefixes implements storage.Store.
func (c *Counting) ScanPrefixes(ctx context.Context, prefixes [][]byte, fn func(i int, k, v []byte) bool) error {
	c.lookups.Add(1)
	return c.Store.ScanPrefixes(ctx, prefixes, fn)
}

// Scan implements storage.Store.
func (c *Counting) Scan(ctx context.Context, start, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	c.lookups.Add(1)
	return c.Store.Scan(ctx, start, end, reverse, fn)
}
