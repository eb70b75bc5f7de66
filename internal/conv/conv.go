// Package conv names conversations and validates the IDs in them. A
// conversation key is "g:<groupID>" for a group and "c:<a>:<b>" (a < b) for
// the C2C conversation of users a and b; both parties see one key, one
// message sequence and one history.
package conv

import (
	"context"
	"errors"

	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/storage"
)

// MaxIDLen bounds user and group IDs.
const MaxIDLen = 64

// ValidID reports whether id is a valid user or group ID: 1..64 bytes of
// letters, digits and "_.@-#". The rest (':', '/', spaces) is reserved for
// keys and subjects.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == '@', c == '-', c == '#':
		default:
			return false
		}
	}
	return true
}

// CheckID returns an InvalidArgument error naming what if id is not valid.
func CheckID(what, id string) error {
	if !ValidID(id) {
		if len(id) > MaxIDLen {
			return apierr.InvalidArgument("%s of %d bytes: must be 1-%d characters of letters, digits and _.@-#", what, len(id), MaxIDLen)
		}
		return apierr.InvalidArgument("%s %q: must be 1-%d characters of letters, digits and _.@-#", what, id, MaxIDLen)
	}
	return nil
}

// Group returns the key of a group's conversation.
func Group(groupID string) string { return "g:" + groupID }

// C2C returns the key of the conversation between users a and b.
func C2C(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "c:" + a + ":" + b
}

// MessageKey is the storage key of message seq of conversation key:
// m/<conv>/<seq big-endian>.
func MessageKey(key string, seq uint64) []byte {
	return storage.AppendUint64(storage.Key("m", key), seq)
}

// MessagePrefix is the key prefix of all messages of a conversation.
func MessagePrefix(key string) []byte { return append(storage.Key("m", key), '/') }

// PeerKey is the storage key listing peer among user's C2C conversations,
// written (for both parties) with the conversation's first message:
// uc/<user>/<peer>.
func PeerKey(user, peer string) []byte { return storage.Key("uc", user, peer) }

// PeerPrefix is the key prefix of user's PeerKeys.
func PeerPrefix(user string) []byte { return append(storage.Key("uc", user), '/') }

// C2CExists reports whether user and peer have a C2C conversation (have
// exchanged a stored message).
func C2CExists(ctx context.Context, s storage.Store, user, peer string) (bool, error) {
	_, err := s.Get(ctx, PeerKey(user, peer))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// HeadSeq returns the highest stored seq of a conversation (0 if none).
func HeadSeq(ctx context.Context, s storage.Store, key string) (uint64, error) {
	heads, err := HeadSeqs(ctx, s, []string{key})
	if err != nil {
		return 0, err
	}
	return heads[0], nil
}

// HeadSeqs is HeadSeq for each of keys, in one read.
func HeadSeqs(ctx context.Context, s storage.Store, keys []string) ([]uint64, error) {
	prefixes := make([][]byte, len(keys))
	for i, k := range keys {
		prefixes[i] = MessagePrefix(k)
	}
	last, err := s.LastKeys(ctx, prefixes)
	if err != nil {
		return nil, err
	}
	heads := make([]uint64, len(keys))
	for i, k := range last {
		if k != nil {
			heads[i] = storage.Uint64Suffix(k)
		}
	}
	return heads, nil
}
