package receipts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/storagetest"
)

var bg = context.Background()

// groupEnv builds group g with members m0..m(n-1); m0 sends one message.
func groupEnv(t testing.TB, n int) (*env, Msg) {
	v := newEnv(t, nil)
	v.roster.join("g", members(0, n)...)
	m := v.msgs.send("m0", "", "g", true)
	return v, m
}

func members(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("m%d", i))
	}
	return out
}

func TestSendErrors(t *testing.T) {
	v := newEnv(t, nil)
	v.roster.join("g", "alice", "bob", "carol")
	gm := v.msgs.send("alice", "", "g", true)
	gNo := v.msgs.send("alice", "", "g", false)
	v.roster.join("g", "late")
	v.roster.join("g", "gone")
	v.roster.leave("g", "gone")
	gm2 := v.msgs.send("alice", "", "g", true) // after late joined
	cm := v.msgs.send("alice", "bob", "", true)
	cmOwn := v.msgs.send("bob", "alice", "", true)

	var hundredOne []*pb.MessageRef
	for range 101 {
		hundredOne = append(hundredOne, refFor("bob", gm))
	}
	missing := refFor("bob", gm)
	missing.MsgId = "nope"
	tests := []struct {
		name   string
		reader string
		refs   []*pb.MessageRef
		code   int32
	}{
		{"empty", "bob", nil, pb.CodeInvalidArgument},
		{"too many", "bob", hundredOne, pb.CodeTooMany},
		{"mixed conversations", "bob", []*pb.MessageRef{refFor("bob", gm), refFor("bob", cm)}, pb.CodeInvalidArgument},
		{"no conversation", "bob", []*pb.MessageRef{{Seq: 1, MsgId: "x"}}, pb.CodeInvalidArgument},
		{"not found", "bob", []*pb.MessageRef{missing}, pb.CodeNotFound},
		{"own group message", "alice", []*pb.MessageRef{refFor("alice", gm)}, pb.CodeReceiptOwnMessage},
		{"own c2c message", "bob", []*pb.MessageRef{refFor("bob", cmOwn)}, pb.CodeReceiptOwnMessage},
		{"no receipt requested", "bob", []*pb.MessageRef{refFor("bob", gm), refFor("bob", gNo)}, pb.CodeMessageNoReceipt},
		{"joined after the message", "late", []*pb.MessageRef{refFor("late", gm)}, pb.CodePermissionDenied},
		{"not a member", "gone", []*pb.MessageRef{refFor("gone", gm2)}, pb.CodePermissionDenied},
		{"one bad of several", "late", []*pb.MessageRef{refFor("late", gm2), refFor("late", gm)}, pb.CodePermissionDenied},
		{"ok", "bob", []*pb.MessageRef{refFor("bob", gm)}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := codeOf(v.eng.Send(bg, tc.reader, tc.refs)); got != tc.code {
				t.Fatalf("code %d, want %d", got, tc.code)
			}
		})
	}
	// Nothing of the failed calls was recorded: gm2 has no reader.
	rs, err := v.eng.Get(bg, "alice", []*pb.MessageRef{refFor("alice", gm), refFor("alice", gm2)})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].ReadCount != 1 || rs[1].ReadCount != 0 {
		t.Fatalf("read counts %d, %d; want 1, 0", rs[0].ReadCount, rs[1].ReadCount)
	}
}

func TestGetErrors(t *testing.T) {
	v := newEnv(t, nil)
	v.roster.join("g", "alice", "bob")
	gm := v.msgs.send("alice", "", "g", true)
	gNo := v.msgs.send("alice", "", "g", false)
	var many []*pb.MessageRef
	for range 101 {
		many = append(many, refFor("alice", gm))
	}
	tests := []struct {
		name string
		user string
		refs []*pb.MessageRef
		code int32
	}{
		{"empty", "alice", nil, pb.CodeInvalidArgument},
		{"too many", "alice", many, pb.CodeTooMany},
		{"not own", "bob", []*pb.MessageRef{refFor("bob", gm)}, pb.CodePermissionDenied},
		{"no receipt", "alice", []*pb.MessageRef{refFor("alice", gNo)}, pb.CodeMessageNoReceipt},
		{"ok 100", "alice", many[:100], 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.eng.Get(bg, tc.user, tc.refs)
			if got := codeOf(err); got != tc.code {
				t.Fatalf("code %d (%v), want %d", got, err, tc.code)
			}
		})
	}
}

