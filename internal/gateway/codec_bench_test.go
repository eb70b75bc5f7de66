package gateway

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Typical frames: a receipt call for 20 messages (client → server) and a
// new-message push (server → client).
func receiptCall() *pb.ClientFrame {
	refs := make([]*pb.MessageRef, 20)
	for i := range refs {
		refs[i] = &pb.MessageRef{Conversation: &pb.Conversation{GroupId: "team-42"}, Seq: uint64(1000 + i), MsgId: "19a3f0c2b11-5e0d1c2a9b3f"}
	}
	return &pb.ClientFrame{Id: 77, Body: &pb.ClientFrame_SendReceipts{SendReceipts: &pb.SendReceiptsRequest{Messages: refs}}}
}

func messagePush() *pb.ServerFrame {
	return &pb.ServerFrame{Body: &pb.ServerFrame_NewMessage{NewMessage: &pb.Message{
		MsgId: "19a3f0c2b11-5e0d1c2a9b3f", Seq: 1042, Sender: "alice", GroupId: "team-42",
		TimeMs: 1767225600000, NeedReadReceipt: true, Text: "Ship it? The release notes are in the doc.",
	}}}
}

// BenchmarkCodec measures encoding and decoding one frame in each of the
// protocol's two encodings (binary protobuf, protojson), per frame, with the
// encoded size reported as bytes/frame.
func BenchmarkCodec(b *testing.B) {
	frames := []struct {
		name string
		msg  proto.Message
		new  func() proto.Message
	}{
		{"receipts20", receiptCall(), func() proto.Message { return &pb.ClientFrame{} }},
		{"push", messagePush(), func() proto.Message { return &pb.ServerFrame{} }},
	}
	for _, f := range frames {
		bin, _ := proto.Marshal(f.msg)
		js, _ := protojson.Marshal(f.msg)
		b.Run(f.name+"/proto/encode", func(b *testing.B) {
			for b.Loop() {
				proto.Marshal(f.msg)
			}
			b.ReportMetric(float64(len(bin)), "bytes/frame")
		})
		b.Run(f.name+"/proto/decode", func(b *testing.B) {
			for b.Loop() {
				proto.Unmarshal(bin, f.new())
			}
		})
		b.Run(f.name+"/json/encode", func(b *testing.B) {
			for b.Loop() {
				protojson.Marshal(f.msg)
			}
			b.ReportMetric(float64(len(js)), "bytes/frame")
		})
		b.Run(f.name+"/json/decode", func(b *testing.B) {
			for b.Loop() {
				protojson.Unmarshal(js, f.new())
			}
		})
	}
}

// FuzzDecodeClientFrame feeds arbitrary bytes to the server's frame
// decoders: they must fail with an error, never panic.
func FuzzDecodeClientFrame(f *testing.F) {
	bin, _ := proto.Marshal(receiptCall())
	js, _ := protojson.Marshal(receiptCall())
	f.Add(bin)
	f.Add(js)
	f.Fuzz(func(t *testing.T, data []byte) {
		proto.Unmarshal(data, &pb.ClientFrame{})
		protojson.Unmarshal(data, &pb.ClientFrame{})
	})
}
