package im

import (
	"context"
	"fmt"
	"strings"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// BenchmarkSession is what one fanin member costs the SDK: dial, WebSocket
// upgrade, login, a sync of 20 group messages, one receipts call for them,
// close (with the in-process fake server's share, which the SDK does not
// change).
func BenchmarkSession(b *testing.B) {
	fs := newFake(b)
	stored := make([]*pb.Message, 20)
	for i := range stored {
		stored[i] = pbMsg(uint64(i+1), "bob", "", "grp", strings.Repeat("x", 100))
	}
	fs.setHandler(func(s *fakeSess, f *pb.ClientFrame) {
		if f.GetSync() != nil {
			s.send(syncResp(f.GetId(), false, nil, stored...))
			return
		}
		fs.defaultHandle(s, f)
	})
	msgs := receiptBatch(20)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, err := Dial(ctx, fs.url(), "u", "tok-u", WithReconnect(false))
		if err != nil {
			b.Fatal(err)
		}
		<-fs.loginReqs // the fake server blocks once 100 are unread
		<-fs.ready
		if err := c.SendMessageReadReceipts(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkCall is one request round trip on an open session: the SDK's
// per-frame cost (encode, writer, reader, decode, pending map).
func BenchmarkCall(b *testing.B) {
	fs := newFake(b)
	msgs := receiptBatch(20)
	ctx := context.Background()
	c, err := Dial(ctx, fs.url(), "u", "tok-u", WithReconnect(false))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.SendMessageReadReceipts(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
}

// receiptBatch returns n messages of one group, as a fanin member reads them.
func receiptBatch(n int) []*Message {
	msgs := make([]*Message, n)
	for i := range msgs {
		msgs[i] = &Message{MsgID: fmt.Sprint("m", i), Seq: uint64(i + 1), UserID: "bob", GroupID: "grp"}
	}
	return msgs
}