func TestReadMembersErrors(t *testing.T) {
	v := newEnv(t, nil)
	v.roster.join("g", "alice", "bob")
	gm := v.msgs.send("alice", "", "g", true)
	gNo := v.msgs.send("alice", "", "g", false)
	cm := v.msgs.send("alice", "bob", "", true)
	tests := []struct {
		name string
		user string
		req  *pb.ReadMembersRequest
		code int32
	}{
		{"count 0", "alice", &pb.ReadMembersRequest{Message: refFor("alice", gm)}, pb.CodeTooMany},
		{"count 101", "alice", &pb.ReadMembersRequest{Message: refFor("alice", gm), Count: 101}, pb.CodeTooMany},
		{"no message", "alice", &pb.ReadMembersRequest{Count: 10}, pb.CodeInvalidArgument},
		{"c2c", "alice", &pb.ReadMembersRequest{Message: refFor("alice", cm), Count: 10}, pb.CodeInvalidArgument},
		{"not own", "bob", &pb.ReadMembersRequest{Message: refFor("bob", gm), Count: 10}, pb.CodePermissionDenied},
		{"no receipt", "alice", &pb.ReadMembersRequest{Message: refFor("alice", gNo), Count: 10}, pb.CodeMessageNoReceipt},
		{"ok", "alice", &pb.ReadMembersRequest{Message: refFor("alice", gm), Count: 100, Filter: pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.eng.ReadMembers(bg, tc.user, tc.req)
			if got := codeOf(err); got != tc.code {
				t.Fatalf("code %d (%v), want %d", got, err, tc.code)
			}
		})
	}
}

func TestC2CReceipt(t *testing.T) {
	v := newEnv(t, nil)
	m := v.msgs.send("alice", "bob", "", true)
	m2 := v.msgs.send("alice", "bob", "", true)
	if err := v.eng.Send(bg, "bob", []*pb.MessageRef{refFor("bob", m)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "receipt push to alice", func() bool { return len(v.push.receipts("alice", m.ID)) == 1 })
	r := v.push.receipts("alice", m.ID)[0]
	if r.UserId != "bob" || !r.IsPeerRead || r.Seq != m.Seq || r.GroupId != "" {
		t.Fatalf("push %v", r)
	}
	self := v.push.selfRefs("bob")
	if len(self) != 1 || self[0].GetConversation().GetPeerId() != "alice" || self[0].MsgId != m.ID {
		t.Fatalf("self receipts %v", self)
	}
	rs, err := v.eng.Get(bg, "alice", []*pb.MessageRef{refFor("alice", m), refFor("alice", m2)})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].IsPeerRead || rs[0].UserId != "bob" || rs[1].IsPeerRead {
		t.Fatalf("get %v", rs)
	}
	sent, err := v.eng.ReceiptSent(bg, "bob", []Msg{m, m2})
	if err != nil || !sent[0] || sent[1] {
		t.Fatalf("receipt sent %v %v", sent, err)
	}

	// Idempotent: a second receipt pushes nothing and writes nothing.
	if err := v.eng.Send(bg, "bob", []*pb.MessageRef{refFor("bob", m)}); err != nil {
		t.Fatal(err)
	}
	v.close() // flushes pending pushes
	if n := len(v.push.receipts("alice", m.ID)); n != 1 {
		t.Fatalf("%d pushes after a repeated receipt, want 1", n)
	}
	if n := len(v.push.selfRefs("bob")); n != 1 {
		t.Fatalf("%d self receipts after a repeated receipt, want 1", n)
	}
}

