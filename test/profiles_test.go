package test

import (
	"bytes"
	"runtime"
	"testing"
)

// TestProfilesAdminOnly: /debug/pprof/ answers only the admin token, and
// the admin gets profiles, a trace and a block/mutex profile recorded for
// the requested window only.
func TestProfilesAdminOnly(t *testing.T) {
	ts := startServer(t)
	gzipMagic := []byte{0x1f, 0x8b}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/trace?seconds=1", "/debug/pprof/mutex?rate=1&seconds=1"} {
		if status, _, _ := ts.restRaw(t, "GET", path, nil, "-"); status != 401 {
			t.Errorf("GET %s without a token: %d, want 401", path, status)
		}
		if status, _, _ := ts.restRaw(t, "GET", path, nil, ts.token("alice")); status != 403 {
			t.Errorf("GET %s with a user's token: %d, want 403", path, status)
		}
	}
	if status, body, _ := ts.restRaw(t, "GET", "/debug/pprof/heap", nil, ""); status != 200 || !bytes.HasPrefix(body, gzipMagic) {
		t.Errorf("heap profile: %d, %d bytes, want 200 and a gzipped profile", status, len(body))
	}
	if status, body, _ := ts.restRaw(t, "GET", "/debug/pprof/trace?seconds=1", nil, ""); status != 200 || len(body) == 0 {
		t.Errorf("trace: %d, %d bytes", status, len(body))
	}
	if status, _, _ := ts.restRaw(t, "GET", "/debug/pprof/block?rate=1", nil, ""); status != 400 {
		t.Errorf("rate without seconds: %d, want 400", status)
	}
	for _, name := range []string{"block", "mutex"} {
		status, body, _ := ts.restRaw(t, "GET", "/debug/pprof/"+name+"?rate=1&seconds=1", nil, "")
		if status != 200 || !bytes.HasPrefix(body, gzipMagic) {
			t.Errorf("%s profile: %d, %q", name, status, body[:min(len(body), 200)])
		}
	}
	if f := runtime.SetMutexProfileFraction(-1); f != 0 {
		t.Errorf("mutex profiling left on after the profile (fraction %d)", f)
	}
}
