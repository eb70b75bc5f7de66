package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/readmark/readmark/im"
)

// TestSDKKeepsToLimits: calls over the limits announced at login fail
// alone in the SDK with the server's codes; the connection stays up and
// requests in flight meanwhile succeed.
func TestSDKKeepsToLimits(t *testing.T) {
	ts := startServer(t)
	counter := &connCounter{}
	alice, _ := ts.dial("alice", im.WithListener(counter))
	bob, _ := ts.dial("bob")
	ctx := ctxT(t)
	gid := must[string](t)(alice.CreateGroup(ctx, im.GroupWork, "", "g", "bob"))
	got := send(t, bob, "read me", "alice", "", true)
	got.UserID, got.IsSelf = "bob", false // as alice sees it
	l := alice.Limits()
	if l.MaxBatch == 0 || l.MaxTextBytes == 0 || l.MaxFrameBytes == 0 {
		t.Fatalf("limits: %+v", l)
	}
	many := func(n int) []*im.Message {
		out := make([]*im.Message, n)
		for i := range out {
			out[i] = got
		}
		return out
	}
	longIDs := make([]string, l.MaxMembersPerCall)
	for i := range longIDs {
		longIDs[i] = fmt.Sprintf("%064d", i)
	}
	text := func(n int) *im.Message { return alice.CreateTextMessage(strings.Repeat("x", n)) }
	tests := []struct {
		name string
		code int
		call func(context.Context) error
	}{
		{"receipts: one over the batch", im.CodeTooMany, func(ctx context.Context) error {
			return alice.SendMessageReadReceipts(ctx, many(l.MaxBatch+1))
		}},
		{"receipts: a frame's worth", im.CodeTooMany, func(ctx context.Context) error {
			return alice.SendMessageReadReceipts(ctx, many(5000))
		}},
		{"receipt pull over the batch", im.CodeTooMany, func(ctx context.Context) error {
			_, err := alice.GetMessageReadReceipts(ctx, many(5000))
			return err
		}},
		{"history page", im.CodeTooMany, func(ctx context.Context) error {
			_, err := alice.GetC2CHistoryMessageList(ctx, "bob", l.MaxBatch+1, nil)
			return err
		}},
		{"member page", im.CodeTooMany, func(ctx context.Context) error {
			_, err := alice.GetGroupMessageReadMemberList(ctx, got, im.ReadMembersFilterRead, 0, l.MaxBatch+1)
			return err
		}},
		{"text over its limit", im.CodeMessageTooLarge, func(ctx context.Context) error {
			_, err := alice.SendMessage(ctx, text(l.MaxTextBytes+1), "bob", "", im.PriorityNormal, false)
			return err
		}},
		{"text over the frame limit", im.CodeMessageTooLarge, func(ctx context.Context) error {
			_, err := alice.SendMessage(ctx, text(l.MaxFrameBytes+1), "", gid, im.PriorityNormal, false)
			return err
		}},
		{"custom data", im.CodeMessageTooLarge, func(ctx context.Context) error {
			_, err := alice.SendMessage(ctx, alice.CreateCustomMessage(make([]byte, l.MaxCustomDataBytes+1)), "bob", "", im.PriorityNormal, false)
			return err
		}},
		{"invite: a frame over the limit", im.CodeInvalidArgument, func(ctx context.Context) error {
			return alice.InviteUserToGroup(ctx, gid, longIDs)
		}},
		{"profile: a frame over the limit", im.CodeInvalidArgument, func(ctx context.Context) error {
			return alice.SetSelfInfo(ctx, "", "https://x/"+strings.Repeat("y", l.MaxFrameBytes))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Requests in flight on the same connection are unaffected.
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for range 20 {
				wg.Go(func() {
					_, err := alice.GetC2CHistoryMessageList(ctx, "bob", 10, nil)
					errs <- err
				})
			}
			wantCode(t, tt.call(ctx), tt.code)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("a request in flight failed: %v", err)
				}
			}
		})
	}
	if _, err := alice.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	if counter.disconnected != 0 {
		t.Fatalf("the connection dropped %d times", counter.disconnected)
	}
}