func TestMarkC2CRead(t *testing.T) {
	v := newEnv(t, nil)
	v.clock.Store(1000)
	m1 := v.msgs.send("alice", "bob", "", true)
	if code := codeOf(v.eng.MarkC2CRead(bg, "bob", "bob")); code != pb.CodeInvalidArgument {
		t.Fatalf("self mark: code %d", code)
	}
	// The messages service lists the conversation with its first message.
	if code := codeOf(v.eng.MarkC2CRead(bg, "bob", "alice")); code != pb.CodeNotFound {
		t.Fatalf("mark without a conversation: code %d", code)
	}
	if p := v.push.c2cRead("alice"); len(p) != 0 {
		t.Fatalf("pushed %v without a conversation", p)
	}
	if err := v.store.Apply(bg, &storage.Batch{Ops: []storage.Op{
		{Key: conv.PeerKey("alice", "bob"), Value: []byte{}}, {Key: conv.PeerKey("bob", "alice"), Value: []byte{}},
	}}, true); err != nil {
		t.Fatal(err)
	}
	v.clock.Store(2000)
	if err := v.eng.MarkC2CRead(bg, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	v.clock.Store(3000)
	m2 := v.msgs.send("alice", "bob", "", true)
	pushes := v.push.c2cRead("alice")
	if len(pushes) != 1 || pushes[0].UserId != "bob" || pushes[0].TimeMs != 2000 {
		t.Fatalf("c2c read pushes %v", pushes)
	}
	check := func(when string) {
		t.Helper()
		rs, err := v.eng.Get(bg, "alice", []*pb.MessageRef{refFor("alice", m1), refFor("alice", m2)})
		if err != nil {
			t.Fatal(err)
		}
		if !rs[0].IsPeerRead || rs[1].IsPeerRead {
			t.Fatalf("%s: is_peer_read %v, %v; want true, false", when, rs[0].IsPeerRead, rs[1].IsPeerRead)
		}
		sent, err := v.eng.ReceiptSent(bg, "bob", []Msg{m1, m2})
		if err != nil || !sent[0] || sent[1] {
			t.Fatalf("%s: receipt sent %v %v", when, sent, err)
		}
	}
	check("after mark")
	// A mark with an earlier clock does not move the time back.
	v.clock.Store(1500)
	if err := v.eng.MarkC2CRead(bg, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	if p := v.push.c2cRead("alice"); p[len(p)-1].TimeMs != 2000 {
		t.Fatalf("mark moved back: %v", p)
	}
	v.restart()
	check("after restart")
}

func getOne(t testing.TB, v *env, user string, m Msg) *pb.MessageReceipt {
	t.Helper()
	rs, err := v.eng.Get(bg, user, []*pb.MessageRef{refFor(user, m)})
	if err != nil {
		t.Fatal(err)
	}
	return rs[0]
}

func TestGroupCounts(t *testing.T) {
	v := newEnv(t, nil)
	v.roster.join("g", "o", "a", "b", "c", "d") // o sends
	m := v.msgs.send("o", "", "g", true)
	v.roster.join("g", "late")
	send := func(u string) error { return v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}) }
	want := func(read, unread uint64) {
		t.Helper()
		r := getOne(t, v, "o", m)
		if r.ReadCount != read || r.UnreadCount != unread || r.GroupId != "g" {
			t.Fatalf("counts %d/%d, want %d/%d", r.ReadCount, r.UnreadCount, read, unread)
		}
	}
	want(0, 4)
	if code := codeOf(send("late")); code != pb.CodePermissionDenied {
		t.Fatalf("later joiner: code %d", code)
	}
	for _, u := range []string{"a", "b"} {
		if err := send(u); err != nil {
			t.Fatal(err)
		}
	}
	want(2, 2)
	v.roster.leave("g", "a") // a reader leaves
	want(1, 2)
	v.roster.leave("g", "c") // a non-reader leaves
	want(1, 1)
	v.roster.join("g", "a") // re-join: new ordinal, not addressed
	if code := codeOf(send("a")); code != pb.CodePermissionDenied {
		t.Fatalf("re-joined member: code %d", code)
	}
	want(1, 1)
	if err := send("d"); err != nil {
		t.Fatal(err)
	}
	want(2, 0)
	waitFor(t, "final push", func() bool {
		p := v.push.receipts("o", m.ID)
		return len(p) > 0 && p[len(p)-1].ReadCount == 2 && p[len(p)-1].UnreadCount == 0
	})
	v.roster.leave("g", "o") // the sender leaves: it was never counted
	want(2, 0)
}

