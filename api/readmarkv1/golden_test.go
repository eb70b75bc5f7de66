package readmarkv1

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenFrames are one of each frame shape clients see most. Their encodings
// are pinned in testdata/: a change there is a wire-protocol change and must
// be deliberate (and documented in docs/protocol.md).
func goldenFrames() map[string]proto.Message {
	ref := &MessageRef{Conversation: &Conversation{GroupId: "team"}, Seq: 41, MsgId: "19a3f0c2b11-5e0d1c2a9b3f"}
	return map[string]proto.Message{
		"login_request": &ClientFrame{Id: 1, Body: &ClientFrame_Login{Login: &LoginRequest{
			ProtocolVersion: 1, UserId: "bob", Token: "eyJ2IjoxfQ.c2ln", Sdk: "readmark-go/1",
		}}},
		"send_message": &ClientFrame{Id: 2, Body: &ClientFrame_SendMessage{SendMessage: &SendMessageRequest{
			GroupId: "team", Text: "ship it?", NeedReadReceipt: true, Priority: Priority_PRIORITY_NORMAL,
		}}},
		"send_receipts": &ClientFrame{Id: 3, Body: &ClientFrame_SendReceipts{SendReceipts: &SendReceiptsRequest{
			Messages: []*MessageRef{ref},
		}}},
		// A read receipt carrying the acknowledgement of the message it
		// is for (ClientFrame.acked).
		"send_receipts_acked": &ClientFrame{Id: 5, Acked: []*SyncCursor{{Conversation: ref.Conversation, Seq: 41}},
			Body: &ClientFrame_SendReceipts{SendReceipts: &SendReceiptsRequest{Messages: []*MessageRef{ref}}}},
		"read_members": &ClientFrame{Id: 4, Body: &ClientFrame_ReadMembers{ReadMembers: &ReadMembersRequest{
			Message: ref, Filter: ReadMembersFilter_READ_MEMBERS_FILTER_UNREAD, NextSeq: 7, Count: 100,
		}}},
		// A sync page request whose cursors are no acknowledgements (no_ack).
		"sync_request": &ClientFrame{Id: 7, Body: &ClientFrame_Sync{Sync: &SyncRequest{
			Cursors: []*SyncCursor{{Conversation: ref.Conversation, Seq: 41}}, Limit: 200, NoAck: true,
		}}},
		"new_message_push": &ServerFrame{Body: &ServerFrame_NewMessage{NewMessage: &Message{
			MsgId: "19a3f0c2b11-5e0d1c2a9b3f", Seq: 41, Sender: "alice", GroupId: "team",
			TimeMs: 1767225600000, NeedReadReceipt: true, Text: "ship it?",
		}}},
		"receipts_push": &ServerFrame{Body: &ServerFrame_Receipts_{Receipts_: &ReceiptsPush{Receipts: []*MessageReceipt{
			{MsgId: "19a3f0c2b11-5e0d1c2a9b3f", Seq: 41, GroupId: "team", ReadCount: 1, UnreadCount: 1},
		}}}},
		"error_response": &ServerFrame{Id: 6, Error: &Error{Code: CodeMessageNoReceipt, Desc: "message was sent without need_read_receipt"}},
	}
}

func TestGoldenEncodings(t *testing.T) {
	for name, msg := range goldenFrames() {
		t.Run(name, func(t *testing.T) {
			bin, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			js, err := protojson.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			// protojson varies its white space on purpose: compare a
			// canonical re-indentation of it.
			var v any
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatal(err)
			}
			canon, _ := json.MarshalIndent(v, "", "  ")
			checkGolden(t, name+".json", append(canon, '\n'))
			checkGolden(t, name+".hex", []byte(hex.EncodeToString(bin)+"\n"))

			// And the golden JSON still decodes to the same frame.
			back := msg.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(canon, back); err != nil || !proto.Equal(back, msg) {
				t.Fatalf("golden JSON does not decode back: %v", err)
			}
		})
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./api/readmarkv1 -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed: a wire-protocol change.\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}
