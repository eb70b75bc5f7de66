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
	// Subscribe registers handler for subject. The handler is called one
	// message at a time per subscription, from a goroutine of the bus or,
	// for a message published on the same node, from the publisher's, and
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

// FanSubject is the subject of pushes to several users (a group's
// members): every node with sessions subscribes to it and hands each such
// push to its own sessions of the users it names (OpenFan), so that a node
// gets one push per group message, encoded once for all its recipients,
// not one per member.
const FanSubject = "rm.fan"

// maxFanUsers bounds the users one fan-out payload names, and so its size:
// a larger group takes several payloads.
const maxFanUsers = 1024

// Pusher encodes push frames and publishes them. It is what services use
// to reach sessions. A push to one user goes to the user's subject as an
// envelope: the uvarint ID of a session to skip (0 = none) followed by the
// encoded pb.ServerFrame (OpenEnvelope). A push to several users goes to
// FanSubject as the same envelope with the frame's length before it and
// the users after it, each a uvarint length and the ID (OpenFan). Either
// way, one publisher's pushes to one user through one of these methods
// arrive in order: single-user pushes (Push, PushExcept) on the user's
// subject, multi-user ones (PushEach, PushEachExcept) on FanSubject.
type Pusher struct {
	Bus Bus
	// OnError, if set, observes failed publishes (pushes are best effort).
	OnError func(err error)
	// Reaches, if set, reports whether userID has a session other than
	// exceptSession: Push and PushExcept neither encode nor publish when it
	// has none (most receipts come from a reader's only session, and their
	// self_receipts push reaches nobody). Set it only where every session is
	// known, as on a single node with an in-process bus; a push racing a
	// login may then be skipped, as it may be missed anyway (pushes are
	// best effort; the new session syncs).
	Reaches func(userID string, exceptSession uint64) bool
}

// Push sends frame to every session of userID.
func (p *Pusher) Push(userID string, frame *pb.ServerFrame) { p.PushExcept(userID, 0, frame) }

// MayReach reports whether a push to userID's sessions but exceptSession
// may reach one: false only where Reaches knows it would not, so that a
// caller can skip building the frame too.
func (p *Pusher) MayReach(userID string, exceptSession uint64) bool {
	return p.Reaches == nil || p.Reaches(userID, exceptSession)
}

// PushExcept sends frame to every session of userID but exceptSession.
func (p *Pusher) PushExcept(userID string, exceptSession uint64, frame *pb.ServerFrame) {
	if !p.MayReach(userID, exceptSession) {
		return
	}
	size := proto.Size(frame)
	data := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+size), exceptSession)
	data, err := marshalSized.MarshalAppend(data, frame)
	if err != nil {
		p.fail(err)
		return
	}
	p.publish(UserSubject(userID), data)
}

// PushEach sends frame to every session of each user users yields, encoding
// it once.
func (p *Pusher) PushEach(users iter.Seq[string], frame *pb.ServerFrame) {
	p.PushEachExcept(users, 0, frame)
}

// PushEachExcept is PushEach skipping the session exceptSession. It
// publishes one payload per maxFanUsers users, which every node takes
// apart for its own sessions.
func (p *Pusher) PushEachExcept(users iter.Seq[string], exceptSession uint64, frame *pb.ServerFrame) {
	// Room for the frame and a few dozen users, in one allocation.
	size := proto.Size(frame)
	head := binary.AppendUvarint(make([]byte, 0, 2*binary.MaxVarintLen64+size+512), exceptSession)
	head = binary.AppendUvarint(head, uint64(size))
	head, err := marshalSized.MarshalAppend(head, frame)
	if err != nil {
		p.fail(err)
		return
	}
	data, n := head, 0 // the first payload grows from head
	for u := range users {
		if n == maxFanUsers {
			p.publish(FanSubject, data)
			// A fresh slice: the bus may keep what it was given.
			data, n = append(make([]byte, 0, cap(data)), head...), 0
		}
		data = binary.AppendUvarint(data, uint64(len(u)))
		data = append(data, u...)
		n++
	}
	if n > 0 {
		p.publish(FanSubject, data)
	}
}

// marshalSized encodes a frame whose proto.Size was just taken, without
// sizing it again.
var marshalSized = proto.MarshalOptions{UseCachedSize: true}

func (p *Pusher) publish(subject string, data []byte) {
	if err := p.Bus.Publish(context.Background(), subject, data); err != nil {
		p.fail(err)
	}
}

func (p *Pusher) fail(err error) {
	if p.OnError != nil {
		p.OnError(err)
	}
}

var errEnvelope = errors.New("bus: malformed push envelope")

// OpenEnvelope splits a payload published to a user's subject into the
// session to skip and the encoded frame.
func OpenEnvelope(data []byte) (exceptSession uint64, frame []byte, err error) {
	v, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, nil, errEnvelope
	}
	return v, data[n:], nil
}

// FanUsers is the list of users of a fan-out payload, checked by OpenFan.
type FanUsers []byte

// OpenFan splits a payload published to FanSubject into the session to
// skip, the encoded frame and the users it is for.
func OpenFan(data []byte) (exceptSession uint64, frame []byte, users FanUsers, err error) {
	except, data, err := OpenEnvelope(data)
	if err != nil {
		return 0, nil, nil, err
	}
	size, n := binary.Uvarint(data)
	if n <= 0 || size > uint64(len(data)-n) {
		return 0, nil, nil, errEnvelope
	}
	frame, users = data[n:n+int(size)], data[n+int(size):]
	for rest := users; len(rest) > 0; {
		size, n := binary.Uvarint(rest)
		if n <= 0 || size > uint64(len(rest)-n) {
			return 0, nil, nil, errEnvelope
		}
		rest = rest[n+int(size):]
	}
	return except, frame, users, nil
}

// All yields each user ID, as a slice of the payload.
func (l FanUsers) All() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for rest := l; len(rest) > 0; {
			size, n := binary.Uvarint(rest)
			if !yield(rest[n : n+int(size)]) {
				return
			}
			rest = rest[n+int(size):]
		}
	}
}
