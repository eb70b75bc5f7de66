package test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readmark/readmark/im"
	"github.com/readmark/readmark/usersig"
)

// Paths of the REST API as documented in api/openapi.yaml.
const (
	pMessages    = "/v1/admin/messages"
	pQuery       = "/v1/admin/receipts/query"
	pReceipts    = "/v1/admin/receipts"
	pMarkRead    = "/v1/admin/c2c/mark-read"
	pReadMembers = "/v1/admin/groups/{group_id}/messages/{seq}/read-members"
	pGroups      = "/v1/admin/groups"
	pGroup       = "/v1/admin/groups/{group_id}"
	pMembers     = "/v1/admin/groups/{group_id}/members"
	pRemove      = "/v1/admin/groups/{group_id}/members/remove"
	pUserGroups  = "/v1/admin/users/{user_id}/groups"
)

type obj = map[string]any

func fill(template string, kv ...string) string {
	return strings.NewReplacer(kv...).Replace(template)
}

func num(t *testing.T, m obj, k string) uint64 {
	t.Helper()
	v, ok := m[k].(float64)
	if !ok {
		t.Fatalf("%s missing in %v", k, m)
	}
	return uint64(v)
}

func list(m obj, k string) []obj {
	var out []obj
	for _, v := range m[k].([]any) {
		out = append(out, v.(obj))
	}
	return out
}

func userIDs(ms []obj) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m["user_id"].(string))
	}
	return out
}

// restPages walks a paged member list with page size count.
func (ts *testServer) restPages(t *testing.T, template, path string, count int) []obj {
	t.Helper()
	var all []obj
	next := uint64(0)
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for range 1000 {
		page := ts.rest(t, "GET", template, fmt.Sprintf("%s%snext_seq=%d&count=%d", path, sep, next, count), nil, "", 200)
		ms := list(page, "members")
		if len(ms) > count {
			t.Fatalf("page of %d, asked %d", len(ms), count)
		}
		all = append(all, ms...)
		if page["is_finished"].(bool) {
			return all
		}
		next = num(t, page, "next_seq")
	}
	t.Fatal("paging does not end")
	return nil
}

