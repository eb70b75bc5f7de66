// Package gateway owns client sessions: the WebSocket endpoint, the login
// handshake, frame decoding in both encodings (protobuf binary and protojson
// text), handing requests to package dispatch, per-session rate limits,
// heartbeats and idle timeouts, and the Hub that maps users to their online
// sessions and feeds them pushes from the bus.
//
// It holds no business rules: every request goes to groups, messages or
// receipts, and their *apierr.Error comes back to the client as Error.
//
// Lock order: Hub.mu, then session.mu; Gateway.mu (the set of all sessions,
// for shutdown) is a leaf. Bus handlers take Hub.mu only to find sessions,
// then enqueue without blocking.
//
// Goroutines: each session owns its reader (the ServeHTTP goroutine), its
// writer, and one goroutine per request in flight; all end before ServeHTTP
// returns. Timers, not per-frame deadline contexts, bound idle reads and
// stuck writes.
package gateway
