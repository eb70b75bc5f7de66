// Package bus defines how pushes reach a user's sessions wherever they are
// connected: services publish an encoded push to the user's subject and every
// node with a session of that user has subscribed to it.
//
// Implementations: membus (in-process, the embedded default) and natsbus
// (NATS, for the cluster path). Both pass bustest.Run.
package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"iter"

	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("bus: closed")

// Bus is a best-effort publish/subscribe transport. Pushes are not its
// durability: a message or receipt is stored before it is published, and a
// session that misses a push recovers by sync or pull.
type Bus interface {
	// Publish sends data to every current subscriber of subject. The bus may
	// keep data until delivered: the caller must not modify it afterwards.
	// Messages from one publisher on one subject arrive in publish order.
	Publish(ctx context.Context, subject string, data []byte) error
	// Subscribe registers handler for subject. The handler is called from a
	// goroutine owned by the bus, one message at a time per subscription, and
	// must not block. It may keep data but must not modify it (subscribers
	// may share one slice). It must not unsubscribe its own subscription:
	// Unsubscribe waits for a handler call in progress.
	Subscribe(subject string, handler func(data []byte)) (Subscription, error)
	// Close drops all subscriptions and releases the transport.
	Close() error
}

// Subscription ends with Unsubscribe; after it returns, the handler is not
// called again.
type Subscription interface {
	Unsubscribe() error
}

// UserSubject is the subject of pushes to a user's sessions.
func UserSubject(userID string) string { return "rm.u." + userID }

// Pusher encodes push frames and publishes them to users' subjects. It is
// what services use to reach sessions. A published payload is an envelope:
// the uvarint ID of a session to skip (0 = none) followed by the encoded
// pb.ServerFrame; OpenEnvelope takes it apart.
type Pusher struct {
	Bus Bus
	// OnError, if set, observes failed publishes (pushes are best effort).
	OnError func(err error)
}

// Push sends frame to every session of userID.
func (p *Pusher) Push(userID string, frame *pb.ServerFrame) { p.PushExcept(userID, 0, frame) }

// PushExcept sends frame to every session of userID but exceptSession.
func (p *Pusher) PushExcept(userID string, exceptSession uint64, frame *pb.ServerFrame) {
	p.PushEachExcept(func(yield func(string) bool) { yield(userID) }, exceptSession, frame)
}

// PushEach sends frame to every session of each user users yields, encoding
// it once.
func (p *Pusher) PushEach(users iter.Seq[string], frame *pb.ServerFrame) {
	p.PushEachExcept(users, 0, frame)
}

// PushEachExcept is PushEach skipping the session exceptSession.
func (p *Pusher) PushEachExcept(users iter.Seq[string], exceptSession uint64, frame *pb.ServerFrame) {
	data, err := proto.MarshalOptions{}.MarshalAppend(binary.AppendUvarint(nil, exceptSession), frame)
	if err != nil {
		p.fail(err)
		return
	}
	for u := range users {
		if err := p.Bus.Publish(context.Background(), UserSubject(u), data); err != nil {
			p.fail(err)
		}
	}
}

func (p *Pusher) fail(err error) {
	if p.OnError != nil {
		p.OnError(err)
	}
}

// OpenEnvelope splits a published payload into the session to skip and the
// encoded frame.
func OpenEnvelope(data []byte) (exceptSession uint64, frame []byte, err error) {
	v, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, nil, errors.New("bus: malformed push envelope")
	}
	return v, data[n:], nil
}
