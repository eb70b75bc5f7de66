package main

import "testing"

func TestPlanProcs(t *testing.T) {
	tests := []struct {
		name    string
		flag    string
		env     string
		runtime int
		want    int // 0: keep the runtime's value
		wantErr bool
	}{
		{"one CPU gets two Ps", "auto", "", 1, 2, false},
		{"more CPUs: the runtime's choice", "auto", "", 4, 0, false},
		{"the environment wins", "auto", "1", 1, 0, false},
		{"a number", "3", "", 1, 3, false},
		{"a number even below two", "1", "", 8, 1, false},
		{"zero", "0", "", 1, 0, true},
		{"garbage", "many", "", 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOMAXPROCS" {
					return tt.env
				}
				return ""
			}
			got, why, err := planProcs(tt.flag, getenv, tt.runtime)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want || (err == nil && why == "") {
				t.Fatalf("got %d (%q), want %d", got, why, tt.want)
			}
		})
	}
}
