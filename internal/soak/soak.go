// Package soak holds the parts of the soak run (make soak, TestSoak in this
// package) that are plain logic: the least-squares slope of a resource series
// and its verdict, the classification of errors by fault windows, the
// resource readers (/proc and /metrics) and the Markdown report. The run
// itself lives in soak_run_test.go; it starts the real binaries against a
// private broker node and injects faults.
package soak

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Point is one sample of a metric: at seconds since the run began.
type Point struct {
	At    time.Duration
	Value float64
}

// Slope is the least-squares slope of points, in units per hour. ok is false
// with fewer than 3 points or when every point has the same time.
func Slope(points []Point) (perHour float64, ok bool) {
	n := float64(len(points))
	if len(points) < 3 {
		return 0, false
	}
	var sx, sy float64
	for _, p := range points {
		sx += p.At.Hours()
		sy += p.Value
	}
	mx, my := sx/n, sy/n
	var sxx, sxy float64
	for _, p := range points {
		dx := p.At.Hours() - mx
		sxx += dx * dx
		sxy += dx * (p.Value - my)
	}
	if sxx == 0 {
		return 0, false
	}
	return sxy / sxx, true
}

// Median of the points' values (0 for none).
func Median(points []Point) float64 {
	if len(points) == 0 {
		return 0
	}
	vs := make([]float64, len(points))
	for i, p := range points {
		vs[i] = p.Value
	}
	sort.Float64s(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// Tolerance says how far a series' fitted line may rise over the fitted span
// and still be flat: at most max(Abs, Rel × the median value). It is judged
// on the rise over the span, not on the slope per hour, because a short run
// magnifies a step of one goroutine into a steep hourly slope; the report
// shows both.
type Tolerance struct {
	Abs float64 // units
	Rel float64 // fraction of the median
}

// Limit is the largest flat rise for a series with this median.
func (t Tolerance) Limit(median float64) float64 { return math.Max(t.Abs, t.Rel*math.Abs(median)) }

// Metric is one resource the run samples per process.
type Metric struct {
	Name string // "RSS", "fds", "goroutines"
	Unit string // shown after values
	// Scale divides raw values for display (1<<20 shows bytes as MiB).
	Scale float64
	Tol   Tolerance // in raw units
	// Info: shown with its slope, never a problem. RSS (VmRSS) is RssAnon plus
	// RssFile; RssFile is mapped file pages, which grow with the API's job store
	// (a memory-mapped bbolt file that keeps every job for JOB_TTL, 24 h) and
	// which the kernel reclaims under pressure: not a leak. A leak shows in
	// RssAnon, the process's own memory, which is judged.
	Info bool
}

// Metrics are the sampled resources with the tolerances of the verdict.
var Metrics = []Metric{
	{Name: "RssAnon", Unit: "MiB", Scale: 1 << 20, Tol: Tolerance{Abs: 4 << 20, Rel: 0.10}},
	// fds is the process's own descriptors: every open one less the established
	// HTTP connections it accepted (conns_in, which follow the load generator's
	// connection pool, not the process). An accepted connection left in
	// CLOSE_WAIT (the peer closed, the process did not) stays in fds: a leak.
	{Name: "fds", Unit: "", Scale: 1, Tol: Tolerance{Abs: 5, Rel: 0.10}},
	{Name: "goroutines", Unit: "", Scale: 1, Tol: Tolerance{Abs: 10, Rel: 0.10}},
	{Name: "RSS", Unit: "MiB", Scale: 1 << 20, Tol: Tolerance{Abs: 4 << 20, Rel: 0.10}, Info: true},
	{Name: "RssFile", Unit: "MiB", Scale: 1 << 20, Tol: Tolerance{Abs: 4 << 20, Rel: 0.10}, Info: true},
	{Name: "conns_in", Unit: "", Scale: 1, Tol: Tolerance{Abs: 5, Rel: 0.10}, Info: true},
}

// Verdict of one metric of one process.
type Verdict string

const (
	Flat    Verdict = "flat"
	Growing Verdict = "GROWING"
	// Short: too few samples after the warm-up to fit a slope.
	Short Verdict = "too short"
)

// MinPoints is the fewest samples after the warm-up that get a verdict.
const MinPoints = 5

// Judgement is the verdict on one metric of one process.
type Judgement struct {
	Verdict Verdict
	PerHour float64       // least-squares slope per hour
	Span    time.Duration // from the first to the last fitted sample
	Rise    float64       // PerHour over Span: what the fitted line gained
	Median  float64       // of the fitted samples
	Limit   float64       // the largest flat Rise for this Median
	Used    int           // fitted samples
}

// Judge fits the slope of points taken at or after warmup (since the
// process's first sample) and outside the fault windows (a worker cut off
// from a restarting broker drops its consumers' goroutines for a while: a
// dip that would tilt the fit), and says whether the fitted line's rise over
// the fitted span stays within m's tolerance. A falling line is flat (memory
// given back is no leak).
func Judge(m Metric, points []Point, warmup time.Duration, faults []Window) Judgement {
	if len(points) == 0 {
		return Judgement{Verdict: Short}
	}
	from := points[0].At + warmup
	var kept []Point
	for _, p := range points {
		if p.At >= from && Explain(faults, p.At, p.At) < 0 {
			kept = append(kept, p)
		}
	}
	j := Judgement{Verdict: Short, Median: Median(kept), Used: len(kept)}
	j.Limit = m.Tol.Limit(j.Median)
	if len(kept) < MinPoints {
		return j
	}
	perHour, ok := Slope(kept)
	if !ok {
		return j
	}
	j.PerHour, j.Span = perHour, kept[len(kept)-1].At-kept[0].At
	j.Rise = perHour * j.Span.Hours()
	j.Verdict = Flat
	if j.Rise > j.Limit {
		j.Verdict = Growing
	}
	return j
}

// Window is the time a fault may explain errors in: from when it was
// injected to when the farm was ready again, plus Grace.
type Window struct {
	Kind       string // "broker-restart", "worker-kill"
	From, To   time.Duration
	Grace      time.Duration
	Detail     string
	RecoveryOK bool
}

// Explains reports whether a call that ran from start to end overlaps the
// window (with its grace after To).
func (w Window) Explains(start, end time.Duration) bool {
	return start <= w.To+w.Grace && end >= w.From
}

// Explain returns the index of the first window that explains a call from
// start to end, or -1.
func Explain(ws []Window, start, end time.Duration) int {
	for i, w := range ws {
		if w.Explains(start, end) {
			return i
		}
	}
	return -1
}

// Failure is one failed call: what it was, its label and when it ran.
type Failure struct {
	Kind       string // "process", "jobs-submit", "jobs-poll", "job-final"
	Label      string // "503", "timeout", "failed: ..."
	Start, End time.Duration
}

// Tally counts failures by kind and label, split into explained (by a fault
// window) and unexplained.
type Tally struct {
	Explained, Unexplained map[string]int // "kind label" -> count
	// FirstUnexplained holds up to 20 unexplained failures, for the report.
	FirstUnexplained []Failure
	// PerWindow counts the failures each window explained (the first window
	// that explains a failure gets it).
	PerWindow []int
}

// Classify sorts failures into a Tally by the windows.
func Classify(fs []Failure, ws []Window) Tally {
	t := Tally{Explained: map[string]int{}, Unexplained: map[string]int{}, PerWindow: make([]int, len(ws))}
	for _, f := range fs {
		k := f.Kind + " " + f.Label
		if i := Explain(ws, f.Start, f.End); i >= 0 {
			t.Explained[k]++
			t.PerWindow[i]++
			continue
		}
		t.Unexplained[k]++
		if len(t.FirstUnexplained) < 20 {
			t.FirstUnexplained = append(t.FirstUnexplained, f)
		}
	}
	return t
}

// Total of a count map.
func Total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// ReadRSS reads VmRSS of pid from /proc, in bytes.
func ReadRSS(pid int) (float64, error) {
	v, err := ReadStatus(pid, "VmRSS")
	return v[0], err
}

// ReadStatus reads the kB fields of /proc/<pid>/status (VmRSS, RssAnon,
// RssFile), in bytes, in the order asked.
func ReadStatus(pid int, fields ...string) ([]float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return make([]float64, len(fields)), err
	}
	vs := make([]float64, len(fields))
	for i, f := range fields {
		if vs[i], err = parseStatusKB(b, f); err != nil {
			return vs, err
		}
	}
	return vs, nil
}

// parseVmRSS finds "VmRSS:  1234 kB" in a /proc/<pid>/status.
func parseVmRSS(status []byte) (float64, error) { return parseStatusKB(status, "VmRSS") }

// parseStatusKB finds "<field>:  1234 kB" in a /proc/<pid>/status.
func parseStatusKB(status []byte, field string) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s line %q: want <n> kB", field, sc.Text())
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s line %q: %w", field, sc.Text(), err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s line", field)
}

