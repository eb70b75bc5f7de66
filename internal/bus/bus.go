// Package bus defines how pushes reach a user's sessions wherever they are
// connected: services publish an encoded push to the user's subject and every
// node with a session of that user has subscribed to it.
//
// Implementations: membus (in-process, the embedded default) and natsbus
// (NATS, for the cluster path). Both pass bustest.Run.
package bus

import (
	"context"
	"errors"
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
	// must not block.
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
