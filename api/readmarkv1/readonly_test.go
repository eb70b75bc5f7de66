package readmarkv1

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestReadOnly walks every request type of the schema: each must be
// classified here, so that a new one is read-only (cancelled with its
// connection) only by decision.
func TestReadOnly(t *testing.T) {
	want := map[protoreflect.Name]bool{
		"login": false, "ping": true, "sync": true, "set_profile": false, "ack": false,
		"create_group": false, "invite": false, "join_group": false, "quit_group": false, "kick": false,
		"send_message": false, "history": true,
		"send_receipts": false, "get_receipts": true, "read_members": true, "mark_c2c_read": false,
	}
	fields := (&ClientFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	if fields.Len() != len(want) {
		t.Errorf("the schema has %d request types, this test classifies %d", fields.Len(), len(want))
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		w, ok := want[fd.Name()]
		if !ok {
			t.Errorf("request type %s is not classified: decide whether it is read-only (ReadOnly) and add it here", fd.Name())
			continue
		}
		m := (&ClientFrame{}).ProtoReflect()
		m.Set(fd, m.NewField(fd))
		if got := ReadOnly(m.Interface().(*ClientFrame)); got != w {
			t.Errorf("ReadOnly(%s) = %v, want %v", fd.Name(), got, w)
		}
	}
	if ReadOnly(&ClientFrame{}) {
		t.Error("a frame without a body is read-only")
	}
}
