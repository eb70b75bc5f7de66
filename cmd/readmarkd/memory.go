package main

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// The automatic memory limit is a share of the memory the process may
// use: 75 % of a cgroup (container) limit, leaving room for what the Go
// limit does not count (Pebble's 256 MiB block cache is allocated outside
// the Go heap) and for the page cache charged to the cgroup; 50 % of the
// physical memory without one, as the server shares the host.
const (
	cgroupShare   = 0.75
	physicalShare = 0.50
	// gogcWithLimit is GOGC when a memory limit bounds the heap. GC work
	// is paid per cycle and a cycle starts each time the heap grows by
	// GOGC % over the live heap, so 200 halves the cycles of the default
	// 100 for a peak heap of 3x live instead of 2x; the limit makes the GC
	// run early if that peak would not fit. Not off: without GOGC the heap
	// would grow to the limit (gigabytes on a big host) before the first
	// cycle, taking memory from the page cache the database reads through.
	gogcWithLimit = 200
)

// memoryPlan is what applyMemory sets: limit < 0 or gogc == keep leave
// the runtime's own value (from GOMEMLIMIT / GOGC or the defaults).
type memoryPlan struct {
	limit int64
	gogc  int
	why   []string
}

const keep = math.MinInt

// planMemory decides the memory limit and GOGC from the --memory-limit and
// --gogc flags ("auto", "off" or a value), the environment (GOMEMLIMIT and
// GOGC, which "auto" respects) and the cgroup and physical memory in bytes
// (0: unknown).
func planMemory(limitFlag, gogcFlag string, getenv func(string) string, cgroup, physical uint64) (memoryPlan, error) {
	p := memoryPlan{limit: -1, gogc: keep}
	limited := false
	switch l := strings.TrimSpace(limitFlag); {
	case l == "auto" && getenv("GOMEMLIMIT") != "":
		limited = getenv("GOMEMLIMIT") != "off"
		p.why = append(p.why, "memory limit from GOMEMLIMIT")
	case l == "auto" && cgroup > 0 && (physical == 0 || cgroup < physical):
		p.limit, limited = int64(float64(cgroup)*cgroupShare), true
		p.why = append(p.why, fmt.Sprintf("memory limit %s (%.0f%% of the cgroup limit %s)", size(p.limit), cgroupShare*100, size(int64(cgroup))))
	case l == "auto" && physical > 0:
		p.limit, limited = int64(float64(physical)*physicalShare), true
		p.why = append(p.why, fmt.Sprintf("memory limit %s (%.0f%% of physical memory %s)", size(p.limit), physicalShare*100, size(int64(physical))))
	case l == "auto":
		p.why = append(p.why, "no memory limit (memory size unknown)")
	case l == "off":
		p.limit = math.MaxInt64
		p.why = append(p.why, "no memory limit (--memory-limit off)")
	default:
		n, err := parseSize(l)
		if err != nil {
			return p, fmt.Errorf("--memory-limit: %w", err)
		}
		p.limit, limited = n, true
		p.why = append(p.why, "memory limit "+size(n))
	}
	switch g := strings.TrimSpace(gogcFlag); {
	case g == "auto" && getenv("GOGC") != "":
		p.why = append(p.why, "GOGC from the environment")
	case g == "auto" && limited:
		p.gogc = gogcWithLimit
		p.why = append(p.why, fmt.Sprintf("GOGC %d (memory limit set)", gogcWithLimit))
	case g == "auto":
		p.why = append(p.why, "GOGC 100 (no memory limit)")
	case g == "off":
		if !limited {
			return p, errors.New("--gogc off needs a memory limit (--memory-limit or GOMEMLIMIT): the heap would grow without bound")
		}
		p.gogc = -1
		p.why = append(p.why, "GOGC off (collect at the memory limit)")
	default:
		n, err := strconv.Atoi(g)
		if err != nil || n < 1 {
			return p, fmt.Errorf("--gogc %q: want auto, off or a positive percentage", g)
		}
		p.gogc = n
		p.why = append(p.why, fmt.Sprintf("GOGC %d", n))
	}
	return p, nil
}

// apply sets the plan in the runtime.
func (p memoryPlan) apply() {
	if p.limit >= 0 {
		debug.SetMemoryLimit(p.limit)
	}
	if p.gogc != keep {
		debug.SetGCPercent(p.gogc)
	}
}

// parseSize parses a byte count with an optional unit B, KiB, MiB, GiB or
// TiB, as GOMEMLIMIT does.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("%q: want auto, off or a size such as 4GiB or 512MiB", s)
	}
	return int64(v * mult), nil
}

func size(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
