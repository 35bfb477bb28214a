// Command benchdoc turns the output of `go test -bench` into the generated
// section of docs/benchmarks.md. It is what `make bench` runs after the
// benchmarks:
//
//	go test -run '^$' -bench . -benchmem -count=1 ./... | tee bench.out
//	go run ./cmd/benchdoc -in bench.out -out docs/benchmarks.md
//
// It rewrites only the lines between the markers
//
//	<!-- benchmarks:begin -->
//	<!-- benchmarks:end -->
//
// and leaves the hand-written prose around them alone. The section says when
// the benchmarks ran (the input file's modification time), with which Go
// (the toolchain running benchdoc, which `make bench` also used for the
// benchmarks) on which CPU, then has one table per package: time per
// operation in human units, bytes and allocations per operation, and every
// custom metric a benchmark reported with b.ReportMetric.
//
// It exits non-zero, writing nothing, when the input cannot be read, holds
// no benchmark result or reports a failure (the pipe into tee hides go
// test's exit status, so benchdoc is where a failed run stops), or when the
// output file lacks the markers.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The markers around the generated region of the output file.
const (
	beginMarker = "<!-- benchmarks:begin -->"
	endMarker   = "<!-- benchmarks:end -->"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchdoc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "bench.out", "`file` holding the output of go test -bench (- for standard input)")
	out := fs.String("out", "docs/benchmarks.md", "Markdown `file` whose generated region is rewritten")
	goVersion := fs.String("go", runtime.Version(), "Go `version` to report (default: the toolchain running benchdoc)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; use -in and -out", fs.Args())
	}

	input, ran, err := readInput(*in)
	if err != nil {
		return err
	}
	report, err := parse(bytes.NewReader(input))
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	report.Date, report.GoVersion = ran, *goVersion

	doc, err := os.ReadFile(*out)
	if err != nil {
		return fmt.Errorf("read %s: %w", *out, err)
	}
	updated, err := replaceRegion(doc, render(report))
	if err != nil {
		return fmt.Errorf("%s: %w", *out, err)
	}
	return writeFileAtomic(*out, updated)
}

// readInput returns the benchmark output and when it was produced: the
// file's modification time, or now for standard input.
func readInput(path string) ([]byte, time.Time, error) {
	if path == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("read standard input: %w", err)
		}
		return b, time.Now(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read benchmark output: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read benchmark output: %w", err)
	}
	return b, st.ModTime(), nil
}

// Report is a parsed benchmark run.
type Report struct {
	Date      time.Time
	GoVersion string
	GOOS      string
	GOARCH    string
	CPU       string
	Procs     int // GOMAXPROCS, from the -N suffix of the benchmark names
	Packages  []*Package
}

// Package is the benchmarks of one package, in the order they ran.
type Package struct {
	Path       string
	Benchmarks []*Benchmark
	Skipped    []string // benchmarks that reported --- SKIP
}

// Benchmark is one benchmark's result. With -count above 1 its values are
// the means of its runs.
type Benchmark struct {
	Name   string   // without the -GOMAXPROCS suffix
	Runs   int      // result lines averaged
	Units  []string // in the order of the first result line
	Values map[string]float64
}

// Standard units, rendered in their own columns.
const (
	unitTime   = "ns/op"
	unitBytes  = "B/op"
	unitAllocs = "allocs/op"
)

