// Package wsframe reads whole WebSocket messages into pooled buffers, for
// the server's sessions and the SDK's alike: a busy connection reads
// thousands of frames a second, and a new slice for each would be most of
// what reading allocates.
package wsframe

import (
	"bytes"
	"io"
	"sync"
)

// MaxPooled bounds the buffers kept for reuse: a rare large message (a
// history or sync page) does not stay allocated after it.
const MaxPooled = 64 << 10

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Read reads the message r to its end and hands it to decode, returning
// decode's error as is. decode must copy what it keeps of msg (protobuf
// and protojson decoding do): the buffer is reused.
func Read(r io.Reader, decode func(msg []byte) error) error {
	buf := bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= MaxPooled {
			buf.Reset()
			bufs.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	return decode(buf.Bytes())
}
