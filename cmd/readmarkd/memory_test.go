package main

import (
	"math"
	"testing"
)

func TestPlanMemory(t *testing.T) {
	const gib = 1 << 30
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name         string
		limit, gogc  string
		env          func(string) string
		cgroup, phys uint64
		wantLimit    int64
		wantGOGC     int
		wantErr      bool
	}{
		{"cgroup", "auto", "auto", env(), 4 * gib, 16 * gib, 3 * gib, 200, false},
		{"cgroup above RAM is none", "auto", "auto", env(), 64 * gib, 16 * gib, 8 * gib, 200, false},
		{"physical", "auto", "auto", env(), 0, 16 * gib, 8 * gib, 200, false},
		{"unknown size", "auto", "auto", env(), 0, 0, -1, keep, false},
		{"GOMEMLIMIT respected", "auto", "auto", env("GOMEMLIMIT", "1GiB"), 4 * gib, 16 * gib, -1, 200, false},
		{"GOGC respected", "auto", "auto", env("GOGC", "50"), 4 * gib, 16 * gib, 3 * gib, keep, false},
		{"GOMEMLIMIT=off: no raise", "auto", "auto", env("GOMEMLIMIT", "off"), 4 * gib, 16 * gib, -1, keep, false},
		{"flags win over env", "512MiB", "150", env("GOMEMLIMIT", "1GiB", "GOGC", "50"), 0, 0, 512 << 20, 150, false},
		{"limit off", "off", "auto", env(), 4 * gib, 16 * gib, math.MaxInt64, keep, false},
		{"gogc off with limit", "2GiB", "off", env(), 0, 0, 2 * gib, -1, false},
		{"gogc off without limit", "off", "off", env(), 0, 0, 0, 0, true},
		{"bad size", "lots", "auto", env(), 0, 0, 0, 0, true},
		{"bad gogc", "auto", "0", env(), 0, 0, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planMemory(tc.limit, tc.gogc, tc.env, tc.cgroup, tc.phys)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error; plan %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.limit != tc.wantLimit || p.gogc != tc.wantGOGC {
				t.Errorf("limit %d, GOGC %d (%v); want %d, %d", p.limit, p.gogc, p.why, tc.wantLimit, tc.wantGOGC)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "2KiB": 2048, "1.5GiB": 3 << 29, "100 MiB": 100 << 20, "7B": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}
