package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/storage"
)

// ClusterConfig makes a server a node of a cluster (see package cluster).
type ClusterConfig struct {
	// Name prefixes the cluster's NATS subjects: clusters (or test runs)
	// sharing a NATS server never cross.
	Name string
	// NodeID is stable across restarts; "" = hostname:port.
	NodeID string
	// DSN and Table are the store's (pgstore): the leases and nodes tables
	// are named after Table.
	DSN   string
	Table string
	// LeaseTTL of partition leases (0 = 5 s).
	LeaseTTL time.Duration
}

// joinCluster opens the cluster node if configured (it starts once the
// services have registered their hooks), else owns everything locally.
func (s *Server) joinCluster(ctx context.Context) error {
	c := s.cfg.Cluster
	if c == nil {
		s.own = cluster.Local()
		return nil
	}
	nb, ok := s.bus.(interface{ Conn() *nats.Conn })
	if !ok {
		return fmt.Errorf("cluster: needs the NATS bus, have %T", s.bus)
	}
	id := c.NodeID
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("cluster: default node ID: %w", err)
		}
		_, port, _ := net.SplitHostPort(s.ln.Addr().String())
		id = host + ":" + port
	}
	node, err := cluster.Open(ctx, cluster.Config{
		DSN: c.DSN, Table: c.Table, NodeID: id, Cluster: c.Name, Conn: nb.Conn(),
		LeaseTTL: c.LeaseTTL, Logger: s.cfg.Logger,
		// Commits are in submission order: once an empty one is durable,
		// everything submitted before it is.
		Flush: func(ctx context.Context) error { return s.commit.Commit(ctx, func(*storage.Batch) {}) },
	})
	if err != nil {
		return err
	}
	s.node, s.own = node, node
	s.commit.Fences = holdCommits(node.Fences, s.cfg.Logger)
	s.commit.OnFail = func(err error) {
		if errors.Is(err, storage.ErrFenced) {
			node.Metrics().Fenced()
			s.cfg.Logger.Warn("commit refused: partition lease lost", "err", err)
		}
	}
	s.Registry.MustRegister(node.Metrics().Collectors()...)
	return nil
}

// role is the node's part in /healthz.
func (s *Server) role() map[string]any {
	if s.node == nil {
		return map[string]any{"role": "single", "partitions_owned": cluster.Partitions}
	}
	return map[string]any{"role": "cluster", "node_id": s.node.ID(), "partitions_owned": len(s.node.Owned())}
}
