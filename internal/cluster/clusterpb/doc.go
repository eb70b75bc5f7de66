// Package clusterpb holds the protobuf envelope of requests forwarded from
// the node a client is connected to to the node that owns the request's
// partition (see package cluster).
package clusterpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative cluster.proto
