package pgstore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/readmark/readmark/internal/storage"
)

// pool is a small bounded pool of pgx connections.
//
// It stands in for pgxpool, whose dependency (github.com/jackc/puddle/v2) is
// not in go.mod; the Store needs little of it: bounded size, reuse of idle
// connections, discarding broken ones, and a Close that waits for borrowed
// connections to come back.
//
// Lock order: mu is a leaf; it is never held while blocking on slots or on
// the network.
type pool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{} // one token per connection in use or being opened
	done  chan struct{} // closed by close

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	c     *pgx.Conn
	since time.Time
}

// idleCheck is how long a connection may sit idle before it is pinged on
// reuse; a server restart or a proxy timeout is found there instead of in the
// caller's query.
const idleCheck = 30 * time.Second

func newPool(cfg *pgx.ConnConfig, size int) *pool {
	return &pool{cfg: cfg, slots: make(chan struct{}, size), done: make(chan struct{})}
}

// acquire borrows a connection, opening one if none is idle. It fails with
// storage.ErrClosed once close has begun.
func (p *pool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-p.done:
		return nil, storage.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.slots
			return nil, storage.ErrClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if time.Since(ic.since) < idleCheck || ic.c.Ping(ctx) == nil {
			return ic.c, nil
		}
		closeConn(ic.c)
	}
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// release returns a borrowed connection; one that is broken or still inside
// a transaction is closed instead of kept.
func (p *pool) release(c *pgx.Conn) {
	reuse := !c.IsClosed() && c.PgConn().TxStatus() == 'I'
	p.mu.Lock()
	if reuse && !p.closed {
		p.idle = append(p.idle, idleConn{c: c, since: time.Now()})
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		closeConn(c)
	}
	<-p.slots
}

// close rejects new acquires, waits for borrowed connections to be released
// and closes every connection.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	for range cap(p.slots) {
		p.slots <- struct{}{}
	}
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.c)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
