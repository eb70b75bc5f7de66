// Package readmarkv1 is Readmark's wire schema, version 1: the protobuf
// messages exchanged over the client WebSocket (readmark.proto) and the error
// codes (errors.json). docs/protocol.md describes the protocol around them.
package readmarkv1

//go:generate protoc --go_out=. --go_opt=paths=source_relative readmark.proto
//go:generate go run ../../internal/tools/gencodes ../..
