// Package webhook is what a receiver of Readmark's webhooks needs: the
// payload types and Verify, which checks a POST's signature and timestamp.
//
// Every POST carries a JSON body {"events": [...]} and two headers:
// X-Readmark-Timestamp (unix seconds when it was sent) and
// X-Readmark-Signature, the lowercase hex HMAC-SHA256 of
// timestamp + "." + body under the endpoint's secret. Delivery is at least
// once: de-duplicate by Event.EventID.
//
//	func handle(w http.ResponseWriter, r *http.Request) {
//		body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
//		if err := webhook.Verify(secret, r.Header, body, 5*time.Minute); err != nil {
//			http.Error(w, err.Error(), http.StatusUnauthorized)
//			return
//		}
//		var p webhook.Payload
//		json.Unmarshal(body, &p)
//		for _, ev := range p.Events { ... }
//		w.WriteHeader(http.StatusNoContent) // any 2xx acknowledges the whole POST
//	}
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Headers of a webhook POST.
const (
	HeaderTimestamp = "X-Readmark-Timestamp"
	HeaderSignature = "X-Readmark-Signature"
)

// Event types.
const (
	GroupReadReceipt = "group.read_receipt" // new readers of a group message, with its counts after them
	C2CReadReceipt   = "c2c.read_receipt"   // the receiver read a C2C message
	C2CMarkRead      = "c2c.mark_read"      // a user marked its C2C conversation with a peer read
	MessageSent      = "message.sent"       // a message was stored
)

// Types lists every event type.
var Types = []string{GroupReadReceipt, C2CReadReceipt, C2CMarkRead, MessageSent}

// Payload is the body of a webhook POST.
type Payload struct {
	Events []Event `json:"events"`
}

// Event is one webhook event. Which fields are set depends on Type:
//
//   - group.read_receipt: GroupID, Seq, MsgID, Sender, Readers (the members
//     whose receipts this event reports), ReadCount and UnreadCount after them.
//   - c2c.read_receipt: Seq, MsgID, Sender, Receiver (the reader), ReadTimeMs.
//   - c2c.mark_read: UserID (the reader), PeerID, ReadTimeMs (every message
//     from PeerID up to then is read).
//   - message.sent: MsgID, Seq, Sender, Receiver or GroupID, NeedReadReceipt,
//     Text, CustomData.
//
// Events of one conversation arrive in the order they happened (a retried
// POST may repeat earlier ones); the counts of the last group.read_receipt
// of a message are its current counts.
type Event struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	TimeMs  int64  `json:"time_ms"`

	GroupID         string   `json:"group_id,omitempty"`
	Seq             uint64   `json:"seq,omitempty"`
	MsgID           string   `json:"msg_id,omitempty"`
	Sender          string   `json:"sender,omitempty"`
	Receiver        string   `json:"receiver,omitempty"`
	Readers         []string `json:"readers,omitempty"`
	ReadCount       *uint64  `json:"read_count,omitempty"`
	UnreadCount     *uint64  `json:"unread_count,omitempty"`
	ReadTimeMs      int64    `json:"read_time_ms,omitempty"`
	UserID          string   `json:"user_id,omitempty"`
	PeerID          string   `json:"peer_id,omitempty"`
	NeedReadReceipt bool     `json:"need_read_receipt,omitempty"`
	Text            string   `json:"text,omitempty"`
	CustomData      []byte   `json:"custom_data,omitempty"`
}

// Sign returns the signature of body sent at timestamp (unix seconds).
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: missing " + HeaderTimestamp + " or " + HeaderSignature)
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrTooOld       = errors.New("webhook: timestamp outside the tolerance window")
)

// Verify checks that body was signed with secret and sent within tolerance
// of now (either way, for clock skew), which rejects forgeries and stale
// replays. header holds the POST's headers.
func Verify(secret []byte, header http.Header, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, header, body, tolerance, time.Now())
}

func verifyAt(secret []byte, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, sig := header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return ErrNoSignature
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: bad %s %q", HeaderTimestamp, ts)
	}
	want := Sign(secret, t, body)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return ErrTooOld
	}
	return nil
}
