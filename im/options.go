package im

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"
)

// Option configures Dial.
type Option func(*options)

type options struct {
	json       bool
	logger     *slog.Logger
	reconnect  bool
	backoffMin time.Duration
	backoffMax time.Duration
	httpClient *http.Client
	listeners  []any
	sdk        string
	deviceID   string
}

func defaultOptions() options {
	return options{
		reconnect:  true,
		backoffMin: 100 * time.Millisecond,
		backoffMax: 5 * time.Second,
		sdk:        "readmark-go/1",
		deviceID:   randomDeviceID(),
	}
}

// WithJSON makes the client speak the "readmark.v1.json" subprotocol (text
// frames in the protobuf JSON mapping) instead of binary protobuf.
func WithJSON() Option { return func(o *options) { o.json = true } }

// WithLogger sets the logger for connection events (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithReconnect turns automatic reconnection on (the default) or off. Without
// it, the client stops working once the connection is lost: every call then
// fails with CodeUnavailable.
func WithReconnect(on bool) Option { return func(o *options) { o.reconnect = on } }

// WithBackoff sets the delay between reconnection attempts: it starts at min
// and doubles up to max, with random jitter (default 100ms..5s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min <= 0 {
			min = time.Millisecond
		}
		if max < min {
			max = min
		}
		o.backoffMin, o.backoffMax = min, max
	}
}

// WithHTTPClient sets the HTTP client used for the WebSocket handshake (for
// custom TLS or proxies).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.httpClient = hc } }

// WithListener registers l before the client connects, under every listener
// interface it implements (AdvancedMsgListener, SelfReceiptListener through
// it, GroupListener, ConnListener). Use it to be sure to see OnConnected.
func WithListener(l any) Option {
	return func(o *options) { o.listeners = append(o.listeners, l) }
}

// WithSDKName sets the free-form client name sent at login, for server logs.
func WithSDKName(name string) Option { return func(o *options) { o.sdk = name } }

// WithDeviceID names this installation of the app (1..64 bytes of letters,
// digits and "_.@-#"; the server refuses others with CodeInvalidArgument at
// Dial). The server keeps, per user and device, how far the device
// acknowledged each conversation, and the sync at login starts there. Set
// it to a value stored with the installation to resume exactly where it
// stopped: what was handed to the listeners before is not reported again,
// and nothing is skipped. The default, a random ID per Client, makes each
// Client a new device, which starts at the highest seq any device of the
// user acknowledged (and leaves a device record on the server, which keeps
// it: long-running apps should set a stable ID). "" makes a device of its own for each connection,
// remembered by the server for that connection only.
func WithDeviceID(id string) Option { return func(o *options) { o.deviceID = id } }

func randomDeviceID() string {
	var b [8]byte
	rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}
