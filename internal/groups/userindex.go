package groups

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/readmark/readmark/internal/cluster"
	"github.com/readmark/readmark/internal/conv"
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
	p := UserGroupsPrefix(user)
	var out []UserGroup
	var decErr error
	err := s.store.Scan(ctx, p, storage.PrefixEnd(p), false, func(k, v []byte) bool {
		var g UserGroup
		if g, decErr = UserGroupRow(p, k, v); decErr != nil {
			return false
		}
		out = append(out, g)
		return true
	})
	if err == nil {
		err = decErr
	}
	return out, err
}

// UserGroupsPrefix is the prefix of user's rows in the index, for callers
// that read it together with other ranges (storage.Store.ScanPrefixes);
// UserGroupRow decodes each.
func UserGroupsPrefix(user string) []byte { return append(storage.Key("ug", user), '/') }

// UserGroupRow decodes a row k, v under prefix UserGroupsPrefix.
func UserGroupRow(prefix, k, v []byte) (UserGroup, error) {
	joined, ord, err := decodeUserIndex(v)
	if err != nil {
		return UserGroup{}, err
	}
	return UserGroup{GroupID: string(k[len(prefix):]), JoinedSeq: joined, Ordinal: ord}, nil
}

// userIndexMarker records that the user index was built from the
// membership records (data written before the index existed).
var userIndexMarker = storage.Key("s", "ug-built")

// migrateBatch bounds the writes of one migration batch.
const migrateBatch = 5000

// Epochs reads the lease epoch of every partition, in partition order
// (cluster.Node.Epochs); nil on a single node (no fences).
type Epochs func(ctx context.Context) ([]storage.Fence, error)

// migrateUserIndex builds ug/ from gm/ once per database. It rewrites only
// what the membership records say, so two nodes starting on one old
// database write the same entries.
//
// Fencing (cluster). A node takes partitions only once its own build is
// done or found done (the marker), and only owners change memberships. So
// each batch reads the lease epochs, then finds the marker still missing,
// then reads gm/, and carries the epochs of its groups' partitions as
// fences: if a node has taken one of them since (it passed the marker and
// may have changed a membership the batch read before), the store refuses
// the batch (a paused node's stale entry would otherwise resurrect a
// membership), and the next round finds the marker.
func migrateUserIndex(ctx context.Context, store storage.Store, epochs Epochs) error {
	p := []byte("gm/")
	for start := p; start != nil; {
		var fences []storage.Fence
		if epochs != nil {
			var err error
			if fences, err = epochs(ctx); err != nil {
				return err
			}
		}
		if _, err := store.Get(ctx, userIndexMarker); err == nil {
			return nil
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		b, next, err := userIndexBatch(ctx, store, start, storage.PrefixEnd(p))
		if err != nil {
			return err
		}
		if b.Len() > 0 {
			if fences != nil {
				for _, part := range b.Parts() {
					b.Fences = append(b.Fences, fences[part])
				}
			}
			err = store.Apply(ctx, b, false)
			if errors.Is(err, storage.ErrFenced) {
				continue // a node took a partition: it built the index
			}
			if err != nil {
				return err
			}
		}
		start = next
	}
	b := &storage.Batch{}
	b.Set(userIndexMarker, []byte{1})
	return store.Apply(ctx, b, true)
}

// userIndexBatch reads up to migrateBatch membership records from start
// (below end) and returns the index entries they make, each group's
// partition recorded with Fence, and where the next batch starts (nil at
// the end).
func userIndexBatch(ctx context.Context, store storage.Store, start, end []byte) (b *storage.Batch, next []byte, err error) {
	const prefix = len("gm/")
	b = &storage.Batch{}
	var failed error
	err = store.Scan(ctx, start, end, false, func(k, v []byte) bool {
		if b.Len() >= migrateBatch {
			next = append([]byte(nil), k...)
			return false
		}
		// k = gm/<group>/<ord be32>
		if len(k) < prefix+5 {
			failed = fmt.Errorf("membership key %q: too short", k)
			return false
		}
		user, m, left, err := decodeMember(v)
		if err != nil {
			failed = err
			return false
		}
		if !left {
			group := string(k[prefix : len(k)-5])
			m.ord = storage.Uint32Suffix(k)
			b.Fence(cluster.Of(conv.Group(group)))
			b.Set(userIndexKey(user, group), encodeUserIndex(m))
		}
		return true
	})
	if err == nil {
		err = failed
	}
	return b, next, err
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
