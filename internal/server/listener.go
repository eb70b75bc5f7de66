package server

import (
	"net"
	"sync"
	"sync/atomic"
)

// adminHeadroom is how many connections the listener accepts beyond
// Config.MaxConnections: the gateway refuses WebSocket connections over
// that bound, so these stay for /healthz, /metrics, the admin API and the
// refusals themselves.
const adminHeadroom = 64

// DefaultMaxConnections derives the client connection bound from the
// process's descriptor limit (RLIMIT_NOFILE; Go raises the soft limit to
// the hard one at start): all of it but a reserve for storage files, the bus,
// PostgreSQL and the admin headroom, at most 2,048 and at least half.
func DefaultMaxConnections() int {
	n := maxDescriptors()
	return n - min(n/2, 2048)
}

// limitListener keeps the connections open at once at or below max, so
// that accept never fails for want of descriptors (the HTTP server would
// then back off and stop answering anyone). A connection over max is
// closed as soon as it is accepted rather than left waiting in the backlog.
type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, max: int64(max)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		c.Close()
	}
}

// countedConn gives its place back to the listener when closed.
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
