// Command receipts is a self-contained tour of Readmark's read receipts: it
// starts a server in-process on a temporary directory, logs three users in
// with the im SDK, and shows a group message being read.
//
//	go run ./_examples/receipts
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/internal/server"
	"github.com/readmark/readmark/usersig"
)

// printer shows the pushes alice gets.
type printer struct{ im.BaseAdvancedMsgListener }

func (printer) OnRecvMessageReadReceipts(rs []*im.MessageReceipt) {
	for _, r := range rs {
		fmt.Printf("  push to alice: %d read, %d unread\n", r.ReadCount, r.UnreadCount)
	}
}

func main() {
	dir, err := os.MkdirTemp("", "readmark-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := server.Start(ctx, server.Config{
		Listen: "127.0.0.1:0", DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	fmt.Println("server at", srv.URL())

	dial := func(user string, opts ...im.Option) *im.Client {
		token, err := usersig.Gen(srv.Secret(), user, time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		c, err := im.Dial(ctx, srv.URL(), user, token, opts...)
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	alice := dial("alice", im.WithListener(printer{}))
	defer alice.Close()
	bob, carol := dial("bob"), dial("carol")
	defer bob.Close()
	defer carol.Close()
	if err := bob.SetSelfInfo(ctx, "Bob", ""); err != nil {
		log.Fatal(err)
	}

	group, err := alice.CreateGroup(ctx, im.GroupWork, "", "team", "bob", "carol")
	if err != nil {
		log.Fatal(err)
	}
	msg := alice.CreateTextMessage("ship it?")
	msg.NeedReadReceipt = true
	sent, err := alice.SendMessage(ctx, msg, "", group, im.PriorityNormal, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("alice sent %q (seq %d) to %s\n", sent.Text, sent.Seq, group)

	// Bob has seen it: his app sends the receipt.
	if err := bob.SendMessageReadReceipts(ctx, []*im.Message{sent}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("bob sent his read receipt")

	// Alice pulls the state and lists who read it and who has not.
	rs, err := alice.GetMessageReadReceipts(ctx, []*im.Message{sent})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pull: %d read, %d unread\n", rs[0].ReadCount, rs[0].UnreadCount)
	for _, f := range []struct {
		name   string
		filter im.GroupMessageReadMembersFilter
	}{{"read", im.ReadMembersFilterRead}, {"unread", im.ReadMembersFilterUnread}} {
		page, err := alice.GetGroupMessageReadMemberList(ctx, sent, f.filter, 0, 100)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range page.Members {
			when := "-"
			if !m.ReadTime.IsZero() {
				when = m.ReadTime.Format(time.TimeOnly)
			}
			fmt.Printf("  %s: %s %q %s\n", f.name, m.UserID, m.NickName, when)
		}
	}

	// A receipt for one's own message is refused with a typed error.
	err = alice.SendMessageReadReceipts(ctx, []*im.Message{sent})
	fmt.Println("alice acknowledging her own message:", err)
}
