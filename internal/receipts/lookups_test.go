package receipts

import (
	"slices"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/storagetest"
	"github.com/readmark/readmark/internal/users"
)

// TestLookups pins the store lookups (one per Get, GetMany or Scan: a
// round trip each on PostgreSQL) of the read paths: a read-member page and
// the receipt_sent flags of a sync page cost a few, whatever the number of
// members or messages in them.
func TestLookups(t *testing.T) {
	var cs *storagetest.Counting
	var profiles *users.Service
	v := newEnv(t, func(c *Config) {
		cs = &storagetest.Counting{Store: c.Store}
		c.Store = cs
		profiles = users.New(cs, c.Committer)
		c.Profiles = profiles
	})
	v.roster.join("g", members(0, 151)...)
	m := v.msgs.send("m0", "", "g", true)
	for _, u := range members(1, 121) {
		if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := profiles.Set(bg, "m5", users.Profile{NickName: "five"}); err != nil {
		t.Fatal(err)
	}

	// What m1 received: group messages (every third read), and C2C
	// messages from a peer whose conversation m1 marked read, then more.
	var got []Msg
	var want []bool
	for i := range 40 {
		gm := v.msgs.send("m0", "", "g", true)
		if i%3 == 0 {
			if err := v.eng.Send(bg, "m1", []*pb.MessageRef{refFor("m1", gm)}); err != nil {
				t.Fatal(err)
			}
		}
		got, want = append(got, gm), append(want, i%3 == 0)
	}
	if err := v.store.Apply(bg, &storage.Batch{Ops: []storage.Op{
		{Key: conv.PeerKey("m1", "peer"), Value: []byte{}}, {Key: conv.PeerKey("peer", "m1"), Value: []byte{}},
	}}, true); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if i == 10 {
			v.clock.Add(1)
			if err := v.eng.MarkC2CRead(bg, "m1", "peer"); err != nil {
				t.Fatal(err)
			}
			v.clock.Add(1)
		}
		cm := v.msgs.send("peer", "m1", "", true)
		if i == 15 {
			if err := v.eng.Send(bg, "m1", []*pb.MessageRef{refFor("m1", cm)}); err != nil {
				t.Fatal(err)
			}
		}
		got, want = append(got, cm), append(want, i < 10 || i == 15)
	}

	v.restart() // cold caches
	cs.Reset()
	resp, err := v.eng.ReadMembers(bg, "m0", &pb.ReadMembersRequest{
		Message: refFor("m0", m), Filter: pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ, Count: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 100 || resp.Members[4].UserId != "m5" || resp.Members[4].NickName != "five" || resp.Members[0].ReadTimeMs == 0 {
		t.Fatalf("page: %d members, fifth %v, first %v", len(resp.Members), resp.Members[4], resp.Members[0])
	}
	if n := cs.Lookups(); n != 3 {
		t.Errorf("cold read-member page of 100: %d lookups, want 3 (read set, profiles, read times)", n)
	}

	cs.Reset()
	sent, err := v.eng.StoredReceiptSent(bg, "m1", got, map[string]uint32{"g": 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sent, want) {
		t.Fatalf("stored receipt_sent %v\nwant %v", sent, want)
	}
	if n := cs.Lookups(); n != 1 {
		t.Errorf("stored receipt_sent of %d messages: %d lookups, want 1", len(got), n)
	}
	if sent, err = v.eng.ReceiptSent(bg, "m1", got); err != nil || !slices.Equal(sent, want) {
		t.Fatalf("receipt_sent %v, %v\nwant %v", sent, err, want)
	}
}
