package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Result is what a scenario reports: printed as a table, or as JSON with
// --json.
type Result struct {
	Scenario  string             `json:"scenario"`
	Target    string             `json:"target"` // "embedded" or the server URL
	OK        bool               `json:"ok"`
	Error     string             `json:"error,omitempty"`
	Params    map[string]any     `json:"params"`
	Values    map[string]float64 `json:"metrics"`
	Latency   map[string]Summary `json:"latency_ms"`
	Notes     []string           `json:"notes,omitempty"`
	paramKeys []string
	metrics   []metric
	latencies []latencyRow
}

type metric struct {
	name, unit, help string
	value            float64
}

type latencyRow struct {
	name, help string
	s          Summary
}

func newResult(scenario string) *Result {
	return &Result{
		Scenario: scenario,
		Params:   map[string]any{},
		Values:   map[string]float64{},
		Latency:  map[string]Summary{},
	}
}

func (r *Result) param(name string, v any) {
	if _, ok := r.Params[name]; !ok {
		r.paramKeys = append(r.paramKeys, name)
	}
	r.Params[name] = v
}

// metric records a value; unit and help are for the table.
func (r *Result) metric(name string, v float64, unit, help string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	if _, ok := r.Values[name]; ok {
		for i := range r.metrics {
			if r.metrics[i].name == name {
				r.metrics[i].value = v
			}
		}
	} else {
		r.metrics = append(r.metrics, metric{name: name, unit: unit, help: help, value: v})
	}
	r.Values[name] = v
}

func (r *Result) latency(name, help string, s *samples) {
	sum := s.summary()
	r.Latency[name] = sum
	r.latencies = append(r.latencies, latencyRow{name: name, help: help, s: sum})
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// noteOnce adds a note unless it is there already.
func (r *Result) noteOnce(s string) {
	if !slices.Contains(r.Notes, s) {
		r.Notes = append(r.Notes, s)
	}
}

func (r *Result) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *Result) writeTable(w io.Writer) {
	status := "OK"
	if !r.OK {
		status = "FAILED: " + r.Error
	}
	fmt.Fprintf(w, "readmark-bench %s against %s: %s\n\n", r.Scenario, r.Target, status)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARAMETER\tVALUE")
	for _, k := range r.paramKeys {
		fmt.Fprintf(tw, "%s\t%v\n", k, r.Params[k])
	}
	tw.Flush()
	if len(r.metrics) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "METRIC\tVALUE\tUNIT\tMEANING")
		for _, m := range r.metrics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.name, num(m.value), m.unit, m.help)
		}
		tw.Flush()
	}
	if len(r.latencies) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "LATENCY (ms)\tCOUNT\tP50\tP90\tP99\tP99.9\tMAX\tMEASURED")
		for _, l := range r.latencies {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.name, l.s.Count,
				num(l.s.P50), num(l.s.P90), num(l.s.P99), num(l.s.P999), num(l.s.Max), l.help)
		}
		tw.Flush()
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nNOTES")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", wrap(n, 100, "  "))
		}
	}
}

// num prints v compactly: integers without decimals, others with 3
// significant decimals at most.
func num(v float64) string {
	if v == float64(int64(v)) && v < 1e15 && v > -1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	switch {
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1 || v <= -1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func wrap(s string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		if i > 0 {
			if col+1+len(word) > width {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}
