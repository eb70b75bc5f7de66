package wsframe

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestRead(t *testing.T) {
	errDecode := errors.New("decode")
	errRead := errors.New("read")
	tests := []struct {
		name       string
		msg        []byte
		readErr    error // the reader fails instead of giving msg
		decodeErr  error
		wantErr    error
		wantDecode bool
	}{
		{name: "empty", msg: []byte{}, wantDecode: true},
		{name: "small", msg: []byte("abc"), wantDecode: true},
		{name: "over MaxPooled", msg: bytes.Repeat([]byte{7}, MaxPooled+1), wantDecode: true},
		{name: "decode error as is", msg: []byte("x"), decodeErr: errDecode, wantErr: errDecode, wantDecode: true},
		{name: "read error, no decode", readErr: errRead, wantErr: errRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tt.msg)
			if tt.readErr != nil {
				r = iotest.ErrReader(tt.readErr)
			}
			decoded := false
			err := Read(r, func(msg []byte) error {
				decoded = true
				if !bytes.Equal(msg, tt.msg) {
					t.Errorf("msg of %d bytes, want %d", len(msg), len(tt.msg))
				}
				return tt.decodeErr
			})
			if err != tt.wantErr {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if decoded != tt.wantDecode {
				t.Errorf("decoded = %v, want %v", decoded, tt.wantDecode)
			}
		})
	}
}

// A reused buffer holds nothing of the message read before it.
func TestReadReusesEmptied(t *testing.T) {
	for _, m := range []string{"a longer message", "hi", "", "x"} {
		Read(bytes.NewReader([]byte(m)), func(msg []byte) error {
			if string(msg) != m {
				t.Errorf("msg = %q, want %q", msg, m)
			}
			return nil
		})
	}
}
