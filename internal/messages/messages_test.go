package messages

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
)

func TestStoredRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  *pb.Message
		wm   uint32
	}{
		{"c2c", &pb.Message{MsgId: "1-a", Seq: 1, Sender: "a", Receiver: "b", Text: "hi", NeedReadReceipt: true}, 0},
		{"group", &pb.Message{MsgId: "2-b", Seq: 99, Sender: "a", GroupId: "g", CustomData: []byte{0, 1}}, 100_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := encodeStored(tt.msg, tt.wm)
			if err != nil {
				t.Fatal(err)
			}
			got, wm, err := decodeStored(v)
			if err != nil || wm != tt.wm || !proto.Equal(got, tt.msg) {
				t.Fatalf("got %v %d %v", got, wm, err)
			}
		})
	}
}

func TestCheckBody(t *testing.T) {
	big := make([]byte, MaxCustomDataBytes+1)
	tests := []struct {
		name string
		req  *pb.SendMessageRequest
		code int32
	}{
		{"text", &pb.SendMessageRequest{Text: "x"}, 0},
		{"empty text", &pb.SendMessageRequest{}, pb.CodeInvalidArgument},
		{"custom", &pb.SendMessageRequest{ElemType: pb.ElemType_ELEM_TYPE_CUSTOM, CustomData: []byte("x")}, 0},
		{"empty custom", &pb.SendMessageRequest{ElemType: pb.ElemType_ELEM_TYPE_CUSTOM}, pb.CodeInvalidArgument},
		{"unknown elem", &pb.SendMessageRequest{ElemType: 9, Text: "x"}, pb.CodeInvalidArgument},
		{"custom too big", &pb.SendMessageRequest{ElemType: pb.ElemType_ELEM_TYPE_CUSTOM, CustomData: big}, pb.CodeMessageTooLarge},
		{"text too big", &pb.SendMessageRequest{Text: string(make([]byte, MaxTextBytes+1))}, pb.CodeMessageTooLarge},
		{"text at limit", &pb.SendMessageRequest{Text: string(make([]byte, MaxTextBytes))}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int32
			err := checkBody(tt.req)
			if err != nil {
				code = apiCode(err)
			}
			if code != tt.code {
				t.Fatalf("code %d, want %d (%v)", code, tt.code, err)
			}
		})
	}
}

func FuzzDecodeStored(f *testing.F) {
	v, _ := encodeStored(&pb.Message{MsgId: "x", Seq: 3, Text: "hello"}, 7)
	f.Add(v)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, wm, err := decodeStored(data)
		if err != nil {
			return
		}
		again, err := encodeStored(m, wm)
		if err != nil {
			t.Fatal(err)
		}
		m2, wm2, err := decodeStored(again)
		if err != nil || wm2 != wm || !proto.Equal(m, m2) {
			t.Fatalf("re-encoding changed the record")
		}
	})
}

func apiCode(err error) int32 {
	if e, ok := err.(*apierr.Error); ok {
		return e.Code
	}
	return -1
}
