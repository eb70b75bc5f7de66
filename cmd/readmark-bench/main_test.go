package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestFaninExact runs the fanin scenario against an embedded server and
// checks that the read counts end exact. Correctness only: no timing.
func TestFaninExact(t *testing.T) {
	for _, batch := range []string{"5", "1"} {
		t.Run("batch"+batch, func(t *testing.T) {
			cfg, err := parseFlags([]string{"--scenario", "fanin", "--members", "500", "--messages", "5",
				"--batch", batch, "--conns", "200", "--quiet"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := execute(ctx, cfg, io.Discard)
			var out strings.Builder
			res.writeTable(&out)
			if !res.OK {
				t.Fatalf("run failed: %s\n%s", res.Error, out.String())
			}
			want := map[string]float64{
				"receipts_acked": 500 * 5,
				"verified_exact": 1,
			}
			for name, v := range want {
				if got := res.Values[name]; got != v {
					t.Errorf("%s = %v, want %v\n%s", name, got, v, out.String())
				}
			}
			if res.Values["push_final_s"] <= 0 {
				t.Errorf("the sender's pushed counts never reached 500 for every message\n%s", out.String())
			}
		})
	}
}
