package thirdparty

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// compareOptions configures a comparison run.
type compareOptions struct {
	rounds     int
	scale      scale
	libs       []string   // libraries, gorilla first
	scenarios  []scenario // rows to measure
	serverCPUs string     // taskset CPU list for the servers; "" for no pinning
	logf       func(format string, args ...any)
}

// results holds every figure: results[scenario][lib][round] has one value
// per row of the scenario, NaN where the measurement failed.
type results map[string]map[string][][]float64

// compare measures every scenario for every library. Within a scenario
// the libraries take turns, one measurement each per round, in an order
// rotated every round, so that a disturbance on the shared machine falls
// on all of them alike. It returns the figures and the failures.
func compare(o compareOptions) (results, []error) {
	res := results{}
	var errs []error
	for _, sc := range o.scenarios {
		res[sc.name] = map[string][][]float64{}
		for r := range o.rounds {
			for i := range o.libs {
				lib := o.libs[(i+r)%len(o.libs)]
				vals, err := measureOnce(sc, lib, o)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s, %s, round %d: %w", sc.name, lib, r+1, err))
					vals = make([]float64, len(sc.rows))
					for j := range vals {
						vals[j] = math.NaN()
					}
				}
				res[sc.name][lib] = append(res[sc.name][lib], vals)
			}
		}
	}
	return res, errs
}

// measureOnce runs one scenario against a fresh server process.
func measureOnce(sc scenario, lib string, o compareOptions) ([]float64, error) {
	srv, err := startChild(lib, childOptions{deflate: sc.deflate, cpus: o.serverCPUs})
	if err != nil {
		return nil, err
	}
	vals, err := sc.run(&runEnv{lib: lib, srv: srv, scale: o.scale, logf: o.logf})
	if err == nil {
		var st serverStats
		st, err = srv.stats(false)
		if err == nil && st.errors > 0 {
			err = fmt.Errorf("the server reported %d connection errors", st.errors)
		}
	}
	srv.stop()
	if err != nil {
		if out := strings.TrimSpace(srv.stderr.String()); out != "" {
			err = fmt.Errorf("%w\nserver stderr:\n%s", err, out)
		}
		return nil, err
	}
	return vals, nil
}

