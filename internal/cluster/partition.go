// Package cluster owns how conversations are spread over Readmark nodes:
// every conversation (group or C2C pair) belongs to one of a fixed number
// of partitions, and each partition has exactly one owner node at a time,
// which sequences its messages and holds its read state. On the embedded
// default the single node owns every partition.
package cluster

import "hash/fnv"

// Partitions is the fixed number of partitions. It is part of the stored
// data's layout (outbox keys, leases): changing it needs a migration.
const Partitions = 64

// Of returns the partition of a conversation key (see package conv).
func Of(convKey string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(convKey))
	return h.Sum32() % Partitions
}