// parse reads go test -bench output. It returns an error if the output
// reports a failure or holds no benchmark result.
func parse(r io.Reader) (*Report, error) {
	rep := &Report{}
	pkgs := map[string]*Package{}
	var cur *Package
	var failures []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if key, val, ok := header(line); ok {
			switch key {
			case "goos":
				rep.GOOS = first(rep.GOOS, val)
			case "goarch":
				rep.GOARCH = first(rep.GOARCH, val)
			case "cpu":
				rep.CPU = first(rep.CPU, val)
			case "pkg":
				cur = pkgs[val]
				if cur == nil {
					cur = &Package{Path: val}
					pkgs[val] = cur
					rep.Packages = append(rep.Packages, cur)
				}
			}
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "--- FAIL:"):
			failures = append(failures, strings.TrimSpace(strings.TrimPrefix(trimmed, "--- FAIL:")))
			continue
		case strings.HasPrefix(line, "FAIL\t"), strings.HasPrefix(line, "panic: "):
			failures = append(failures, line)
			continue
		case strings.HasPrefix(trimmed, "--- SKIP:"):
			if cur != nil {
				name, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(trimmed, "--- SKIP:")), " ")
				cur.Skipped = append(cur.Skipped, name)
			}
			continue
		}
		name, procs, values, units, ok, err := resultLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !ok {
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: benchmark result %s before any pkg: line", n, name)
		}
		if procs > 0 {
			rep.Procs = procs
		}
		cur.add(name, values, units)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	if len(failures) > 0 {
		return nil, fmt.Errorf("the run reports failures, fix them first: %s", strings.Join(failures, "; "))
	}
	kept := rep.Packages[:0]
	for _, p := range rep.Packages {
		if len(p.Benchmarks) > 0 || len(p.Skipped) > 0 {
			kept = append(kept, p)
		}
	}
	rep.Packages = kept
	for _, p := range rep.Packages {
		if len(p.Benchmarks) > 0 {
			return rep, nil
		}
	}
	return nil, errors.New("no benchmark results found (expected lines such as \"BenchmarkX-8  1000  1234 ns/op\"; was the output of go test -bench passed?)")
}

func first(have, v string) string {
	if have != "" {
		return have
	}
	return v
}

// header splits a "key: value" configuration line of the four keys the
// testing package prints before a package's benchmarks.
func header(line string) (key, val string, ok bool) {
	key, val, ok = strings.Cut(line, ": ")
	switch key {
	case "goos", "goarch", "pkg", "cpu":
		return key, strings.TrimSpace(val), ok
	}
	return "", "", false
}

// resultLine parses "BenchmarkName-8  <iterations>  <value> <unit> ...".
// ok is false for a line that is not a result (a benchmark's log output, or
// a bare name printed before output the benchmark wrote); err is set for a
// line that looks like a result but is malformed.
func resultLine(line string) (name string, procs int, values map[string]float64, units []string, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return "", 0, nil, nil, false, nil
	}
	if _, err := strconv.ParseUint(f[1], 10, 64); err != nil {
		return "", 0, nil, nil, false, nil
	}
	name = f[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if p, err := strconv.Atoi(name[i+1:]); err == nil && p > 0 {
			name, procs = name[:i], p
		}
	}
	rest := f[2:]
	if len(rest)%2 != 0 {
		return "", 0, nil, nil, false, fmt.Errorf("benchmark %s: values and units do not pair up in %q", name, line)
	}
	values = map[string]float64{}
	for i := 0; i < len(rest); i += 2 {
		v, err := strconv.ParseFloat(rest[i], 64)
		if err != nil {
			return "", 0, nil, nil, false, fmt.Errorf("benchmark %s: value %q of %s is not a number", name, rest[i], rest[i+1])
		}
		unit := rest[i+1]
		if _, dup := values[unit]; !dup {
			units = append(units, unit)
		}
		values[unit] = v
	}
	return name, procs, values, units, true, nil
}

func (p *Package) add(name string, values map[string]float64, units []string) {
	for _, b := range p.Benchmarks {
		if b.Name != name {
			continue
		}
		for _, u := range units {
			old, had := b.Values[u]
			if !had {
				b.Units = append(b.Units, u)
			}
			b.Values[u] = (old*float64(b.Runs) + values[u]) / float64(b.Runs+1) // running mean
		}
		b.Runs++
		return
	}
	p.Benchmarks = append(p.Benchmarks, &Benchmark{Name: name, Runs: 1, Units: units, Values: values})
}

