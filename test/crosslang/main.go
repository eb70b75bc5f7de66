// Command crosslang is the Go half of the cross-language test of the
// TypeScript SDK (sdk/js/test/crosslang.test.ts): a Go SDK client that sends
// a group message and reports the read receipts it gets, or reads one. It
// prints one JSON object per line on stdout for the TypeScript test to check.
//
//	crosslang --url U --user ID --token T send --group G --members a,b --expect-read N
//	crosslang --url U --user ID --token T read --group G
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/readmark/readmark/im"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "crosslang:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("crosslang", flag.ContinueOnError)
	url := fs.String("url", "", "server URL")
	user := fs.String("user", "", "user ID")
	token := fs.String("token", "", "token of the user")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return errors.New("want a mode: send or read")
	}
	mode, rest := fs.Arg(0), fs.Args()[1:]
	ms := flag.NewFlagSet(mode, flag.ContinueOnError)
	group := ms.String("group", "", "group ID")
	members := ms.String("members", "", "send: comma-separated members of the new group")
	expectRead := ms.Uint64("expect-read", 0, "send: wait for a receipt push with this read count")
	if err := ms.Parse(rest); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := &listener{msgs: make(chan *im.Message, 16), receipts: make(chan *im.MessageReceipt, 64)}
	c, err := im.Dial(ctx, *url, *user, *token, im.WithListener(l))
	if err != nil {
		return err
	}
	defer c.Close()
	switch mode {
	case "send":
		return send(ctx, c, l, *group, strings.Split(*members, ","), *expectRead)
	case "read":
		return read(ctx, c, l, *group)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

type listener struct {
	im.BaseAdvancedMsgListener
	msgs     chan *im.Message
	receipts chan *im.MessageReceipt
}

func (l *listener) OnRecvNewMessage(m *im.Message) { l.msgs <- m }

func (l *listener) OnRecvMessageReadReceipts(rs []*im.MessageReceipt) {
	for _, r := range rs {
		l.receipts <- r
	}
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// send creates a Work group, sends a message asking for receipts, reports
// every receipt push until one has read count want, then the pulled receipt.
func send(ctx context.Context, c *im.Client, l *listener, group string, members []string, want uint64) error {
	gid, err := c.CreateGroup(ctx, im.GroupWork, group, "crosslang", members...)
	if err != nil {
		return err
	}
	msg := c.CreateTextMessage("from Go")
	msg.NeedReadReceipt = true
	sent, err := c.SendMessage(ctx, msg, "", gid, im.PriorityNormal, false)
	if err != nil {
		return err
	}
	emit(map[string]any{"event": "sent", "msgID": sent.MsgID, "seq": sent.Seq})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-l.receipts:
			emit(map[string]any{"event": "receipt", "msgID": r.MsgID, "read": r.ReadCount, "unread": r.UnreadCount})
			if r.MsgID != sent.MsgID || r.ReadCount != want {
				continue
			}
			rs, err := c.GetMessageReadReceipts(ctx, []*im.Message{sent})
			if err != nil {
				return err
			}
			emit(map[string]any{"event": "pulled", "read": rs[0].ReadCount, "unread": rs[0].UnreadCount})
			return nil
		}
	}
}

// read waits for a message of the group and sends a read receipt for it.
func read(ctx context.Context, c *im.Client, l *listener, group string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-l.msgs:
			if m.GroupID != group {
				continue
			}
			emit(map[string]any{"event": "got", "msgID": m.MsgID, "seq": m.Seq, "text": m.Text, "sender": m.Sender})
			if err := c.SendMessageReadReceipts(ctx, []*im.Message{m}); err != nil {
				return err
			}
			emit(map[string]any{"event": "read"})
			return nil
		}
	}
}
