package users

import (
	"context"
	"errors"
	"strings"
	"testing"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/storage"
	"github.com/readmark/readmark/internal/storage/pebblestore"
)

func TestSetGetSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() (*Service, func()) {
		st, err := pebblestore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := storage.NewCommitter(st, 0)
		return New(st, c), func() { c.Close(); st.Close() }
	}
	s, closeAll := open()
	if p := s.Get(ctx, "alice"); p != (Profile{}) {
		t.Fatalf("profile before any set: %+v", p)
	}
	tests := []struct {
		name string
		p    Profile
		code int32
	}{
		{"ok", Profile{NickName: "Alice", FaceURL: "https://x/a.png"}, 0},
		{"nick too long", Profile{NickName: strings.Repeat("n", MaxNickNameLen+1)}, pb.CodeInvalidArgument},
		{"face too long", Profile{FaceURL: strings.Repeat("f", MaxFaceURLLen+1)}, pb.CodeInvalidArgument},
	}
	for _, tt := range tests {
		err := s.Set(ctx, "alice", tt.p)
		var ae *apierr.Error
		if (tt.code == 0 && err != nil) || (tt.code != 0 && (!errors.As(err, &ae) || ae.Code != tt.code)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// The cached "no profile" of alice was replaced by Set.
	if p := s.Get(ctx, "alice"); p.NickName != "Alice" {
		t.Fatalf("after set: %+v", p)
	}
	closeAll()
	s, closeAll = open()
	defer closeAll()
	if p := s.Get(ctx, "alice"); p.NickName != "Alice" || p.FaceURL != "https://x/a.png" {
		t.Fatalf("after reopen: %+v", p)
	}
}
