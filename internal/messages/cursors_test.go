package messages

import "testing"

func TestCursorsEvictOffline(t *testing.T) {
	c := cursors{m: make(map[string]map[string]uint64), dirty: make(map[cursorKey]struct{})}
	c.advance("online", "g:a", 5)
	c.advance("offline-clean", "g:a", 6)
	c.advance("offline-dirty", "g:a", 7)
	c.takeDirty()                        // written: everything clean
	c.advance("offline-dirty", "g:a", 8) // changed since the write
	c.evictOffline(func(u string) bool { return u == "online" })
	for _, tt := range []struct {
		user string
		kept bool
	}{{"online", true}, {"offline-clean", false}, {"offline-dirty", true}} {
		if _, ok := c.m[tt.user]; ok != tt.kept {
			t.Errorf("%s: kept=%v, want %v", tt.user, ok, tt.kept)
		}
	}
}