func TestRESTGroupsAndReceipts(t *testing.T) {
	ts := startServer(t)
	members := users("rm", 7)
	// Group administration.
	g := ts.rest(t, "POST", pGroups, pGroups, obj{"owner_id": "ro", "type": "Work", "group_id": "rg", "name": "team", "member_ids": members[:5]}, "", 200)
	if g["group_id"] != "rg" {
		t.Fatalf("create: %v", g)
	}
	ts.rest(t, "POST", pMembers, fill(pMembers, "{group_id}", "rg"), obj{"user_ids": members[5:]}, "", 200)
	info := ts.rest(t, "GET", pGroup, fill(pGroup, "{group_id}", "rg"), nil, "", 200)
	if info["owner_id"] != "ro" || info["type"] != "Work" || num(t, info, "member_count") != 8 {
		t.Fatalf("info: %v", info)
	}
	all := ts.restPages(t, pMembers, fill(pMembers, "{group_id}", "rg"), 3)
	if got := userIDs(all); !slices.Equal(got, append([]string{"ro"}, members...)) || all[0]["role"] != "owner" || all[1]["role"] != "member" {
		t.Fatalf("members: %v", all)
	}
	ts.rest(t, "POST", pRemove, fill(pRemove, "{group_id}", "rg"), obj{"user_ids": []string{"rm6"}, "reason": "bye"}, "", 200)
	if got := userIDs(ts.restPages(t, pMembers, fill(pMembers, "{group_id}", "rg"), 100)); len(got) != 7 || slices.Contains(got, "rm6") {
		t.Fatalf("after remove: %v", got)
	}
	ug := ts.rest(t, "GET", pUserGroups, fill(pUserGroups, "{user_id}", "rm0"), nil, "", 200)
	if gs := list(ug, "groups"); len(gs) != 1 || gs[0]["group_id"] != "rg" || gs[0]["name"] != "team" {
		t.Fatalf("user groups: %v", ug)
	}
	if gs := list(ts.rest(t, "GET", pUserGroups, fill(pUserGroups, "{user_id}", "rm6"), nil, "", 200), "groups"); len(gs) != 0 {
		t.Fatalf("removed member's groups: %v", gs)
	}

	// A message sent through REST is pushed like any other.
	c0, r0 := ts.dial("rm0")
	_, rOwner := ts.dial("ro")
	sent := ts.rest(t, "POST", pMessages, pMessages, obj{"from": "ro", "group_id": "rg", "text": "read me", "need_read_receipt": true}, "", 200)
	seq := num(t, sent, "seq")
	waitForMsg(t, "the REST message", r0, func() bool { return slices.Contains(r0.texts(), "read me") })
	msg := r0.messages()[0]
	if msg.MsgID != sent["msg_id"] || msg.Seq != seq || msg.Sender != "ro" || !msg.NeedReadReceipt {
		t.Fatalf("pushed %+v for %v", msg, sent)
	}
	// Receipts: one through the SDK, three through REST.
	if err := c0.SendMessageReadReceipts(ctxT(t), []*im.Message{msg}); err != nil {
		t.Fatal(err)
	}
	for _, u := range members[1:4] {
		ts.rest(t, "POST", pReceipts, pReceipts, obj{"user_id": u, "group_id": "rg", "seqs": []uint64{seq}}, "", 200)
	}
	// Idempotent: the same receipt again changes nothing.
	ts.rest(t, "POST", pReceipts, pReceipts, obj{"user_id": "rm1", "group_id": "rg", "seqs": []uint64{seq}}, "", 200)
	waitFor(t, "the sender's push of 4 read", func() bool {
		r := lastReceipt(rOwner, msg.MsgID)
		return r != nil && r.ReadCount == 4
	})
	plain := num(t, ts.rest(t, "POST", pMessages, pMessages, obj{"from": "rm0", "group_id": "rg", "text": "no receipt"}, "", 200), "seq")
	q := ts.rest(t, "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": []uint64{seq}}, "", 200)
	rs := list(q, "receipts")
	if len(rs) != 1 || num(t, rs[0], "read_count") != 4 || num(t, rs[0], "unread_count") != 2 || rs[0]["msg_id"] != msg.MsgID || rs[0]["sender"] != "ro" {
		t.Fatalf("query: %v", q)
	}
	read := ts.restPages(t, pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", fmt.Sprint(seq))+"?filter=read", 3)
	unread := ts.restPages(t, pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", fmt.Sprint(seq))+"?filter=unread", 1)
	if !slices.Equal(userIDs(read), members[:4]) || !slices.Equal(userIDs(unread), members[4:6]) {
		t.Fatalf("read %v unread %v", userIDs(read), userIDs(unread))
	}
	now := time.Now().UnixMilli()
	for _, m := range read {
		if rt := int64(num(t, m, "read_time_ms")); rt < now-60_000 || rt > now+1000 {
			t.Fatalf("read time %d (now %d)", rt, now)
		}
	}
	for _, m := range unread {
		if num(t, m, "read_time_ms") != 0 {
			t.Fatalf("unread member with read time: %v", m)
		}
	}

	// C2C: send, query, read, mark read.
	c2c := ts.rest(t, "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "text": "hi", "need_read_receipt": true, "custom_data": []byte("x")}, "", 200)
	cseq := num(t, c2c, "seq")
	cq := func() obj {
		return list(ts.rest(t, "POST", pQuery, pQuery, obj{"from": "ro", "to": "rm0", "seqs": []uint64{cseq}}, "", 200), "receipts")[0]
	}
	if r := cq(); r["is_peer_read"] != false || r["receiver"] != "rm0" || num(t, r, "peer_read_time_ms") != 0 {
		t.Fatalf("c2c before: %v", r)
	}
	ts.rest(t, "POST", pReceipts, pReceipts, obj{"user_id": "rm0", "peer_id": "ro", "seqs": []uint64{cseq}}, "", 200)
	if r := cq(); r["is_peer_read"] != true {
		t.Fatalf("c2c after receipt: %v", r)
	}
	ts.rest(t, "POST", pMarkRead, pMarkRead, obj{"user_id": "rm0", "peer_id": "ro"}, "", 200)
	waitFor(t, "the C2C read push", func() bool { return len(rOwner.c2cReads()) > 0 })
	if r := cq(); num(t, r, "peer_read_time_ms") < uint64(now-60_000) {
		t.Fatalf("c2c after mark: %v", r)
	}
	// Online-only messages are not stored.
	if on := ts.rest(t, "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "text": "live", "online_user_only": true}, "", 200); num(t, on, "seq") != 0 {
		t.Fatalf("online-only: %v", on)
	}

	// Every error through REST, with its documented status and code.
	wrongKey, _ := usersig.Gen([]byte("another key"), "administrator", time.Hour)
	rmPath := fill(pReadMembers, "{group_id}", "rg", "{seq}", fmt.Sprint(seq)) + "?filter=read"
	seqs101 := make([]uint64, 101)
	for i := range seqs101 {
		seqs101[i] = uint64(i + 1)
	}
	for _, tt := range []struct {
		name, method, template, path string
		body                         any
		tok                          string
		status, code                 int
	}{
		{"no token", "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "text": "x"}, "-", 401, im.CodeUnauthenticated},
		{"user token", "GET", pReadMembers, rmPath, nil, ts.token("ro"), 403, im.CodePermissionDenied},
		{"wrong key", "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": []uint64{seq}}, wrongKey, 401, im.CodeUnauthenticated},
		{"not JSON", "POST", pMessages, pMessages, "{", "", 400, im.CodeInvalidArgument},
		{"unknown field", "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "text": "x", "bogus": 1}, "", 400, im.CodeInvalidArgument},
		{"bad from", "POST", pMessages, pMessages, obj{"from": "a b", "to": "rm0", "text": "x"}, "", 400, im.CodeInvalidArgument},
		{"both to and group", "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "group_id": "rg", "text": "x"}, "", 400, im.CodeInvalidArgument},
		{"empty text", "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0"}, "", 400, im.CodeInvalidArgument},
		{"bad priority", "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "text": "x", "priority": "urgent"}, "", 400, im.CodeInvalidArgument},
		{"text too large", "POST", pMessages, pMessages, obj{"from": "ro", "to": "rm0", "text": strings.Repeat("x", 12*1024+1)}, "", 413, im.CodeMessageTooLarge},
		{"not a member sends", "POST", pMessages, pMessages, obj{"from": "stranger", "group_id": "rg", "text": "x"}, "", 403, im.CodePermissionDenied},
		{"no such group", "POST", pMessages, pMessages, obj{"from": "ro", "group_id": "nogroup", "text": "x"}, "", 404, im.CodeNotFound},
		{"query no seqs", "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": []uint64{}}, "", 400, im.CodeInvalidArgument},
		{"query 101 seqs", "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": seqs101}, "", 400, im.CodeTooMany},
		{"query seq 0", "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": []uint64{0}}, "", 400, im.CodeInvalidArgument},
		{"query no such seq", "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": []uint64{999}}, "", 404, im.CodeNotFound},
		{"query no conversation", "POST", pQuery, pQuery, obj{"seqs": []uint64{1}}, "", 400, im.CodeInvalidArgument},
		{"query both", "POST", pQuery, pQuery, obj{"group_id": "rg", "from": "ro", "to": "rm0", "seqs": []uint64{1}}, "", 400, im.CodeInvalidArgument},
		{"query no receipt asked", "POST", pQuery, pQuery, obj{"group_id": "rg", "seqs": []uint64{plain}}, "", 400, im.CodeMessageNoReceipt},
		{"receipt own message", "POST", pReceipts, pReceipts, obj{"user_id": "ro", "group_id": "rg", "seqs": []uint64{seq}}, "", 400, im.CodeReceiptOwnMessage},
		{"receipt by stranger", "POST", pReceipts, pReceipts, obj{"user_id": "stranger", "group_id": "rg", "seqs": []uint64{seq}}, "", 403, im.CodePermissionDenied},
		{"receipt 101", "POST", pReceipts, pReceipts, obj{"user_id": "rm4", "group_id": "rg", "seqs": seqs101}, "", 400, im.CodeTooMany},
		{"receipt no user", "POST", pReceipts, pReceipts, obj{"group_id": "rg", "seqs": []uint64{seq}}, "", 400, im.CodeInvalidArgument},
		{"mark read oneself", "POST", pMarkRead, pMarkRead, obj{"user_id": "ro", "peer_id": "ro"}, "", 400, im.CodeInvalidArgument},
		{"mark read bad peer", "POST", pMarkRead, pMarkRead, obj{"user_id": "ro", "peer_id": ""}, "", 400, im.CodeInvalidArgument},
		{"members no filter", "GET", pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", fmt.Sprint(seq)), nil, "", 400, im.CodeInvalidArgument},
		{"members count 0", "GET", pReadMembers, rmPath + "&count=0", nil, "", 400, im.CodeTooMany},
		{"members count 101", "GET", pReadMembers, rmPath + "&count=101", nil, "", 400, im.CodeTooMany},
		{"members bad filter", "GET", pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", fmt.Sprint(seq)) + "?filter=all", nil, "", 400, im.CodeInvalidArgument},
		{"members bad cursor", "GET", pReadMembers, rmPath + "&next_seq=-1", nil, "", 400, im.CodeInvalidArgument},
		{"members bad seq", "GET", pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", "x") + "?filter=read", nil, "", 400, im.CodeInvalidArgument},
		{"members no such message", "GET", pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", "999") + "?filter=read", nil, "", 404, im.CodeNotFound},
		{"members no receipt asked", "GET", pReadMembers, fill(pReadMembers, "{group_id}", "rg", "{seq}", fmt.Sprint(plain)) + "?filter=read", nil, "", 400, im.CodeMessageNoReceipt},
		{"create exists", "POST", pGroups, pGroups, obj{"owner_id": "ro", "type": "Work", "group_id": "rg"}, "", 409, im.CodeAlreadyExists},
		{"create bad type", "POST", pGroups, pGroups, obj{"owner_id": "ro", "type": "Club"}, "", 400, im.CodeInvalidArgument},
		{"create bad id", "POST", pGroups, pGroups, obj{"owner_id": "ro", "type": "Work", "group_id": "a/b"}, "", 400, im.CodeInvalidArgument},
		{"create too many", "POST", pGroups, pGroups, obj{"owner_id": "ro", "type": "Work", "member_ids": users("x", 1001)}, "", 400, im.CodeTooMany},
		{"group not found", "GET", pGroup, fill(pGroup, "{group_id}", "nogroup"), nil, "", 404, im.CodeNotFound},
		{"members page 0", "GET", pMembers, fill(pMembers, "{group_id}", "rg") + "?count=0", nil, "", 400, im.CodeTooMany},
		{"add existing", "POST", pMembers, fill(pMembers, "{group_id}", "rg"), obj{"user_ids": []string{"rm0"}}, "", 409, im.CodeAlreadyExists},
		{"add none", "POST", pMembers, fill(pMembers, "{group_id}", "rg"), obj{"user_ids": []string{}}, "", 400, im.CodeInvalidArgument},
		{"add with reason", "POST", pMembers, fill(pMembers, "{group_id}", "rg"), obj{"user_ids": []string{"z"}, "reason": "r"}, "", 400, im.CodeInvalidArgument},
		{"remove owner", "POST", pRemove, fill(pRemove, "{group_id}", "rg"), obj{"user_ids": []string{"ro"}}, "", 400, im.CodeInvalidArgument},
		{"remove from no group", "POST", pRemove, fill(pRemove, "{group_id}", "nogroup"), obj{"user_ids": []string{"rm0"}}, "", 404, im.CodeNotFound},
		{"user groups bad id", "GET", pUserGroups, fill(pUserGroups, "{user_id}", "a:b"), nil, "", 400, im.CodeInvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.rest(t, tt.method, tt.template, tt.path, tt.body, tt.tok, tt.status)
			if int(num(t, got, "code")) != tt.code || got["desc"] == "" || got["name"] == "" {
				t.Fatalf("got %v, want code %d", got, tt.code)
			}
		})
	}
}

func TestRESTReceiptGroupTypeAndRateLimit(t *testing.T) {
	ts := &testServer{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", adminRate: 20}
	ts.start()
	t.Cleanup(ts.stop)
	ts.rest(t, "POST", pGroups, pGroups, obj{"owner_id": "o", "type": "AVChatRoom", "group_id": "live", "member_ids": []string{"a"}}, "", 200)
	e := ts.rest(t, "POST", pMessages, pMessages, obj{"from": "o", "group_id": "live", "text": "x", "need_read_receipt": true}, "", 403)
	if int(num(t, e, "code")) != im.CodeGroupTypeNoReceipt {
		t.Fatalf("got %v", e)
	}
	// The burst of 20 is spent, then 429 with Retry-After; another token
	// has its own budget.
	tok := ts.token("administrator")
	limited := 0
	for range 60 {
		status, body, h := ts.restRaw(t, "GET", fill(pGroup, "{group_id}", "live"), nil, tok)
		checkResponse(t, "GET", pGroup, status, body)
		if status == http.StatusTooManyRequests {
			if !strings.Contains(string(body), fmt.Sprint(im.CodeRateLimited)) || h.Get("Retry-After") == "" {
				t.Fatalf("429 without code or Retry-After: %s %v", body, h)
			}
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("60 requests at once were never rate limited at 20/s")
	}
	other, _ := usersig.Gen(ts.srv.Secret(), "administrator", 2*time.Hour)
	ts.rest(t, "GET", pGroup, fill(pGroup, "{group_id}", "live"), nil, other, 200)
}
