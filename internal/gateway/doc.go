// Package gateway owns client sessions: the WebSocket endpoint, the login
// handshake, frame decoding in both encodings (protobuf binary and protojson
// text), handing requests to package dispatch, heartbeats and idle timeouts,
// the per-client limits (connections, sessions and request rate per user,
// requests in flight and queued output bytes per session; docs/security.md),
// and the Hub that maps users to their online sessions and feeds them pushes
// from the bus.
//
// It holds no business rules: every request goes to groups, messages or
// receipts, and their *apierr.Error comes back to the client as Error.
//
// Lock order: Hub.mu, then session.mu; Gateway.mu (the set of all sessions,
// for shutdown) and corkConn.mu (held across a socket write) are leaves.
//
// Frames: a session's writer takes what is queued (up to 256 KiB at a
// time) and writes it with the connection corked, so several frames cost
// one write call (corkConn). It frames its messages itself; the WebSocket
// library owns the handshake, reading, and the control frames it writes.
// A push to a group's members arrives once per node (bus.FanSubject) and is
// one push object shared by all their sessions here, encoded to JSON at
// most once. Responses are encoded and requests read in pooled buffers.
// Bus handlers hold Hub.mu (read) while they queue a push to each of the
// user's sessions, which never blocks: a session over its byte bound is
// marked a slow consumer and cut by a timer.
//
// Goroutines: each session owns its reader (started by ServeHTTP, which
// then returns), its writer (started by the first frame queued while none
// runs; it retires once it has waited through two sweeps, 5 to 10 s,
// so an idle session holds one goroutine) and one job per request in
// flight on a kept worker; all end before the reader does, and Shutdown
// waits for every reader. A request's slot is given back by the writer once its response
// is written, so a client that does not read stops being read. A timer
// (idle reads) and a watchdog (stuck writes), not per-frame deadline
// contexts, bound them. Requests run on kept workers (package
// workers).
package gateway
