package dispatch

import (
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

func TestRequestName(t *testing.T) {
	tests := []struct {
		frame *pb.ClientFrame
		want  string
	}{
		{&pb.ClientFrame{}, "none"},
		{&pb.ClientFrame{Body: &pb.ClientFrame_Ack{Ack: &pb.AckRequest{}}}, "ack"},
		{&pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{}}, "send_message"},
		{&pb.ClientFrame{Body: &pb.ClientFrame_SendReceipts{}}, "send_receipts"},
	}
	for _, tt := range tests {
		if got := RequestName(tt.frame); got != tt.want {
			t.Errorf("RequestName(%v) = %q, want %q", tt.frame, got, tt.want)
		}
	}
	// Every body type has its field's name.
	fields := (&pb.ClientFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	if len(requestNames) != fields.Len() {
		t.Errorf("%d names for %d body fields", len(requestNames), fields.Len())
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := &pb.ClientFrame{}
		f.ProtoReflect().Set(fd, f.ProtoReflect().NewField(fd))
		if got := RequestName(f); got != string(fd.Name()) {
			t.Errorf("RequestName for body field %s = %q", fd.Name(), got)
		}
	}
}

func BenchmarkRequestName(b *testing.B) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_SendReceipts{SendReceipts: &pb.SendReceiptsRequest{}}}
	for b.Loop() {
		RequestName(f)
	}
}