// walk pages through a ReadMembers list and returns the ordinals' users.
func walk(t testing.TB, v *env, m Msg, filter pb.ReadMembersFilter, page uint32) ([]*pb.GroupMember, int) {
	t.Helper()
	var all []*pb.GroupMember
	var next uint64
	pages := 0
	for {
		resp, err := v.eng.ReadMembers(bg, m.Sender, &pb.ReadMembersRequest{Message: refFor(m.Sender, m), Filter: filter, NextSeq: next, Count: page})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, resp.Members...)
		if resp.IsFinished {
			return all, pages
		}
		if len(resp.Members) == 0 {
			t.Fatal("empty page that is not the last")
		}
		if resp.NextSeq <= next {
			t.Fatalf("cursor went from %d to %d", next, resp.NextSeq)
		}
		next = resp.NextSeq
	}
}

func userIDs(ms []*pb.GroupMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.UserId)
	}
	return out
}

func TestReadMembersPaging(t *testing.T) {
	v, m := groupEnv(t, 211)
	var wantRead, wantUnread []string
	for i := 1; i < 211; i++ {
		u := fmt.Sprintf("m%d", i)
		if i%3 == 0 {
			v.clock.Add(7)
			if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
				t.Fatal(err)
			}
			wantRead = append(wantRead, u)
		} else {
			wantUnread = append(wantUnread, u)
		}
	}
	v.roster.join("g", "late1", "late2")
	for _, page := range []uint32{1, 7, 10, 70, 100} {
		read, pages := walk(t, v, m, pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ, page)
		if got := userIDs(read); !slices.Equal(got, wantRead) {
			t.Fatalf("page %d: read %v\nwant %v", page, got, wantRead)
		}
		if wantPages := (len(wantRead) + int(page) - 1) / int(page); pages != wantPages {
			t.Errorf("page %d: %d read pages, want %d", page, pages, wantPages)
		}
		for i, r := range read {
			if r.ReadTimeMs != 1_000_000+7*int64(i+1) {
				t.Fatalf("read time of %s: %d", r.UserId, r.ReadTimeMs)
			}
		}
		unread, _ := walk(t, v, m, pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD, page)
		if got := userIDs(unread); !slices.Equal(got, wantUnread) {
			t.Fatalf("page %d: unread %v\nwant %v", page, got, wantUnread)
		}
	}
	r := getOne(t, v, "m0", m)
	if int(r.ReadCount) != len(wantRead) || int(r.UnreadCount) != len(wantUnread) {
		t.Fatalf("counts %d/%d", r.ReadCount, r.UnreadCount)
	}
}