// CountFDs counts the open file descriptors of pid (/proc/<pid>/fd).
func CountFDs(pid int) (float64, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return float64(len(es)), nil
}

// FDs is what [CountFDsByKind] found.
type FDs struct {
	All float64 // every open descriptor
	// Inbound is the established TCP connections accepted on one of the ports
	// asked about (the HTTP listener's).
	Inbound float64
}

// CountFDsByKind counts pid's open descriptors and, among its sockets, the
// established TCP connections whose local port is one of ports. The sockets are
// matched by inode with /proc/<pid>/net/tcp and tcp6 (the process's own network
// namespace). A connection in any other state (CLOSE_WAIT: the peer closed and
// the process did not) is not counted as inbound.
func CountFDsByKind(pid int, ports ...int) (FDs, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, err := os.ReadDir(dir)
	if err != nil {
		return FDs{}, err
	}
	res := FDs{All: float64(len(es))}
	if len(ports) == 0 {
		return res, nil
	}
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	inbound := map[string]bool{} // socket inodes
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			return res, err
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "01" { // 01: ESTABLISHED
				continue
			}
			_, portHex, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if port, err := strconv.ParseInt(portHex, 16, 32); err == nil && want[int(port)] {
				inbound[fs[9]] = true
			}
		}
	}
	for _, e := range es {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inbound[strings.TrimSuffix(ino, "]")] {
			res.Inbound++
		}
	}
	return res, nil
}

// ParseGauge returns the value of the unlabelled sample name in a Prometheus
// text exposition (go_goroutines).
func ParseGauge(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || !strings.HasPrefix(rest, " ") {
			continue // a comment, another metric, or name_suffix / name{...}
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			break
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no sample %s", name)
}
