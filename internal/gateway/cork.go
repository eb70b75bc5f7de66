package gateway

import (
	"bufio"
	"encoding/binary"
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

// corkConn is a session's connection. The session's writer frames its
// messages itself (writeMessage); the WebSocket library writes its control
// frames (pongs, the close handshake) through Write, from other goroutines,
// each with one call, and they take their turn in the same byte order.
// While the writer has the connection corked, frames collect in a buffer
// that uncork writes with one call, so a batch of queued frames costs one
// system call, not one per frame.
type corkConn struct {
	net.Conn
	m *Metrics

	mu     sync.Mutex // held across the write to Conn, to keep byte order
	corked bool
	buf    *[]byte // from corkBufs while corked
	// closeSent is set once the library has written a close frame: no
	// message may follow it (RFC 6455, section 5.5.1).
	closeSent bool
	hdr       [10]byte // writeMessage's frame header, here so as not to escape
}

// WebSocket frame opcodes (RFC 6455, section 5.2).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	finBit   = 0x80
)

// appendFrameHeader appends the header of a final, unmasked frame (as a
// server sends) of n payload bytes.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, finBit|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// writeMessage writes p as one unfragmented message of type op (opText,
// opBinary). The writer frames its messages itself rather than through
// the library's Write, which takes two select-based locks, defers a
// closure and copies p into its buffer to put a 2 to 10 byte header before
// it: 6 % of the CPU in a profile of a server at 20,000 receipts/s.
func (c *corkConn) writeMessage(op byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	hdr := appendFrameHeader(c.hdr[:0], op, len(p))
	if c.corked {
		_, err := c.collect(hdr, p)
		return err
	}
	// Alone: corked for this frame, so that header and payload go out
	// with one call.
	c.corkLocked()
	_, err := c.collect(hdr, p)
	if ferr := c.uncorkLocked(); err == nil {
		err = ferr
	}
	return err
}

// Write implements io.Writer for the library's buffered writer, which
// writes each of its control frames whole, with one call.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > 0 && p[0] == finBit|opClose {
		c.closeSent = true
	}
	if !c.corked {
		c.m.socketWrite()
		return c.Conn.Write(p)
	}
	return c.collect(p, nil)
}

// collect adds a and b to what the corked connection holds or, when they
// would overfill it, writes what it holds and them with one call (writev
// on TCP). It returns how many bytes of a and b it took. c.mu must be
// held and the connection corked.
func (c *corkConn) collect(a, b []byte) (int, error) {
	held := len(*c.buf)
	if held+len(a)+len(b) <= corkMax {
		*c.buf = append(append(*c.buf, a...), b...)
		return len(a) + len(b), nil
	}
	c.m.socketWrite()
	bufs := net.Buffers{*c.buf, a, b}
	n, err := bufs.WriteTo(c.Conn)
	*c.buf = (*c.buf)[:0]
	return max(0, int(n)-held), err
}

// cork makes writes collect until uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corkLocked()
}

func (c *corkConn) corkLocked() {
	if !c.corked {
		c.corked, c.buf = true, corkBufs.Get().(*[]byte)
	}
}

// uncork writes what collected, with one call, and lets later writes
// through.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uncorkLocked()
}

func (c *corkConn) uncorkLocked() error {
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
	// br is the reader the library reads frames through, set by Hijack
	// when the client sent nothing after its upgrade request.
	br *bufio.Reader
}

// controlFrameBytes is the size of a server's largest control frame: a
// 2-byte header and 125 bytes of payload (RFC 6455, section 5.5).
const controlFrameBytes = 2 + 125

// Hijack implements http.Hijacker. The library writes through the
// returned bufio.Writer, so it is pointed at the corkConn too. The library
// writes only its control frames there (the session frames its messages
// itself), so it gets a writer just big enough to hand each one to the
// corkConn with one call, not net/http's 4 KiB one (empty: net/http has
// just flushed it), which the session would keep for its whole life.
func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: conn, m: w.m}
	brw.Writer = bufio.NewWriterSize(w.conn, controlFrameBytes)
	if brw.Reader.Buffered() == 0 {
		w.br = brw.Reader
	}
	return w.conn, brw, nil
}

// readDirect points the library's reader at the connection itself, once
// Accept has returned. Accept reads the bytes net/http buffered past the
// request and then the connection through an io.MultiReader, for the
// whole session (golang/go#32314); with nothing buffered, that is an
// indirect call and a cold object more on every read of every frame.
func (w *corkingWriter) readDirect() {
	if w.br != nil {
		w.br.Reset(w.conn.Conn)
	}
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *corkingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