func median(xs []float64) float64 {
	xs = slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// column returns a library's figures for row i of a scenario, by round.
func (r results) column(sc, lib string, i int) []float64 {
	var xs []float64
	for _, vals := range r[sc][lib] {
		xs = append(xs, vals[i])
	}
	return xs
}

// ratio returns the median over rounds of a's figure divided by b's in
// the same round.
func (r results) ratio(sc, a, b string, i int) float64 {
	as, bs := r.column(sc, a, i), r.column(sc, b, i)
	var xs []float64
	for k := range min(len(as), len(bs)) {
		xs = append(xs, as[k]/bs[k])
	}
	return median(xs)
}

// ratioRange returns the smallest and largest per-round ratio of a's
// figure to b's.
func (r results) ratioRange(sc, a, b string, i int) (lo, hi float64) {
	as, bs := r.column(sc, a, i), r.column(sc, b, i)
	lo, hi = math.NaN(), math.NaN()
	for k := range min(len(as), len(bs)) {
		x := as[k] / bs[k]
		if math.IsNaN(x) {
			continue
		}
		if math.IsNaN(lo) || x < lo {
			lo = x
		}
		if math.IsNaN(hi) || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// table renders the results as markdown: for the rows, then for
// the extra rows, a table of gorilla's absolute figure with every
// library's ratio to it and one of duplex against the best of the others.
// Ratios are medians of per-round ratios, so they need not equal the
// ratio of the medians the tables show beside them.
func (r results) table(scs []scenario, libs []string) string {
	var b strings.Builder
	b.WriteString(r.tables(scs, libs, false))
	b.WriteString("\nServer CPU time per echo behind the throughput rows:\n\n")
	b.WriteString(r.tables(scs, libs, true))
	return b.String()
}

func (r results) tables(scs []scenario, libs []string, extra bool) string {
	base := libs[0]
	var b strings.Builder
	fmt.Fprintf(&b, "| row | better | %s (absolute) |", base)
	for _, lib := range libs[1:] {
		fmt.Fprintf(&b, " %s ÷ %s |", lib, base)
	}
	b.WriteString("\n|---|---|---:|")
	b.WriteString(strings.Repeat("---:|", len(libs)-1))
	b.WriteString("\n")
	for _, sc := range scs {
		for i, row := range sc.rows {
			if row.extra != extra {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s %s |", row.label, direction(row), number(median(r.column(sc.name, base, i))), row.unit)
			for _, lib := range libs[1:] {
				fmt.Fprintf(&b, " %s |", times(r.ratio(sc.name, lib, base, i)))
			}
			b.WriteString("\n")
		}
	}
	if !slices.Contains(libs, "duplex") || len(libs) < 2 {
		return b.String()
	}
	b.WriteString("\n| row | duplex | best peer | best peer's figure | duplex ÷ best peer | range over rounds | verdict |\n|---|---:|---|---:|---:|---|---|\n")
	for _, sc := range scs {
		for i, row := range sc.rows {
			if row.extra != extra {
				continue
			}
			// The best peer is the one duplex compares worst with: the
			// lowest median ratio on a higher-is-better row, the highest
			// on a lower-is-better one.
			best, x := "", math.NaN()
			for _, lib := range libs {
				if strings.HasPrefix(lib, "duplex") {
					continue
				}
				y := r.ratio(sc.name, "duplex", lib, i)
				if !math.IsNaN(y) && (best == "" || (row.higherBetter && y < x) || (!row.higherBetter && y > x)) {
					best, x = lib, y
				}
			}
			if best == "" {
				continue
			}
			lo, hi := r.ratioRange(sc.name, "duplex", best, i)
			fmt.Fprintf(&b, "| %s | %s %s | %s | %s %s | %s | %s–%s | %s |\n", row.label,
				number(median(r.column(sc.name, "duplex", i))), row.unit,
				best, number(median(r.column(sc.name, best, i))), row.unit,
				times(x), times(lo), times(hi), verdict(row, x))
		}
	}
	return b.String()
}

func direction(r row) string {
	if r.higherBetter {
		return "higher"
	}
	return "lower"
}

// verdict says how duplex fares given its ratio x to the best peer.
func verdict(r row, x float64) string {
	switch {
	case math.IsNaN(x):
		return "no figure"
	case math.Abs(x-1) < 0.03:
		return "even (within 3%)"
	case r.higherBetter && x < 1:
		return fmt.Sprintf("duplex behind: %.0f%% less", (1-x)*100)
	case r.higherBetter:
		return fmt.Sprintf("duplex ahead: %.0f%% more", (x-1)*100)
	case x > 1:
		return fmt.Sprintf("duplex behind: %.0f%% more", (x-1)*100)
	default:
		return fmt.Sprintf("duplex ahead: %.0f%% less", (1-x)*100)
	}
}

func times(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}

// number formats a figure with three significant digits or more, and
// thousands separated.
func number(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case math.Abs(x) >= 100:
		s := strconv.FormatFloat(math.Round(x), 'f', 0, 64)
		for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
}

// splitCPUs divides the CPUs this process may run on between the load
// generator and the servers: the first half and the second. It returns
// taskset lists, or "" for both when there is only one CPU or taskset is
// missing.
func splitCPUs() (gen, server string) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return "", ""
	}
	cpus := allowedCPUs()
	if len(cpus) < 2 {
		return "", ""
	}
	list := func(xs []int) string {
		var s []string
		for _, x := range xs {
			s = append(s, strconv.Itoa(x))
		}
		return strings.Join(s, ",")
	}
	half := len(cpus) / 2
	return list(cpus[:half]), list(cpus[half:])
}

// allowedCPUs parses Cpus_allowed_list from /proc/self/status.
func allowedCPUs() []int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	var cpus []int
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		for _, part := range strings.Split(strings.TrimSpace(v), ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.Atoi(lo)
			z := a
			var err2 error
			if isRange {
				z, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil {
				return nil
			}
			for c := a; c <= z; c++ {
				cpus = append(cpus, c)
			}
		}
	}
	return cpus
}

// pinProcess pins every thread of this process to cpus with taskset; the
// threads the runtime starts later inherit the mask.
func pinProcess(cpus string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %v: %s", err, out)
	}
	return nil
}
