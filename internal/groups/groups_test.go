package groups

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

func TestRecordsRoundTrip(t *testing.T) {
	g := &group{id: "g1", typ: pb.GroupType_GROUP_TYPE_MEETING, name: "名前", owner: "o", created: 1234}
	got, err := decodeMeta("g1", encodeMeta(g))
	if err != nil || got.typ != g.typ || got.name != g.name || got.owner != g.owner || got.created != g.created {
		t.Fatalf("meta: %+v %v", got, err)
	}
	for _, left := range []bool{false, true} {
		m := &member{joinedSeq: 42, joinedAt: 99}
		u, got, gotLeft, err := decodeMember(encodeMember("alice", m, left))
		if err != nil || u != "alice" || got.joinedSeq != 42 || got.joinedAt != 99 || gotLeft != left {
			t.Fatalf("member: %q %+v %v %v", u, got, gotLeft, err)
		}
	}
}

func TestCheckUsers(t *testing.T) {
	tests := []struct {
		name    string
		ids     []string
		exclude string
		want    int
		wantErr bool
	}{
		{"dedupe and exclude", []string{"a", "b", "a", "o"}, "o", 2, false},
		{"bad ID", []string{"a b"}, "", 0, true},
		{"too many", make([]string, MaxMembersPerCall+1), "", 0, true},
		{"empty", nil, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkUsers(tt.ids, tt.exclude)
			if (err != nil) != tt.wantErr || len(got) != tt.want {
				t.Fatalf("got %v, %v", got, err)
			}
		})
	}
}

func FuzzDecodeMember(f *testing.F) {
	f.Add(encodeMember("alice", &member{joinedSeq: 1, joinedAt: 2}, true))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		u, m, left, err := decodeMember(data)
		if err != nil {
			return
		}
		u2, m2, left2, err := decodeMember(encodeMember(u, m, left))
		if err != nil || u2 != u || *m2 != *m || left2 != left {
			t.Fatal("re-encoding changed the record")
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(&group{typ: 1, name: "n", owner: "o", created: 5}))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := decodeMeta("g", data)
		if err != nil {
			return
		}
		if _, err := decodeMeta("g", encodeMeta(g)); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkReadPaths measures the lookups every receipt and every
// delivery makes on its group (Member, as the messages service resolves a
// reference; Ordinal and Snapshot, as the receipt engine counts), from
// many goroutines at once on one 1,000-member group: the hot group of the
// steady benchmark. Each iteration is one Member and one Snapshot.
func BenchmarkReadPaths(b *testing.B) {
	ctx := context.Background()
	s := newNode(b, openStore(b))
	users := make([]string, 1000)
	for i := range users {
		users[i] = "u" + strconv.Itoa(i)
	}
	if _, err := s.Create(ctx, users[0], pb.GroupType_GROUP_TYPE_WORK, "g", "", users[1:]); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 7919 // goroutines start at different members
		for pb.Next() {
			i++
			if _, ok, err := s.Member(ctx, "g", users[i%len(users)]); !ok || err != nil {
				b.Fatal(ok, err)
			}
			if _, ok := s.Snapshot(ctx, "g"); !ok {
				b.Fatal("no snapshot")
			}
		}
	})
}
