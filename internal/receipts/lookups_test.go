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
// round trip each on PostgreSQL) of the engine's calls on states not
// cached: a read-member page, the receipt_sent flags of a sync or history
// page, get_receipts and a receipt call cost a few, whatever the number of
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
	cs.Reset()
	if sent, err = v.eng.ReceiptSent(bg, "m1", got); err != nil || !slices.Equal(sent, want) {
		t.Fatalf("receipt_sent %v, %v\nwant %v", sent, err, want)
	}
	if n := cs.Lookups(); n != 2 {
		t.Errorf("receipt_sent of %d messages, states not cached: %d lookups, want 2 (marks, read states)", len(got), n)
	}

	v.restart()
	cs.Reset()
	refs := make([]*pb.MessageRef, 40)
	for i := range refs {
		refs[i] = refFor("m0", got[i])
	}
	rs, err := v.eng.Get(bg, "m0", refs)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].ReadCount != 1 || rs[1].ReadCount != 0 {
		t.Fatalf("receipts %v, %v", rs[0], rs[1])
	}
	if n := cs.Lookups(); n != 1 {
		t.Errorf("cold get_receipts of %d group messages: %d lookups, want 1", len(refs), n)
	}

	// The sender's view of its C2C messages to m1 and two more receivers.
	c2cRefs := make([]*pb.MessageRef, 0, 26)
	for _, m := range got[40:] {
		c2cRefs = append(c2cRefs, refFor("peer", m))
	}
	for _, to := range []string{"m3", "m4", "m3"} {
		c2cRefs = append(c2cRefs, refFor("peer", v.msgs.send("peer", to, "", true)))
	}
	v.restart()
	cs.Reset()
	if rs, err = v.eng.Get(bg, "peer", c2cRefs); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.IsPeerRead != (i < 20 && want[40+i]) {
			t.Fatalf("c2c receipt %d: %v", i, r)
		}
	}
	if n := cs.Lookups(); n != 2 {
		t.Errorf("cold get_receipts of %d C2C messages to 3 receivers: %d lookups, want 2 (states, marks)", len(c2cRefs), n)
	}

	v.restart()
	cs.Reset()
	for i := range refs {
		refs[i] = refFor("m2", got[i])
	}
	if err := v.eng.Send(bg, "m2", refs); err != nil {
		t.Fatal(err)
	}
	if n := cs.Lookups(); n != 1 {
		t.Errorf("receipts for %d group messages not cached: %d lookups, want 1", len(refs), n)
	}
}
