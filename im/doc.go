// Package im is the Go SDK of Readmark, an IM server with message read
// receipts. It mirrors the reference IM SDK's message API in Go style:
// synchronous calls that take a context and return an error (an *Error with
// a Code for everything the server refuses), and listeners for pushed events.
//
//	c, err := im.Dial(ctx, "ws://127.0.0.1:7700", "alice", token)
//	if err != nil { ... }
//	defer c.Close()
//	c.AddAdvancedMsgListener(myListener) // OnRecvNewMessage, OnRecvMessageReadReceipts, ...
//
//	msg := c.CreateTextMessage("hello")
//	msg.NeedReadReceipt = true
//	sent, err := c.SendMessage(ctx, msg, "", "groupA", im.PriorityNormal, false)
//
//	// on the receiving side, once the user has seen it:
//	err = c.SendMessageReadReceipts(ctx, []*im.Message{received})
//
//	// back on the sender: OnRecvMessageReadReceipts fires, or pull:
//	receipts, err := c.GetMessageReadReceipts(ctx, []*im.Message{sent})
//	page, err := c.GetGroupMessageReadMemberList(ctx, sent, im.ReadMembersFilterRead, 0, 100)
//
// # Connection
//
// Dial connects over WebSocket (path /v1/ws, binary protobuf frames, or JSON
// text frames with WithJSON), logs in and then syncs: every message stored
// for the user that this device has not acknowledged is passed to
// OnRecvNewMessage, in order per conversation, before any live message. The
// first sync page comes with the login response, saving a round trip; the
// others follow by sync requests. The
// Client acknowledges a message to the server once OnRecvNewMessage has
// returned for it (batched: on the next request the Client sends within a
// second, or else by an acknowledgement of its own, at most one a second;
// and on Close), and only then: a message synced but
// not yet handed when the Client is closed comes again. The server
// keeps what each device acknowledged, so set WithDeviceID to a stable value
// per installation to resume exactly after a restart. A
// lost connection is re-established with exponential backoff (WithReconnect,
// WithBackoff), followed by the same sync; each stored message is reported at
// most once per Client. Requests made while disconnected wait for the
// reconnection until their context ends. A request in flight when the
// connection drops, or answered CodeUnavailable (a node shutting down), is
// sent again on the next connection (up to 5 times, while its context
// lasts) if repeating it is harmless: every call but CreateGroup,
// InviteUserToGroup, JoinGroup, QuitGroup and KickGroupMember, which then
// fail with CodeUnavailable (their outcome is unknown). SendMessage is
// repeatable because it gives each send a random client_msg_id, by which
// the server stores it once. A rejected token (CodeUnauthenticated) is
// never retried. docs/protocol.md describes the wire protocol.
//
// # Several servers
//
// serverURL may list the addresses of several nodes of a cluster separated
// by commas ("ws://a:7700,ws://b:7700"). Dial starts at a random one (so
// clients spread over the nodes) and tries the others if it does not
// answer; each reconnection goes to the next address in the list, so a
// client whose node went away lands on another.
//
// # Limits
//
// The server announces its limits at login (Client.Limits). The Client
// checks requests against them before sending, so that a request over a
// limit fails alone and the connection and other requests are unaffected:
// more messages per receipt call, or a page count, over MaxBatch (or user
// IDs over MaxMembersPerCall) fail with CodeTooMany; text or custom data
// over its limit with CodeMessageTooLarge; any other request that encodes
// to more than MaxFrameBytes with CodeInvalidArgument.
//
// # Listeners
//
// Callbacks of all listeners (AdvancedMsgListener, SelfReceiptListener,
// GroupListener, ConnListener) run one at a time, in arrival order, on one
// goroutine per Client, with no SDK lock held: they may call any Client
// method, Close included. Events are held until the first listener is added,
// so a listener added right after Dial sees the synced messages; WithListener
// registers one before connecting. Only what the listeners were handed is
// acknowledged to the server (sync requests acknowledge nothing), except
// that Close of a Client that never had a listener acknowledges all it
// received: it takes no events. Messages this Client sent itself are not
// reported as new, even when a sync or push carries one before the response
// to its send: while a SendMessage to a conversation is unresolved, that
// conversation's messages from this user, and those after them, wait for it.
package im