// render returns the Markdown of the generated region.
func render(r *Report) string {
	var b strings.Builder
	b.WriteString("<!-- Generated by `go run ./cmd/benchdoc` from the output of `make bench`; edits here are overwritten. -->\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", r.Date.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- Go: %s", r.GoVersion)
	if r.GOOS != "" {
		fmt.Fprintf(&b, ", %s/%s", r.GOOS, r.GOARCH)
	}
	if r.Procs > 0 {
		fmt.Fprintf(&b, ", GOMAXPROCS=%d", r.Procs)
	}
	b.WriteString("\n")
	cpu := r.CPU
	if cpu == "" {
		cpu = "(not reported)"
	}
	fmt.Fprintf(&b, "- CPU: %s\n", cpu)
	for _, p := range r.Packages {
		fmt.Fprintf(&b, "\n### %s\n\n", p.Path)
		if len(p.Benchmarks) > 0 {
			b.WriteString("| Benchmark | time/op | B/op | allocs/op | other metrics |\n")
			b.WriteString("|---|--:|--:|--:|---|\n")
			for _, bm := range p.Benchmarks {
				name := "`" + bm.Name + "`"
				if bm.Runs > 1 {
					name += fmt.Sprintf(" (mean of %d)", bm.Runs)
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(name),
					duration(bm.Values, unitTime), integer(bm.Values, unitBytes), integer(bm.Values, unitAllocs), cell(extras(bm)))
			}
		}
		if len(p.Skipped) > 0 {
			fmt.Fprintf(&b, "\nSkipped: %s.\n", "`"+strings.Join(p.Skipped, "`, `")+"`")
		}
	}
	return b.String()
}

// extras lists the non-standard metrics of bm in the order reported.
func extras(bm *Benchmark) string {
	var parts []string
	for _, u := range bm.Units {
		switch u {
		case unitTime, unitBytes, unitAllocs:
			continue
		}
		parts = append(parts, number(bm.Values[u])+" "+u)
	}
	return strings.Join(parts, " · ")
}

// duration renders nanoseconds in ns, µs, ms or s with three significant
// digits.
func duration(values map[string]float64, unit string) string {
	ns, ok := values[unit]
	if !ok {
		return "–"
	}
	switch a := math.Abs(ns); {
	case a < 1e3:
		return sig3(ns) + " ns"
	case a < 1e6:
		return sig3(ns/1e3) + " µs"
	case a < 1e9:
		return sig3(ns/1e6) + " ms"
	default:
		return sig3(ns/1e9) + " s"
	}
}

// sig3 formats v with three significant digits and no exponent.
func sig3(v float64) string {
	a := math.Abs(v)
	prec := 0
	switch {
	case a == 0:
	case a < 10:
		prec = 2
	case a < 100:
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func integer(values map[string]float64, unit string) string {
	v, ok := values[unit]
	if !ok {
		return "–"
	}
	return grouped(int64(math.Round(v)))
}

// number renders a custom metric: whole numbers with thousands separators,
// fractions with three significant digits.
func number(v float64) string {
	switch a := math.Abs(v); {
	case v == math.Trunc(v) && a < 1e15:
		return grouped(int64(v))
	case a >= 1000:
		return grouped(int64(math.Round(v)))
	case a < 0.1:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return sig3(v)
}

func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// cell escapes what would break a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// replaceRegion returns doc with the text between the markers replaced by
// generated. Each marker must appear exactly once, begin before end.
func replaceRegion(doc []byte, generated string) ([]byte, error) {
	s := string(doc)
	nb, ne := strings.Count(s, beginMarker), strings.Count(s, endMarker)
	switch {
	case nb == 0 || ne == 0:
		return nil, fmt.Errorf("missing marker(s): the file must contain %s and, after it, %s around the generated section", beginMarker, endMarker)
	case nb > 1 || ne > 1:
		return nil, fmt.Errorf("%s and %s must each appear exactly once (found %d and %d)", beginMarker, endMarker, nb, ne)
	}
	i := strings.Index(s, beginMarker) + len(beginMarker)
	j := strings.Index(s, endMarker)
	if j < i {
		return nil, fmt.Errorf("%s comes before %s", endMarker, beginMarker)
	}
	return []byte(s[:i] + "\n" + generated + "\n" + s[j:]), nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory, keeping path's permissions.
func writeFileAtomic(path string, data []byte) (err error) {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
