package im

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
)

// upgradeClient is the HTTP client of the WebSocket handshake unless the
// application sets its own (WithHTTPClient).
var upgradeClient = &http.Client{Transport: upgradeTransport{}}

// upgradeTransport sends a plain (ws://, unproxied) upgrade request on a TCP
// connection of its own. http.DefaultTransport, used otherwise, sets up each
// connection for reuse that an upgrade never gets: three goroutines (dial,
// read loop, write loop) and 8 KiB of buffers, discarded at the upgrade.
// wss:// and requests that the environment sends through a proxy go to
// http.DefaultTransport as before.
type upgradeTransport struct{}

func (upgradeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return http.DefaultTransport.RoundTrip(req)
	}
	if p, err := http.ProxyFromEnvironment(req); err != nil || p != nil {
		return http.DefaultTransport.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The context bounds the handshake; the WebSocket library bounds each
	// read and write after it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	var w bytes.Buffer // one write; a bytes.Buffer spares Request.Write its bufio.Writer
	br := bufio.NewReaderSize(conn, 1024)
	var resp *http.Response
	if err = req.Write(&w); err == nil {
		if _, err = conn.Write(w.Bytes()); err == nil {
			resp, err = http.ReadResponse(br, req)
		}
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = closeBoth{resp.Body, conn}
		return resp, nil
	}
	resp.Body = &upgradedConn{Conn: conn, br: br}
	return resp, nil
}

// upgradedConn is the connection after a 101 response: reads drain what
// the handshake's reader buffered, then go to the connection directly.
type upgradedConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// closeBoth is the body of a refused upgrade: closing it closes the
// connection.
type closeBoth struct {
	io.ReadCloser
	conn net.Conn
}

func (b closeBoth) Close() error {
	b.ReadCloser.Close()
	return b.conn.Close()
}