// TestReadMembersConcurrent walks both lists while members keep reading:
// nobody appears twice, and everyone in the list for the whole walk appears.
func TestReadMembersConcurrent(t *testing.T) {
	const n = 600
	v, m := groupEnv(t, n)
	// Half read before the walk.
	order := rand.Perm(n - 1)
	for _, i := range order[:n/2] {
		u := fmt.Sprintf("m%d", i+1)
		if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
			t.Fatal(err)
		}
	}
	before := make(map[string]bool)
	for _, i := range order[:n/2] {
		before[fmt.Sprintf("m%d", i+1)] = true
	}
	late := order[n/2:]
	lateSet := make(map[string]bool)
	for _, i := range late[:len(late)/2] {
		lateSet[fmt.Sprintf("m%d", i+1)] = true
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for j := w; j < len(late)/2; j += 4 {
				u := fmt.Sprintf("m%d", late[j]+1)
				if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	read, _ := walk(t, v, m, pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ, 9)
	unread, _ := walk(t, v, m, pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD, 9)
	wg.Wait()
	seen := make(map[string]bool)
	for _, r := range read {
		if seen[r.UserId] {
			t.Fatalf("%s twice in the read list", r.UserId)
		}
		seen[r.UserId] = true
	}
	for u := range before {
		if !seen[u] {
			t.Fatalf("%s read before the walk but is missing", u)
		}
	}
	seen = make(map[string]bool)
	for _, r := range unread {
		if seen[r.UserId] || before[r.UserId] {
			t.Fatalf("%s twice in the unread list, or read before the walk", r.UserId)
		}
		seen[r.UserId] = true
	}
	for _, i := range late[len(late)/2:] {
		if u := fmt.Sprintf("m%d", i+1); !seen[u] {
			t.Fatalf("%s never read but is missing from the unread list", u)
		}
	}
}

// TestCoalescing: 1,000 members read one message at once; the sender gets
// far fewer pushes than receipts, counts never go backwards and the last
// push is exact.
func TestCoalescing(t *testing.T) {
	const n = 1001
	v, m := groupEnv(t, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		u := fmt.Sprintf("m%d", i)
		wg.Go(func() {
			if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitFor(t, "exact final push", func() bool {
		p := v.push.receipts("m0", m.ID)
		return len(p) > 0 && p[len(p)-1].ReadCount == n-1
	})
	p := v.push.receipts("m0", m.ID)
	for i, r := range p {
		if r.ReadCount+r.UnreadCount != n-1 {
			t.Fatalf("push %d: %d+%d != %d", i, r.ReadCount, r.UnreadCount, n-1)
		}
		if i > 0 && r.ReadCount < p[i-1].ReadCount {
			t.Fatalf("push %d went back: %d after %d", i, r.ReadCount, p[i-1].ReadCount)
		}
	}
	if len(p) > (n-1)/10 {
		t.Fatalf("%d pushes for %d receipts", len(p), n-1)
	}
	t.Logf("%d pushes for %d receipts", len(p), n-1)
	if last := p[len(p)-1]; last.UnreadCount != 0 {
		t.Fatalf("last push %v", last)
	}
}

// TestPushAtOnce: while the sender has tokens, each receipt is pushed by
// the time its Send returns, also for a message pushed a moment ago.
func TestPushAtOnce(t *testing.T) {
	v, m := groupEnv(t, 4)
	for i := 1; i < 4; i++ {
		u := fmt.Sprintf("m%d", i)
		if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
			t.Fatal(err)
		}
		if p := v.push.receipts("m0", m.ID); len(p) != i || p[i-1].ReadCount != uint64(i) {
			t.Fatalf("after receipt %d: pushes %v", i, p)
		}
	}
}

func TestRestart(t *testing.T) {
	v, m := groupEnv(t, 50)
	c := v.msgs.send("m0", "m1", "", true)
	for i := 1; i < 50; i += 2 {
		u := fmt.Sprintf("m%d", i)
		v.clock.Add(1000)
		if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.eng.Send(bg, "m1", []*pb.MessageRef{refFor("m1", c)}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() ([]*pb.MessageReceipt, []*pb.GroupMember, []*pb.GroupMember) {
		rs, err := v.eng.Get(bg, "m0", []*pb.MessageRef{refFor("m0", m), refFor("m0", c)})
		if err != nil {
			t.Fatal(err)
		}
		read, _ := walk(t, v, m, pb.ReadMembersFilter_READ_MEMBERS_FILTER_READ, 10)
		unread, _ := walk(t, v, m, pb.ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD, 10)
		return rs, read, unread
	}
	rs1, r1, u1 := snapshot()
	v.restart()
	rs2, r2, u2 := snapshot()
	for i := range rs1 {
		if rs1[i].String() != rs2[i].String() {
			t.Fatalf("receipt %d: %v, after restart %v", i, rs1[i], rs2[i])
		}
	}
	if len(r1) != 25 || len(r1) != len(r2) || len(u1) != len(u2) {
		t.Fatalf("lists %d/%d, after restart %d/%d", len(r1), len(u1), len(r2), len(u2))
	}
	for i := range r1 {
		if r1[i].UserId != r2[i].UserId || r1[i].ReadTimeMs != r2[i].ReadTimeMs || r1[i].ReadTimeMs == 0 {
			t.Fatalf("read member %d: %v, after restart %v", i, r1[i], r2[i])
		}
	}
	// Receipts still idempotent after restart.
	if err := v.eng.Send(bg, "m1", []*pb.MessageRef{refFor("m1", m)}); err != nil {
		t.Fatal(err)
	}
	if r := getOne(t, v, "m0", m); r.ReadCount != 25 {
		t.Fatalf("read count %d after a repeated receipt", r.ReadCount)
	}
}

// TestReadTimeLog: a member's receipts spread over several calls; each seq
// finds the time of the call that first read it.
func TestReadTimeLog(t *testing.T) {
	v := newEnv(t, nil)
	v.roster.join("g", "o", "a")
	var ms []Msg
	for range 12 {
		ms = append(ms, v.msgs.send("o", "", "g", true))
	}
	calls := [][]int{{4, 9}, {6}, {0, 9, 11}, {1, 2, 3}, {4, 5, 7, 8, 10}}
	readAt := make(map[int]int64)
	for ci, call := range calls {
		v.clock.Store(int64(10_000 * (ci + 1)))
		var refs []*pb.MessageRef
		for _, i := range call {
			refs = append(refs, refFor("a", ms[i]))
			if _, ok := readAt[i]; !ok {
				readAt[i] = v.clock.Load()
			}
		}
		if err := v.eng.Send(bg, "a", refs); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range ms {
		resp, err := v.eng.ReadMembers(bg, "o", &pb.ReadMembersRequest{Message: refFor("o", m), Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Members) != 1 || resp.Members[0].ReadTimeMs != readAt[i] {
			t.Fatalf("message %d: %v, want read at %d", i, resp.Members, readAt[i])
		}
	}
	// The self push lists only what was new in each call.
	if got := len(v.push.selfRefs("a")); got != 12 {
		t.Fatalf("%d self refs, want 12", got)
	}
}

// TestCacheEviction runs with a tiny cache so states are evicted and
// reloaded between calls.
func TestCacheEviction(t *testing.T) {
	v := newEnv(t, func(c *Config) { c.CacheMessages = 16 })
	v.roster.join("g", members(0, 20)...)
	var ms []Msg
	for range 60 {
		ms = append(ms, v.msgs.send("m0", "", "g", true))
	}
	var wg sync.WaitGroup
	for r := 1; r < 20; r++ {
		wg.Go(func() {
			u := fmt.Sprintf("m%d", r)
			for i, m := range ms {
				if i%r == 0 {
					if err := v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for i, m := range ms {
		want := 0
		for r := 1; r < 20; r++ {
			if i%r == 0 {
				want++
			}
		}
		if r := getOne(t, v, "m0", m); int(r.ReadCount) != want || int(r.ReadCount+r.UnreadCount) != 19 {
			t.Fatalf("message %d: %d/%d, want %d read", i, r.ReadCount, r.UnreadCount, want)
		}
	}
}

func TestClosed(t *testing.T) {
	v, m := groupEnv(t, 3)
	v.close()
	if code := codeOf(v.eng.Send(bg, "m1", []*pb.MessageRef{refFor("m1", m)})); code != pb.CodeUnavailable {
		t.Fatalf("send after close: code %d", code)
	}
}

// holdStore hands each Apply to the test while hold is set: it signals
// applying and returns what the test sends on release.
type holdStore struct {
	storage.Store
	hold     atomic.Bool
	applying chan struct{}
	release  chan error
}

func (s *holdStore) Apply(ctx context.Context, b *storage.Batch, sync bool) error {
	if s.hold.Load() {
		s.applying <- struct{}{}
		if err := <-s.release; err != nil {
			return err
		}
	}
	return s.Store.Apply(ctx, b, sync)
}

// newHoldEnv is newEnv over a holdStore, seen by the engine through wrap
// (if set), and a Committer of its own; the engine and the Committer close
// when the test ends. Failed commits are not logged: tests cause them.
func newHoldEnv(t *testing.T, wrap func(storage.Store) storage.Store) (*env, *holdStore, *storage.Committer) {
	hs := &holdStore{applying: make(chan struct{}), release: make(chan error)}
	var com *storage.Committer
	v := newEnv(t, func(c *Config) {
		hs.Store = c.Store
		if wrap != nil {
			c.Store = wrap(hs)
		}
		com = storage.NewCommitter(hs, 0)
		c.Committer = com
		c.Logger = slog.New(slog.DiscardHandler)
	})
	t.Cleanup(func() {
		v.eng.Close()
		com.Close()
	})
	return v, hs, com
}

// TestPipelinedCommitFailure: receipts are prepared into the next group
// commit while the previous one syncs. Pushed counts are those of durable
// state only; when a commit fails, so does the one prepared on top of it,
// both are rolled back, and the counts are exact afterwards (in memory, on
// disk, pushed).
func TestPipelinedCommitFailure(t *testing.T) {
	boom := errors.New("boom")
	v, hs, com := newHoldEnv(t, nil)
	v.roster.join("g", "alice", "bob", "carol", "dave")
	m := v.msgs.send("alice", "", "g", true)
	send := func(u string) <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}) }()
		return ch
	}
	prepared := func(n uint64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d receipts prepared", n), func() bool { return getOne(t, v, "alice", m).ReadCount == n })
	}

	hs.hold.Store(true)
	bob := send("bob")
	<-hs.applying // bob's commit syncs
	carol := send("carol")
	prepared(2) // into the next commit, meanwhile
	hs.release <- nil
	<-hs.applying // carol's commit syncs
	dave := send("dave")
	prepared(3) // on top of carol's
	hs.release <- boom
	hs.hold.Store(false)
	if err := <-bob; err != nil {
		t.Fatalf("bob: %v", err)
	}
	for u, ch := range map[string]<-chan error{"carol": carol, "dave": dave} {
		if err := <-ch; !errors.Is(err, boom) {
			t.Errorf("%s: %v, want %v", u, err, boom)
		}
	}
	if n := getOne(t, v, "alice", m).ReadCount; n != 1 {
		t.Fatalf("read count %d after the failure, want 1 (bob)", n)
	}
	waitFor(t, "bob's receipt pushed", func() bool { return len(v.push.receipts("alice", m.ID)) > 0 })
	for _, r := range v.push.receipts("alice", m.ID) {
		if r.ReadCount != 1 {
			t.Fatalf("pushed read count %d, but only bob's receipt is durable", r.ReadCount)
		}
	}

	for _, u := range []string{"carol", "dave"} {
		if err := <-send(u); err != nil {
			t.Fatalf("%s again: %v", u, err)
		}
	}
	waitFor(t, "final push", func() bool {
		p := v.push.receipts("alice", m.ID)
		return p[len(p)-1].ReadCount == 3 && p[len(p)-1].UnreadCount == 0
	})
	v.eng.Close()
	com.Close()
	v.restart()
	if r := getOne(t, v, "alice", m); r.ReadCount != 3 || r.UnreadCount != 0 {
		t.Fatalf("after restart: counts %d/%d, want 3/0", r.ReadCount, r.UnreadCount)
	}
}

// TestStoredReceiptSentCached: a sync's receipt_sent flags come from the
// read states cached here, without reading storage, and only from durable
// bits: a receipt whose commit is in flight, or failed, is not reported as
// sent.
func TestStoredReceiptSentCached(t *testing.T) {
	boom := errors.New("boom")
	var cs *storagetest.Counting
	v, hs, _ := newHoldEnv(t, func(s storage.Store) storage.Store {
		cs = &storagetest.Counting{Store: s}
		return cs
	})
	v.roster.join("g", "alice", "bob", "carol", "dave")
	m := v.msgs.send("alice", "", "g", true)
	ordinals := map[string]uint32{}
	for _, u := range []string{"bob", "carol", "dave"} {
		ordinals[u], _ = v.roster.Ordinal(bg, "g", u)
	}
	send := func(u string) <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- v.eng.Send(bg, u, []*pb.MessageRef{refFor(u, m)}) }()
		return ch
	}
	// check asks whether u sent a receipt for m, and how many lookups that
	// took (Errorf: a commit may be held).
	check := func(u string, want bool, lookups int64) {
		t.Helper()
		cs.Reset()
		sent, err := v.eng.StoredReceiptSent(bg, u, []Msg{m}, map[string]uint32{"g": ordinals[u]})
		if err != nil {
			t.Fatal(err)
		}
		if sent[0] != want || cs.Lookups() != lookups {
			t.Errorf("%s: receipt_sent %v with %d lookups, want %v with %d", u, sent[0], cs.Lookups(), want, lookups)
		}
	}

	check("bob", false, 1) // not cached
	if err := <-send("bob"); err != nil {
		t.Fatal(err)
	}
	check("bob", true, 0)    // cached and durable
	check("carol", false, 0) // cached: no bit

	hs.hold.Store(true)
	carol := send("carol")
	<-hs.applying // carol's receipt is in memory, not durable
	check("carol", false, 0)
	check("bob", true, 0)
	hs.release <- nil
	if err := <-carol; err != nil {
		t.Fatal(err)
	}
	check("carol", true, 0)

	dave := send("dave")
	<-hs.applying
	check("dave", false, 0)
	hs.release <- boom
	hs.hold.Store(false)
	if err := <-dave; !errors.Is(err, boom) {
		t.Fatalf("dave: %v, want %v", err, boom)
	}
	check("dave", false, 0) // rolled back
	if err := <-send("dave"); err != nil {
		t.Fatal(err)
	}
	check("dave", true, 0)
}

// A receipt's self_receipts push is built only when the reader has a
// session besides the one it read on: fakePusher fails the test when a
// push that reaches nobody is built.
func TestSelfReceiptsOnlyWhenReachable(t *testing.T) {
	v := newEnv(t, nil)
	lone := v.msgs.send("alice", "bob", "", true)
	shared := v.msgs.send("alice", "bob", "", true)
	v.push.mu.Lock()
	v.push.alone = map[string]bool{"bob": true}
	v.push.mu.Unlock()
	if err := v.eng.SendFrom(bg, "bob", 5, []*pb.MessageRef{refFor("bob", lone)}); err != nil {
		t.Fatal(err)
	}
	if self := v.push.selfRefs("bob"); len(self) != 0 {
		t.Fatalf("self receipts %v with no other session", self)
	}
	v.push.mu.Lock()
	v.push.alone = nil
	v.push.mu.Unlock()
	if err := v.eng.SendFrom(bg, "bob", 5, []*pb.MessageRef{refFor("bob", shared)}); err != nil {
		t.Fatal(err)
	}
	if self := v.push.selfRefs("bob"); len(self) != 1 || self[0].MsgId != shared.ID {
		t.Fatalf("self receipts %v, want %s's", self, shared.ID)
	}
	waitFor(t, "receipt pushes to alice", func() bool {
		return len(v.push.receipts("alice", lone.ID)) == 1 && len(v.push.receipts("alice", shared.ID)) == 1
	})
}
