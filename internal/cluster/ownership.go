package cluster

import (
	"context"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster/clusterpb"
)

// Ownership is what the dispatcher and the services need from the cluster:
// whether this node may run an operation on a partition now, and how to
// reach the partition's owner otherwise.
type Ownership interface {
	// Enter admits an operation on partition p if this node owns it and is
	// not handing it over; release must be called once the operation is
	// done (a handoff waits for every admitted operation). ok=false: not
	// owned here, forward the request instead.
	Enter(p uint32) (release func(), ok bool)
	// Forward sends req to p's owner and returns its reply. It retries, with
	// backoff, every attempt that certainly did not run the request (the
	// receiver was not the owner, or nobody answered the subject) until ctx
	// ends. An attempt that may have run it (sent, no reply in time) is
	// retried only if idempotent. Failures are *apierr.Error with
	// CodeUnavailable.
	Forward(ctx context.Context, p uint32, req *clusterpb.Forward, idempotent bool) (*clusterpb.ForwardReply, error)
	// OnRelease registers fn, run once partition p has stopped being owned
	// here and its admitted operations have finished: fn drops p's
	// in-memory state, and submits (and waits for) whatever writes of p it
	// still has queued. On a voluntary handoff fn runs before the lease is
	// released, so those writes still commit; after a lost lease they are
	// refused by fencing. Register before the node starts.
	OnRelease(fn func(p uint32))
	// Serve registers the handler that runs forwarded requests on this node
	// (the dispatcher's local path). The node calls it only for partitions
	// it has admitted with Enter, releasing them after. Register before the
	// node starts.
	Serve(h func(ctx context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply)
}

// Local is the ownership of a single node that owns every partition, the
// embedded default: Enter always admits, nothing is ever released or
// forwarded.
func Local() Ownership { return local{} }

type local struct{}

func noop() {}

func (local) Enter(uint32) (func(), bool) { return noop, true }

func (local) Forward(context.Context, uint32, *clusterpb.Forward, bool) (*clusterpb.ForwardReply, error) {
	// Unreachable: Enter always admits.
	return nil, apierr.New(pb.CodeUnavailable, "no other node to forward to")
}

func (local) OnRelease(func(uint32)) {}

func (local) Serve(func(context.Context, *clusterpb.Forward) *clusterpb.ForwardReply) {}
