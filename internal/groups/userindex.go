package groups

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/readmark/readmark/internal/storage"
)

// The user index ug/<user>/<group> → (joined seq, ordinal) lists a user's
// current groups. It is written in the same batch as each membership
// change, so it is exact whenever storage is, and any node can read it
// without loading the groups (sync runs on the user's node, the groups on
// their owners).

func userIndexKey(user, groupID string) []byte { return storage.Key("ug", user, groupID) }

func encodeUserIndex(m *member) []byte {
	b := binary.AppendUvarint([]byte{1}, m.joinedSeq)
	return binary.AppendUvarint(b, uint64(m.ord))
}

func decodeUserIndex(v []byte) (joinedSeq uint64, ord uint32, err error) {
	r := reader{b: v}
	if r.byte() != 1 {
		return 0, 0, errors.New("user index: unknown record version")
	}
	joinedSeq = r.uvarint()
	o := r.uvarint()
	if r.err || o > uint64(^uint32(0)) {
		return 0, 0, errors.New("user index: corrupt record")
	}
	return joinedSeq, uint32(o), nil
}

// UserGroup is one of a user's groups, from the stored index.
type UserGroup struct {
	GroupID   string
	JoinedSeq uint64 // messages with seq > JoinedSeq are visible to the user
	Ordinal   uint32
}

// UserGroups lists the groups user is a member of, from storage (no group
// is loaded), in group ID order.
func (s *Service) UserGroups(ctx context.Context, user string) ([]UserGroup, error) {
	p := append(storage.Key("ug", user), '/')
	var out []UserGroup
	var decErr error
	err := s.store.Scan(ctx, p, storage.PrefixEnd(p), false, func(k, v []byte) bool {
		joined, ord, err := decodeUserIndex(v)
		if err != nil {
			decErr = err
			return false
		}
		out = append(out, UserGroup{GroupID: string(k[len(p):]), JoinedSeq: joined, Ordinal: ord})
		return true
	})
	if err == nil {
		err = decErr
	}
	return out, err
}

// userIndexMarker records that the user index was built from the
// membership records (data written before the index existed).
var userIndexMarker = storage.Key("s", "ug-built")

// migrateBatch bounds the writes of one migration batch.
const migrateBatch = 5000

// migrateUserIndex builds ug/ from gm/ once per data directory. It rewrites
// only what the membership records say, so running it twice (two nodes
// starting on one old database) writes the same entries.
func migrateUserIndex(ctx context.Context, store storage.Store) error {
	if _, err := store.Get(ctx, userIndexMarker); err == nil {
		return nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	p := []byte("gm/")
	for start := p; start != nil; {
		b := &storage.Batch{}
		var next []byte
		var failed error
		err := store.Scan(ctx, start, storage.PrefixEnd(p), false, func(k, v []byte) bool {
			if b.Len() >= migrateBatch {
				next = append([]byte(nil), k...)
				return false
			}
			// k = gm/<group>/<ord be32>
			if len(k) < len(p)+5 {
				failed = fmt.Errorf("membership key %q: too short", k)
				return false
			}
			user, m, left, err := decodeMember(v)
			if err != nil {
				failed = err
				return false
			}
			if !left {
				m.ord = storage.Uint32Suffix(k)
				b.Set(userIndexKey(user, string(k[len(p):len(k)-5])), encodeUserIndex(m))
			}
			return true
		})
		if err == nil {
			err = failed
		}
		if err == nil && b.Len() > 0 {
			err = store.Apply(ctx, b, false)
		}
		if err != nil {
			return err
		}
		start = next
	}
	b := &storage.Batch{}
	b.Set(userIndexMarker, []byte{1})
	return store.Apply(ctx, b, true)
}

// UserGroup returns user's entry of the index for one group, from storage:
// ok=false if user is not a member.
func (s *Service) UserGroup(ctx context.Context, user, groupID string) (g UserGroup, ok bool, err error) {
	v, err := s.store.Get(ctx, userIndexKey(user, groupID))
	if errors.Is(err, storage.ErrNotFound) {
		return UserGroup{}, false, nil
	}
	if err != nil {
		return UserGroup{}, false, err
	}
	joined, ord, err := decodeUserIndex(v)
	if err != nil {
		return UserGroup{}, false, err
	}
	return UserGroup{GroupID: groupID, JoinedSeq: joined, Ordinal: ord}, true, nil
}
