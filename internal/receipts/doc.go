// Package receipts is Readmark's read-receipt engine: it records who read
// which message (SendMessageReadReceipts, MarkC2CMessageAsRead), answers the
// sender's questions about its own messages (GetMessageReadReceipts,
// GetGroupMessageReadMemberList, and receipt_sent for the receiver), and
// pushes receipts to the sender's sessions as they arrive.
//
// # What it owns
//
// The r/ key space of the Store (see docs/read-state.md):
//
//	r/m/<conv>/<seq be64>                group message: set of reader ordinals (adaptive encoding)
//	r/t/<group>/<ord be32>/<first be64>  receipt log: one entry per Send call per member:
//	                                     read time, then the seqs it newly read (delta-encoded)
//	r/c/<conv>/<seq be64>                C2C message: time the receiver read it (ms)
//	r/k/<reader>/<peer be>               C2C conversation mark: reader read everything from peer up to time
//
// Messages, membership and sessions belong to other services and are reached
// through the Messages, Roster and Pusher interfaces of api.go.
//
// # Data model
//
// Group members carry small ordinals (join sequence, never reused). The read
// state of a group message is a roaring bitmap of the ordinals of members who
// read it; the unread list is derived (present ∩ [0, Watermark) − read −
// sender) and never stored. Counts are maintained: each new receipt increments
// the message's read count, cached with the roster's Departures value; a
// departure since then triggers one AndCardinality recount.
//
// Read states live in a sharded LRU (Config.CacheMessages). A Send pins the
// states it touches from validation until its write is durable, so a state
// with receipts not yet on disk is never evicted and reloaded.
//
// # Write path
//
// Send validates, loads and pins the states, and appends its request to the
// engine's pending list. At most one engine submission waits in the shared
// Committer; its prepare (on the commit goroutine) takes every pending
// request, applies the receipts to the in-memory states (deciding which are
// new, so idempotence is exact) and adds one receipt-log entry per request.
// Several submissions may be prepared into one batch (the Committer gathers
// the next batch while the previous one syncs), so the first registers the
// batch's OnSeal hook, which serializes each state dirtied in the batch once
// and snapshots the counts to push. Its done callbacks run after the synced
// Apply: the counts go to the push coalescer (OnApplied), then the waiting
// Send calls are released.
//
// Counts are snapshotted at seal, not at done: by done time the next batch
// may already be prepared, its receipts in memory but not durable. At seal
// the in-memory receipts are this batch's and its predecessors', which is
// the durable state if this batch succeeds, because of the Committer's
// failure rule: a batch prepared on top of a failed one fails too. If a
// batch fails, each submission's done rolls back the receipts it found new;
// the failed batch's dones run first, then those of the batch prepared on
// top of it (whose new receipts are disjoint from the first's), and only
// then is anything prepared again, so the states return exactly to the
// durable ones.
//
// # Pushes
//
// The coalescer limits receipt pushes per receiving user (the messages'
// sender) with a token bucket: a receipt is pushed at once while a token is
// left, else held until the next token, when one frame carries the newest
// counts of every message of that user that changed meanwhile. So a reader
// in a quiet group is seen at once, and a sender whose messages are being
// read by thousands gets at most 20 frames a second.
//
// # Goroutines
//
// The engine owns one goroutine, the coalescer's flush loop; Close stops it
// after flushing pending pushes. Everything else runs on callers' goroutines
// or on the Committer's commit goroutine (prepare, seal, done; never
// concurrently with each other).
//
// # Lock order
//
// Acquire in this order; never acquire an earlier lock while holding a later
// one:
//
//	Engine.closeMu (read side, only to register an operation)
//	Engine.markMu[i]  (MarkC2CRead; held across Committer.Commit)
//	cacheShard.mu     (leaf: never held while taking another lock)
//	Engine.pmu        (leaf: pending submissions)
//	readState.mu      (at most one at a time; taken by prepare/seal/done on the commit goroutine and by readers)
//	coalescer.mu      (Pusher.Push is called under it; Push must not block or call back into the engine)
//
// prepare and done never take Engine.markMu, so holding it across Commit
// cannot deadlock. readState.mu is never held while calling the Store, the
// Committer or the Pusher.
package receipts
