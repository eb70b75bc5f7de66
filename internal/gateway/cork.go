package gateway

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// corkMax bounds what a corked connection holds before it writes: enough
// to make one system call of a batch of small frames, little enough to
// keep per session while it writes.
const corkMax = 64 << 10

// corkBufs holds the buffers of corked connections, taken by cork and
// given back by uncork, so that an idle session holds none.
var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, corkMax); return &b }}

// corkConn is a session's connection as the WebSocket library writes to
// it. The library flushes every message with its own write call; while
// the session's writer has the connection corked, those writes collect in
// a buffer that uncork writes with one call, so a batch of queued frames
// costs one system call, not one per frame. Control frames the library
// writes from other goroutines (pongs, a close) take their turn in the
// same byte order.
type corkConn struct {
	net.Conn
	m *Metrics

	mu     sync.Mutex // held across the write to Conn, to keep byte order
	corked bool
	buf    *[]byte // from corkBufs while corked
}

// Write implements io.Writer for the library's buffered writer.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		c.m.socketWrite()
		return c.Conn.Write(p)
	}
	held := len(*c.buf)
	if held+len(p) <= corkMax {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	// Full: what collected and p in one call (writev on TCP).
	c.m.socketWrite()
	bufs := net.Buffers{*c.buf, p}
	n, err := bufs.WriteTo(c.Conn)
	*c.buf = (*c.buf)[:0]
	return max(0, int(n)-held), err
}

// cork makes writes collect until uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		c.corked, c.buf = true, corkBufs.Get().(*[]byte)
	}
}

// uncork writes what collected, with one call, and lets later writes
// through.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return nil
	}
	err := c.flushLocked()
	*c.buf = (*c.buf)[:0]
	corkBufs.Put(c.buf)
	c.corked, c.buf = false, nil
	return err
}

// flushLocked writes the collected bytes. Lock must be held, corked set.
func (c *corkConn) flushLocked() error {
	b := *c.buf
	*c.buf = b[:0]
	if len(b) == 0 {
		return nil
	}
	c.m.socketWrite()
	_, err := c.Conn.Write(b)
	return err
}

// corkingWriter hands the WebSocket library a corkConn when it hijacks the
// HTTP connection.
type corkingWriter struct {
	http.ResponseWriter
	m    *Metrics
	conn *corkConn // set by Hijack
}

// Hijack implements http.Hijacker. The library writes through the
// returned bufio.Writer, so it is pointed at the corkConn too; net/http
// has just flushed and reset it, so it holds nothing.
func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: conn, m: w.m}
	brw.Writer.Reset(w.conn)
	return w.conn, brw, nil
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *corkingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
