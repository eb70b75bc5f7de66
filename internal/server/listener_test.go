package server

import (
	"io"
	"net"
	"testing"
	"time"
)

// A connection over the bound is closed at once; closing one frees a place.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first, second := <-accepted, <-accepted
	defer second.Close()
	over := dial()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection over a bound of 2: read %v, want EOF (closed by the server)", err)
	}
	first.Close()
	first.Close() // a second Close must not free a second place
	dial()
	third := <-accepted
	defer third.Close()
	if n := ln.open.Load(); n != 2 {
		t.Fatalf("open = %d, want 2", n)
	}
	ln.Close()
	for range accepted {
	}
}
