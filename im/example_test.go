package im_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/readmark/readmark/im"
)

type receiptPrinter struct {
	im.BaseAdvancedMsgListener
}

func (receiptPrinter) OnRecvMessageReadReceipts(rs []*im.MessageReceipt) {
	for _, r := range rs {
		fmt.Printf("%s: %d read, %d unread\n", r.MsgID, r.ReadCount, r.UnreadCount)
	}
}

// Alice sends a group message that asks for read receipts and follows who
// read it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	token := "..." // from usersig.Gen or `readmarkd token --user alice`
	c, err := im.Dial(ctx, "ws://127.0.0.1:7700", "alice", token)
	if err != nil {
		var ie *im.Error
		if errors.As(err, &ie) && ie.Code == im.CodeUnauthenticated {
			log.Fatal("bad token")
		}
		log.Fatal(err)
	}
	defer c.Close()
	c.AddAdvancedMsgListener(receiptPrinter{})

	groupID, err := c.CreateGroup(ctx, im.GroupWork, "", "team", "bob", "carol")
	if err != nil {
		log.Fatal(err)
	}
	msg := c.CreateTextMessage("ship it?")
	msg.NeedReadReceipt = true
	sent, err := c.SendMessage(ctx, msg, "", groupID, im.PriorityNormal, false)
	if err != nil {
		log.Fatal(err)
	}

	// Pull the current state and the members who have not read it yet.
	receipts, err := c.GetMessageReadReceipts(ctx, []*im.Message{sent})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(receipts[0].ReadCount, "read so far")
	for next, done := uint64(0), false; !done; {
		page, err := c.GetGroupMessageReadMemberList(ctx, sent, im.ReadMembersFilterUnread, next, 100)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range page.Members {
			fmt.Println("unread:", m.UserID)
		}
		next, done = page.NextSeq, page.IsFinished
	}
}
