package main

import (
	"fmt"
	"strconv"
	"strings"
)

// minProcs is the fewest Ps the automatic setting gives the runtime. With
// one P, a goroutine in a blocking system call (the WAL's fdatasync, a few
// thousand times a second under load) holds the only P until the runtime
// notices and hands it over, and requests wait meanwhile: on one pinned
// core, 20,000 receipts/s ran 94 % kept up with the core 24 % idle at one
// P, 97.6 % at two (BENCHMARKS.md).
const minProcs = 2

// planProcs decides GOMAXPROCS from the --gomaxprocs flag ("auto" or a
// number), the environment (GOMAXPROCS, which "auto" respects) and the
// runtime's own choice (the CPUs the process may use); 0 keeps the
// runtime's value.
func planProcs(flag string, getenv func(string) string, runtimeProcs int) (int, string, error) {
	switch f := strings.TrimSpace(flag); {
	case f == "auto" && getenv("GOMAXPROCS") != "":
		return 0, "GOMAXPROCS from the environment", nil
	case f == "auto" && runtimeProcs < minProcs:
		return minProcs, fmt.Sprintf("GOMAXPROCS %d (%d CPU: a blocking fsync must not hold the only P)", minProcs, runtimeProcs), nil
	case f == "auto":
		return 0, fmt.Sprintf("GOMAXPROCS %d (the CPUs available)", runtimeProcs), nil
	default:
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return 0, "", fmt.Errorf("--gomaxprocs %q: want auto or a positive number", f)
		}
		return n, fmt.Sprintf("GOMAXPROCS %d", n), nil
	}
}
