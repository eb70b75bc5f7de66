package messages

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
)

// Idempotent sends. A send with a client_msg_id stores
// mi/<conv>/<sender>/<client_msg_id> → seq in the same batch as the message,
// so a repeat (the SDK retrying after a lost connection, possibly on another
// node) returns the stored message. Recent sends are also remembered in
// memory, in flight included, so that a repeat racing the original waits for
// it instead of storing a second copy, and a repeat shortly after costs no
// storage read. The memory holds two generations, each dedupWindow long, so
// an entry lives between one and two windows after its send.

const dedupWindow = time.Minute

type dedupKey struct{ conv, sender, id string }

// sentMsg is one send with a client_msg_id: done is closed when msg (or
// err) is set.
type sentMsg struct {
	done chan struct{}
	msg  *pb.Message
	err  error
}

// dedup is the in-memory part; mu is a leaf lock.
type dedup struct {
	mu        sync.Mutex
	cur, prev map[dedupKey]*sentMsg
	rotated   time.Time
}

func newDedup() *dedup {
	return &dedup{cur: make(map[dedupKey]*sentMsg), prev: make(map[dedupKey]*sentMsg), rotated: time.Now()}
}

// lookup returns the remembered send of k; if there is none it registers
// fresh (which the caller must complete) and returns it with own=true.
func (d *dedup) lookup(k dedupKey, fresh *sentMsg) (sm *sentMsg, own bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := time.Now(); now.Sub(d.rotated) >= dedupWindow {
		d.prev, d.cur, d.rotated = d.cur, make(map[dedupKey]*sentMsg), now
	}
	if sm := d.cur[k]; sm != nil {
		return sm, false
	}
	if sm := d.prev[k]; sm != nil {
		return sm, false
	}
	if fresh == nil {
		return nil, false
	}
	d.cur[k] = fresh
	return fresh, true
}

// forget removes a failed send, so that a repeat runs again.
func (d *dedup) forget(k dedupKey, sm *sentMsg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur[k] == sm {
		delete(d.cur, k)
	}
	if d.prev[k] == sm {
		delete(d.prev, k)
	}
}

// drop removes the sends of the conversations for which in is true.
func (d *dedup) drop(in func(conv string) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range []map[dedupKey]*sentMsg{d.cur, d.prev} {
		for k := range m {
			if in(k.conv) {
				delete(m, k)
			}
		}
	}
}

func clientMsgKey(convKey, sender, clientMsgID string) []byte {
	return storage.Key("mi", convKey, sender, clientMsgID)
}

// sendOnce runs send unless a send with key k was done before (in memory
// or in storage), in which case it returns that send's message.
func (s *Service) sendOnce(ctx context.Context, k dedupKey, send func() (*pb.Message, error)) (*pb.Message, error) {
	if sm, _ := s.sent.lookup(k, nil); sm != nil {
		return waitSent(ctx, sm)
	}
	m, err := s.storedSend(ctx, k)
	if m != nil || err != nil {
		return m, err
	}
	fresh := &sentMsg{done: make(chan struct{})}
	sm, own := s.sent.lookup(k, fresh)
	if !own {
		return waitSent(ctx, sm)
	}
	sm.msg, sm.err = send()
	if sm.err != nil {
		s.sent.forget(k, sm)
	}
	close(sm.done)
	return sm.msg, sm.err
}

func waitSent(ctx context.Context, sm *sentMsg) (*pb.Message, error) {
	select {
	case <-sm.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if sm.err != nil {
		// The original failed; the caller may repeat it.
		return nil, sm.err
	}
	return sm.msg, nil
}

// storedSend returns the stored message of an earlier send with key k, or
// nil if there was none.
func (s *Service) storedSend(ctx context.Context, k dedupKey) (*pb.Message, error) {
	v, err := s.cfg.Store.Get(ctx, clientMsgKey(k.conv, k.sender, k.id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	seq, n := binary.Uvarint(v)
	if n <= 0 {
		return nil, errors.New("messages: corrupt client_msg_id record")
	}
	raw, err := s.cfg.Store.Get(ctx, conv.MessageKey(k.conv, seq))
	if err != nil {
		return nil, err
	}
	m, _, err := decodeStored(raw)
	return m, err
}
