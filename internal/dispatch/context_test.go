package dispatch

import (
	"context"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// TestRequestContext: a request that writes runs on when its caller's
// context ends (its write may be committed already); a read-only one stops.
func TestRequestContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	write := &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{}}}
	if err := requestContext(ctx, write).Err(); err != nil {
		t.Errorf("send_message's context ended with its caller's: %v", err)
	}
	read := &pb.ClientFrame{Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{}}}
	if requestContext(ctx, read).Err() == nil {
		t.Error("sync's context outlived its caller's")
	}
}
