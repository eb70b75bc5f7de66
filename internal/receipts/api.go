package receipts

import (
	"context"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Msg is what the engine needs to know about a stored message. The messages
// service produces it.
type Msg struct {
	ID              string
	Conv            string // opaque conversation key, unique per conversation
	GroupID         string // "" for C2C
	Sender          string
	Receiver        string // C2C recipient ("" for group messages)
	Seq             uint64
	Time            time.Time
	NeedReadReceipt bool
	// Watermark (group messages): members whose ordinal is < Watermark were
	// in the group when the message was sent, and are owed a receipt.
	Watermark uint32
}

// Messages resolves message references as seen by a user.
type Messages interface {
	// Resolve returns the messages refs point to, in order. It fails with an
	// apierr NotFound (no such message, msg_id mismatch) or PermissionDenied
	// (user may not see it: not a party of the C2C conversation, not a member
	// of the group, or the message predates the membership).
	Resolve(ctx context.Context, user string, refs []*pb.MessageRef) ([]Msg, error)
}

// Roster is the engine's view of group membership. It may load a group
// from storage on first use; the groups of a message the engine works on
// are already loaded (resolving the message loaded them).
type Roster interface {
	// Ordinal returns user's membership ordinal in the group, if a member now.
	Ordinal(ctx context.Context, groupID, user string) (uint32, bool)
	// Snapshot returns the group's current membership, if the group exists.
	Snapshot(ctx context.Context, groupID string) (RosterSnapshot, bool)
}

// RosterSnapshot is an immutable view of a group's membership.
type RosterSnapshot struct {
	// Present holds the ordinals of current members. Read-only.
	Present *roaring.Bitmap
	// User maps an ordinal (present or departed) to its user.
	User func(ord uint32) (userID string, ok bool)
	// Departures increases whenever a member leaves or is kicked; read
	// counts cached under an older value must be recomputed.
	Departures uint64
}

// Pusher delivers a push frame (id 0) to every session of a user (but
// exceptSession, if not 0). It must not block; delivery is best effort (the
// state is durable and pullable).
type Pusher interface {
	Push(userID string, frame *pb.ServerFrame)
	PushExcept(userID string, exceptSession uint64, frame *pb.ServerFrame)
	// MayReach is false when a push to userID's sessions but
	// exceptSession is known to reach none: most receipts come from the
	// reader's only session, and their self_receipts push is then not
	// built at all.
	MayReach(userID string, exceptSession uint64) bool
}

// Profiles names members in read-member lists.
type Profiles interface {
	// Profiles returns the nickname and avatar URL ("" if none) of each of
	// users, in order: a page's worth in one call, so that an
	// implementation reads its store once for the lot.
	Profiles(ctx context.Context, users []string) (nickNames, faceURLs []string)
}
