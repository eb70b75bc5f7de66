// Package page bounds response pages (sync, history, member lists) by
// encoded bytes as well as by count, so that no server frame exceeds
// MaxFrameBytes, the limit announced at login as
// Limits.max_server_frame_bytes. Sizes are measured in the encoding the
// caller's session speaks: the JSON mapping of a text full of control
// characters is about six times its binary size.
package page

import (
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// MaxFrameBytes is the largest frame the server sends (encoded bytes).
const MaxFrameBytes = 1 << 20

// reserve is kept free of items for the frame's own fields (id, more,
// next_seq, ...; a login response's, for a sync page riding on it: well
// under 1 KiB), fields set after an item was measured (receipt_sent) and
// the JSON encoder's varying white space.
const reserve = 64 << 10

// Budget counts the bytes of one page's items. The zero value is not
// usable; call New.
type Budget struct {
	json bool
	left int
	n    int
}

// New returns the budget of a page in JSON or binary encoding.
func New(json bool) *Budget { return &Budget{json: json, left: MaxFrameBytes - reserve} }

// Take counts item and reports whether it fits. The first item always fits
// (every single item the server stores is far below the limit), so a page
// is never empty for want of room.
func (b *Budget) Take(item proto.Message) bool {
	size := b.size(item)
	if b.n > 0 && size > b.left {
		return false
	}
	b.left -= size
	b.n++
	return true
}

// Add counts item, which the page includes whether it fits or not (small
// fixed parts such as a conversation's cursor; the reserve covers them).
func (b *Budget) Add(item proto.Message) { b.left -= b.size(item) }

// size is item's encoded size as an element of a repeated field.
func (b *Budget) size(item proto.Message) int {
	if b.json {
		data, err := protojson.Marshal(item)
		if err != nil {
			return MaxFrameBytes // cannot be encoded: never fits after the first
		}
		return len(data) + 1 // the separating comma
	}
	n := proto.Size(item)
	return protowire.SizeTag(1<<10) + protowire.SizeBytes(n)
}
