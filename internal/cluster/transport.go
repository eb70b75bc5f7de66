package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/cluster/clusterpb"
)

// Forwarding timing.
const (
	// forwardDeadline bounds a forward whose context has no deadline.
	forwardDeadline = 15 * time.Second
	// serveTimeout bounds running a forwarded request on the owner when the
	// sender did not say how long it waits.
	serveTimeout = forwardDeadline
	// Retries of "not executed" attempts back off from backoffMin, doubling
	// up to backoffMax, with jitter.
	backoffMin = 10 * time.Millisecond
	backoffMax = 500 * time.Millisecond
)

// receive is the NATS callback of the node's subject. It runs each request
// on a worker of the node's pool (the callback is called one message at a
// time; a goroutine of its own per request grew its stack every time: 2.8 %
// of a node's CPU in steady 5,000/s on two nodes).
func (n *Node) receive(m *nats.Msg) {
	n.servingMu.Lock()
	if n.closing {
		n.servingMu.Unlock()
		return // the sender retries: no responder, or a timeout
	}
	n.serving.Add(1)
	n.servingMu.Unlock()
	n.work.Run(func() {
		defer n.serving.Done()
		var req clusterpb.Forward
		if err := proto.Unmarshal(m.Data, &req); err != nil {
			n.cfg.Logger.Warn("cluster: undecodable forwarded request", "err", err)
			return // the sender times out: a peer of another version
		}
		timeout := serveTimeout
		if req.TimeoutMs > 0 {
			timeout = time.Duration(req.TimeoutMs) * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		reply := n.runLocal(ctx, &req)
		data, err := proto.Marshal(reply)
		if err != nil {
			n.cfg.Logger.Error("cluster: encoding a forward reply", "err", err)
			return
		}
		if err := m.Respond(data); err != nil {
			n.cfg.Logger.Warn("cluster: answering a forwarded request", "err", err)
		}
	})
}

// runLocal runs req here if its partition is admitted, else answers "not
// owner" without running it.
func (n *Node) runLocal(ctx context.Context, req *clusterpb.Forward) *clusterpb.ForwardReply {
	release, ok := n.Enter(req.Partition)
	if !ok {
		return &clusterpb.ForwardReply{NotOwner: true}
	}
	defer release()
	n.mu.Lock()
	h := n.handler
	n.mu.Unlock()
	if h == nil {
		return &clusterpb.ForwardReply{NotOwner: true}
	}
	n.m.served.Inc()
	return h(ctx, req)
}

// Forward implements Ownership.
func (n *Node) Forward(ctx context.Context, p uint32, req *clusterpb.Forward, idempotent bool) (*clusterpb.ForwardReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, forwardDeadline)
		defer cancel()
	}
	start := time.Now()
	reply, err := n.forward(ctx, p, req, idempotent)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	n.m.forwarded.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return reply, err
}

func (n *Node) forward(ctx context.Context, p uint32, req *clusterpb.Forward, idempotent bool) (*clusterpb.ForwardReply, error) {
	if p >= Partitions {
		return nil, apierr.New(pb.CodeInternal, "partition %d out of range", p)
	}
	req.Partition = p
	backoff := backoffMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			n.m.notOwner.Inc()
			// Jitter: forwarders that found the same stale route spread out.
			wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
			backoff = min(2*backoff, backoffMax)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, unavailable(ctx, p)
			}
			n.refreshSoon(ctx)
		}
		r := n.routes.Load()[p]
		if r.owner == n.cfg.NodeID {
			// The table says here (maybe stale either way): the local gate
			// decides, without a round trip.
			if reply := n.runLocal(ctx, req); !reply.NotOwner {
				return reply, nil
			}
			continue
		}
		if r.owner == "" || !r.live || r.subject == "" {
			continue // being moved or taken over
		}
		reply, err := n.request(ctx, p, r, req)
		switch {
		case err == nil && reply.NotOwner:
			continue
		case err == nil:
			return reply, nil
		case errors.Is(err, nats.ErrNoResponders):
			continue // the owner is gone: nothing ran
		case ctx.Err() != nil:
			return nil, unavailable(ctx, p)
		case errors.Is(err, errOwnerChanged):
			if idempotent {
				continue
			}
			return nil, apierr.New(pb.CodeUnavailable,
				"partition %d's owner changed before answering; the request may or may not have run", p)
		default:
			// Connection trouble: the request was not sent or not answered.
			if idempotent {
				continue
			}
			return nil, apierr.New(pb.CodeUnavailable, "forwarding to partition %d's owner: %v", p, err)
		}
	}
}

// errOwnerChanged ends an attempt whose partition moved (or whose owner's
// lease lapsed) while the reply was awaited: the old owner may or may not
// have run the request.
var errOwnerChanged = errors.New("cluster: partition owner changed during the request")

// request is one attempt: it waits for the reply until ctx ends, or until
// the routing table no longer names the owner it was sent to (the refresh
// that finds so ends it: endMoved). A slow owner is thus waited for (no
// duplicate runs), a dead one is given up once its lease is gone.
func (n *Node) request(ctx context.Context, p uint32, to route, req *clusterpb.Forward) (*clusterpb.ForwardReply, error) {
	if d, ok := ctx.Deadline(); ok {
		req.TimeoutMs = uint32(max(time.Until(d).Milliseconds(), 1))
	}
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &awaited{p: p, owner: to.owner, cancel: cancel}
	n.awaitMu.Lock()
	n.awaiting[w] = struct{}{}
	n.awaitMu.Unlock()
	defer func() {
		n.awaitMu.Lock()
		delete(n.awaiting, w)
		n.awaitMu.Unlock()
	}()
	// A refresh that stored new routes before w was registered did not see
	// it; one that stores them later will.
	if moved(n.routes.Load()[p], to.owner) {
		cancel(errOwnerChanged)
	}
	m, err := n.cfg.Conn.RequestWithContext(actx, to.subject, data)
	if err != nil {
		if cause := context.Cause(actx); errors.Is(cause, errOwnerChanged) {
			return nil, cause
		}
		return nil, err
	}
	var reply clusterpb.ForwardReply
	if err := proto.Unmarshal(m.Data, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// awaited is a request waiting for its partition's owner to reply.
type awaited struct {
	p      uint32
	owner  string
	cancel context.CancelCauseFunc
}

// moved reports whether r no longer routes to a live owner.
func moved(r route, owner string) bool { return r.owner != owner || !r.live }

// endMoved ends the requests awaiting an owner that rt no longer routes
// to. One check per routing refresh, not a timer per request: routes
// change only there.
func (n *Node) endMoved(rt *[Partitions]route) {
	n.awaitMu.Lock()
	defer n.awaitMu.Unlock()
	for w := range n.awaiting {
		if moved(rt[w.p], w.owner) {
			w.cancel(errOwnerChanged)
		}
	}
}

func unavailable(ctx context.Context, p uint32) error {
	return apierr.New(pb.CodeUnavailable, "partition %d has no reachable owner (%v)", p, context.Cause(ctx))
}
