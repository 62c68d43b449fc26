package soak

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/bench"
)

func line(n int, every time.Duration, f func(i int) float64) []Point {
	ps := make([]Point, n)
	for i := range ps {
		ps[i] = Point{At: time.Duration(i) * every, Value: f(i)}
	}
	return ps
}

func TestSlope(t *testing.T) {
	// 60 samples 1 minute apart rising 2 per sample: 120 per hour.
	got, ok := Slope(line(60, time.Minute, func(i int) float64 { return 100 + 2*float64(i) }))
	if !ok || math.Abs(got-120) > 1e-9 {
		t.Errorf("slope of a 2/min line = %v, %v; want 120/h", got, ok)
	}
	// Noise that alternates around a constant has no slope.
	got, ok = Slope(line(61, 10*time.Second, func(i int) float64 { return 50 + float64(i%2)*10 - 5 }))
	if !ok || math.Abs(got) > 1 {
		t.Errorf("slope of alternating noise = %v, %v; want ~0", got, ok)
	}
	// A falling line.
	if got, _ := Slope(line(10, time.Hour, func(i int) float64 { return -3 * float64(i) })); math.Abs(got+3) > 1e-9 {
		t.Errorf("slope of a falling line = %v, want -3", got)
	}
	if _, ok := Slope(line(2, time.Second, func(int) float64 { return 1 })); ok {
		t.Error("slope of 2 points is ok")
	}
	if _, ok := Slope([]Point{{At: 5, Value: 1}, {At: 5, Value: 2}, {At: 5, Value: 3}}); ok {
		t.Error("slope of points at one time is ok")
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		vs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		var ps []Point
		for _, v := range tc.vs {
			ps = append(ps, Point{Value: v})
		}
		if got := Median(ps); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.vs, got, tc.want)
		}
	}
}

func TestJudge(t *testing.T) {
	gor := Metrics[2] // goroutines: a rise of at most max(10, 10% of the median)
	if gor.Name != "goroutines" {
		t.Fatalf("Metrics[2] = %s", gor.Name)
	}
	every := 10 * time.Second
	// 100 goroutines, one more every minute for 30 minutes: +60/h, a rise of
	// ~30 over the run > max(10, 10% of ~115) -> growing.
	j := Judge(gor, line(181, every, func(i int) float64 { return 100 + float64(i/6) }), 0, nil)
	if j.Verdict != Growing || math.Abs(j.PerHour-60) > 2 || math.Abs(j.Rise-30) > 1 || j.Used != 181 || j.Span != 30*time.Minute || j.Limit != 11.5 {
		t.Errorf("one goroutine a minute: %+v; want GROWING ~60/h, rise ~30 over 30m, limit 11.5", j)
	}
	// The same leak over 5 minutes rises only 5: within the tolerance.
	if j := Judge(gor, line(31, every, func(i int) float64 { return 100 + float64(i/6) }), 0, nil); j.Verdict != Flat {
		t.Errorf("one goroutine a minute for 5 minutes: %+v, want flat", j)
	}
	// A step of one goroutine in a short series: a steep hourly slope, a rise of
	// one: flat.
	if j := Judge(gor, line(12, every, func(i int) float64 { return 31 + float64(i/11) }), 0, nil); j.Verdict != Flat || j.PerHour < 10 {
		t.Errorf("a step of one: %+v, want flat with a steep slope", j)
	}
	// Constant: flat.
	if j := Judge(gor, line(30, every, func(int) float64 { return 40 }), 0, nil); j.Verdict != Flat || j.Rise != 0 {
		t.Errorf("constant: %+v", j)
	}
	// Falling (memory given back): flat.
	if j := Judge(gor, line(30, every, func(i int) float64 { return 400 - 10*float64(i) }), 0, nil); j.Verdict != Flat || j.Rise >= 0 {
		t.Errorf("falling: %+v", j)
	}
	// A steep start-up ramp in the warm-up, flat after it: the warm-up is cut.
	ramp := line(60, every, func(i int) float64 { return math.Min(float64(i)*20, 200) })
	if j := Judge(gor, ramp, 0, nil); j.Verdict != Growing {
		t.Errorf("ramp without a warm-up cut: %+v, want GROWING", j)
	}
	if j := Judge(gor, ramp, 2*time.Minute, nil); j.Verdict != Flat || j.Median != 200 || j.Used != 48 {
		t.Errorf("ramp with a 2m warm-up cut: %+v; want flat 200 with 48", j)
	}
	// The warm-up counts from the process's first sample: a process started
	// late in the run (a replacement worker) keeps its own.
	late := line(40, every, func(i int) float64 { return 30 })
	for i := range late {
		late[i].At += 20 * time.Minute
	}
	if j := Judge(gor, late, time.Minute, nil); j.Verdict != Flat || j.Used != 34 {
		t.Errorf("late process: %+v; want flat with 34", j)
	}
	// A dip during a fault (a worker's consumers gone while the broker
	// restarts) early in a short series tilts the fit; the samples in the
	// fault window are left out.
	dip := line(19, every, func(i int) float64 {
		if i >= 2 && i <= 4 {
			return 10
		}
		return 31
	})
	fault := []Window{{From: 15 * time.Second, To: 30 * time.Second, Grace: 15 * time.Second}}
	if j := Judge(gor, dip, 0, nil); j.Verdict != Growing {
		t.Errorf("dip kept: %+v, want GROWING (the fit tilted by the dip)", j)
	}
	if j := Judge(gor, dip, 0, fault); j.Verdict != Flat || j.Used != 16 || j.Rise != 0 {
		t.Errorf("dip left out: %+v, want flat with 16 samples", j)
	}
	// Too few samples after the warm-up.
	if j := Judge(gor, line(10, every, func(i int) float64 { return float64(i) }), 80*time.Second, nil); j.Verdict != Short {
		t.Errorf("2 samples after the warm-up: %+v, want %s", j, Short)
	}
	if j := Judge(gor, nil, 0, nil); j.Verdict != Short {
		t.Errorf("no samples: %+v", j)
	}
	// The relative tolerance: RSS of 100 MiB may rise 10 MiB, not 20.
	rss := Metrics[0]
	mib := float64(1 << 20)
	grow := func(total float64) []Point {
		return line(181, every, func(i int) float64 { return 100*mib + total*mib*float64(i)/180 })
	}
	if j := Judge(rss, grow(9), 0, nil); j.Verdict != Flat {
		t.Errorf("RSS 100 MiB +9 MiB: %+v, want flat", j)
	}
	if j := Judge(rss, grow(20), 0, nil); j.Verdict != Growing {
		t.Errorf("RSS 100 MiB +20 MiB: %+v, want GROWING", j)
	}
}

func TestWindows(t *testing.T) {
	s := time.Second
	w := Window{Kind: "broker-restart", From: 60 * s, To: 70 * s, Grace: 15 * s}
	for _, tc := range []struct {
		start, end time.Duration
		want       bool
	}{
		{50 * s, 59 * s, false}, // ended before the fault
		{50 * s, 60 * s, true},  // in flight when it began
		{65 * s, 66 * s, true},  // during it
		{84 * s, 95 * s, true},  // started within the grace
		{85 * s, 86 * s, true},  // at the grace's end
		{86 * s, 87 * s, false}, // after the grace
		{10 * s, 200 * s, true}, // spanning it
		{100 * s, 101 * s, false},
	} {
		if got := w.Explains(tc.start, tc.end); got != tc.want {
			t.Errorf("call %v–%v: explained %v, want %v", tc.start, tc.end, got, tc.want)
		}
	}
	ws := []Window{w, {Kind: "worker-kill", From: 120 * s, To: 125 * s, Grace: 15 * s}}
	if i := Explain(ws, 130*s, 131*s); i != 1 {
		t.Errorf("Explain in the second window = %d", i)
	}
	fs := []Failure{
		{Kind: "process", Label: "503", Start: 61 * s, End: 61 * s},
		{Kind: "process", Label: "503", Start: 62 * s, End: 62 * s},
		{Kind: "process", Label: "client-timeout", Start: 100 * s, End: 130 * s}, // overlaps the kill
		{Kind: "process", Label: "502", Start: 200 * s, End: 200 * s},
		{Kind: "jobs-submit", Label: "503 broker_unavailable", Start: 5 * s, End: 5 * s},
	}
	tally := Classify(fs, ws)
	if tally.Explained["process 503"] != 2 || tally.Explained["process client-timeout"] != 1 || Total(tally.Explained) != 3 {
		t.Errorf("explained = %v", tally.Explained)
	}
	if tally.Unexplained["process 502"] != 1 || tally.Unexplained["jobs-submit 503 broker_unavailable"] != 1 || Total(tally.Unexplained) != 2 {
		t.Errorf("unexplained = %v", tally.Unexplained)
	}
	if len(tally.PerWindow) != 2 || tally.PerWindow[0] != 2 || tally.PerWindow[1] != 1 {
		t.Errorf("per window = %v, want [2 1]", tally.PerWindow)
	}
	if len(tally.FirstUnexplained) != 2 || tally.FirstUnexplained[0].Label != "502" {
		t.Errorf("first unexplained = %v", tally.FirstUnexplained)
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tapi\nVmPeak:\t  99999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 20480*1024 {
		t.Errorf("parseVmRSS = %v, %v; want 20 MiB", got, err)
	}
	status += "RssAnon:\t   12288 kB\nRssFile:\t    8192 kB\n"
	if got, err := parseStatusKB([]byte(status), "RssFile"); err != nil || got != 8192*1024 {
		t.Errorf("RssFile = %v, %v; want 8 MiB", got, err)
	}
	vs, err := ReadStatus(os.Getpid(), "VmRSS", "RssAnon", "RssFile")
	if err != nil || vs[0] <= 0 || vs[1] <= 0 || vs[0] < vs[1] {
		t.Errorf("ReadStatus(self) = %v, %v", vs, err)
	}
	if _, err := ReadStatus(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("ReadStatus of a missing field succeeded")
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) succeeded", bad)
		}
	}
}

// The readers on this very process: real /proc, no fixture.
func TestReadersOnSelf(t *testing.T) {
	pid := os.Getpid()
	rss, err := ReadRSS(pid)
	if err != nil || rss < 1<<20 {
		t.Errorf("ReadRSS(self) = %v, %v", rss, err)
	}
	before, err := CountFDs(pid)
	if err != nil || before < 3 {
		t.Fatalf("CountFDs(self) = %v, %v", before, err)
	}
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	after, _ := CountFDs(pid)
	f.Close()
	if after != before+1 {
		t.Errorf("fds %v, then %v after opening a file; want one more", before, after)
	}
	if _, err := ReadRSS(1 << 30); err == nil {
		t.Error("ReadRSS of no process succeeded")
	}
	if _, err := CountFDs(1 << 30); err == nil {
		t.Error("CountFDs of no process succeeded")
	}
}

// CountFDsByKind on this process: a connection accepted on a listener's port is
// inbound while established, and no longer once the peer closed it and this end
// did not (CLOSE_WAIT: what a leak looks like).
func TestCountFDsByKindOnSelf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pid := os.Getpid()
	before, err := CountFDsByKind(pid, port)
	if err != nil || before.Inbound != 0 {
		t.Fatalf("before: %+v, %v", before, err)
	}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	open, err := CountFDsByKind(pid, port)
	// The client's end is a socket too, but its local port is another one.
	if err != nil || open.Inbound != 1 || open.All != before.All+2 {
		t.Errorf("one accepted connection: %+v (before %+v), %v; want 1 inbound and 2 more fds", open, before, err)
	}
	client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		closed, err := CountFDsByKind(pid, port)
		if err == nil && closed.Inbound == 0 && closed.All == before.All+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the peer closed: %+v, %v; want 0 inbound, the server's end still open", closed, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if other, err := CountFDsByKind(pid); err != nil || other.Inbound != 0 {
		t.Errorf("no ports: %+v, %v", other, err)
	}
}

func TestParseGauge(t *testing.T) {
	text := `# HELP go_goroutines_total not this one
go_goroutines_total 1
go_goroutines{x="y"} 2
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 17
`
	if v, err := ParseGauge(strings.NewReader(text), "go_goroutines"); err != nil || v != 17 {
		t.Errorf("ParseGauge = %v, %v; want 17", v, err)
	}
	if _, err := ParseGauge(strings.NewReader("go_threads 3\n"), "go_goroutines"); err == nil {
		t.Error("ParseGauge without the sample succeeded")
	}
	if _, err := ParseGauge(strings.NewReader("go_goroutines many\n"), "go_goroutines"); err == nil {
		t.Error("ParseGauge of a non-number succeeded")
	}
}

func TestReportProblemsAndMarkdown(t *testing.T) {
	every := 10 * time.Second
	flat := func(v float64) []Point { return line(60, every, func(int) float64 { return v }) }
	r := &Report{
		Duration: 10 * time.Minute, Warmup: time.Minute, SampleEvery: every, FaultEvery: 4 * time.Minute,
		Grace: 15 * time.Second, Workers: 2, CapacityRPS: 600, SyncRate: 290, JobRate: 10,
		SyncSent: 1000, SyncOK: 998,
		Jobs:    Jobs{Submitted: 100, Accepted: 95, Final: map[string]int{"succeeded": 95}},
		Windows: []Window{{Kind: "broker-restart", From: 4 * time.Minute, To: 4*time.Minute + 8*time.Second, Grace: 15 * time.Second, RecoveryOK: true}},
		Failures: Classify([]Failure{
			{Kind: "process", Label: "503", Start: 4 * time.Minute, End: 4 * time.Minute},
			{Kind: "jobs-submit", Label: "503 broker_unavailable", Start: 4 * time.Minute, End: 4 * time.Minute}}, nil),
		Procs: []*Proc{{Name: "api", Pid: 1, Ended: "ran to the end",
			Series: map[string][]Point{"RssAnon": flat(30 << 20), "fds": flat(40), "goroutines": flat(50)}}},
	}
	r.Failures = Classify([]Failure{
		{Kind: "process", Label: "503", Start: 4 * time.Minute, End: 4 * time.Minute},
		{Kind: "jobs-submit", Label: "503 broker_unavailable", Start: 4 * time.Minute, End: 4 * time.Minute}}, r.Windows)
	if ps := r.Problems(); len(ps) != 0 {
		t.Fatalf("a clean run has problems: %v", ps)
	}
	md := r.Markdown()
	for _, want := range []string{"| verdict | **PASS** |", "| failures explained by a fault / unexplained | 2 / **0** |",
		"| jobs final succeeded | 95 |", "| broker-restart | 4m0s | 8s | 2 |", "| api (pid 1) |", "| 30.0 MiB |", "flat"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}

	// Each kind of problem fails the run.
	bad := *r
	bad.Failures = Classify([]Failure{{Kind: "process", Label: "502", Start: time.Minute, End: time.Minute}}, r.Windows)
	bad.Jobs = Jobs{Final: map[string]int{}, Lost: []string{"j1"}, Changed: []string{"j2: succeeded at a, then failed at b"}}
	bad.Windows = []Window{{Kind: "worker-kill", From: time.Minute, Detail: "not ready", RecoveryOK: false}}
	bad.Procs = []*Proc{{Name: "worker-1", Pid: 2, Series: map[string][]Point{
		"goroutines": line(60, every, func(i int) float64 { return 50 + float64(i) })}},
		{Name: "api", Pid: 4, Series: map[string][]Point{
			"RssAnon": line(60, every, func(i int) float64 { return float64(30+i) * (1 << 20) })}}}
	bad.Late = 50
	info := *r
	// The job store's mapped pages grow RSS and RssFile; the process's own memory
	// (RssAnon) is flat: not a leak.
	grow := func(i int) float64 { return float64(30+i) * (1 << 20) }
	info.Procs = []*Proc{{Name: "api", Pid: 3, Series: map[string][]Point{
		"RssAnon": flat(30 << 20), "fds": flat(40), "goroutines": flat(50),
		"RSS": line(60, every, grow), "RssFile": line(60, every, grow)}}}
	if ps := info.Problems(); len(ps) != 0 {
		t.Errorf("a growing RSS and RssFile (info only) is a problem: %v", ps)
	}
	if md := info.Markdown(); !strings.Contains(md, "(info: GROWING)") {
		t.Errorf("the report does not show RssFile's growth:\n%s", md)
	}
	ps := bad.Problems()
	for _, want := range []string{"1 failures not explained", "1 jobs lost", "1 jobs with two final states",
		"no recovery after worker-kill", "worker-1 (pid 2) goroutines grows", "api (pid 4) RssAnon grows", "started 50 of 1000 calls late"} {
		if !strings.Contains(strings.Join(ps, "\n"), want) {
			t.Errorf("problems lack %q: %v", want, ps)
		}
	}
	if md := bad.Markdown(); !strings.Contains(md, "**FAIL**") || !strings.Contains(md, "NOT RECOVERED") ||
		!strings.Contains(md, "- unexplained: process 502") || !strings.Contains(md, "GROWING") {
		t.Errorf("a failed run's report:\n%s", md)
	}
}

// openLoop against a real HTTP server on loopback: it holds the rate, and
// records every failure with its label and time.
func TestOpenLoop(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, `{"reason":"overloaded"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"model_prediction":"x"}`))
	}))
	defer srv.Close()
	rt := bench.NewHTTPTransport(8)
	defer rt.CloseIdleConnections()
	began := time.Now()
	since := func() time.Duration { return time.Since(began) }
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sent, ok, late := openLoop(ctx, 100, 8, bench.ProcessCaller(rt, srv.URL), since, rec)
	fs := rec.all()
	if sent < 180 || sent > 201 || late != 0 {
		t.Errorf("100/s for 2s: sent %d, late %d; want ~200, 0", sent, late)
	}
	if ok+len(fs) != sent || len(fs) < sent/10-2 || len(fs) > sent/10+2 {
		t.Errorf("sent %d: %d ok, %d failures; want every 10th a failure", sent, ok, len(fs))
	}
	for _, f := range fs {
		if f.Kind != "process" || f.Label != "503" || f.End < f.Start || f.End > 3*time.Second {
			t.Errorf("failure %+v", f)
		}
	}

	// Callers that are all busy: due calls are skipped and counted late.
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer slow.Close()
	defer close(block)
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	rec2 := &recorder{}
	sent, ok, late = openLoop(ctx2, 200, 2, bench.ProcessCaller(rt, slow.URL), since, rec2)
	// 2 calls wait in the channel, 2 run, both cut off by the end: not counted.
	if ok != 0 || late < 150 || len(rec2.all()) != 0 {
		t.Errorf("blocked callers: sent %d ok %d late %d failures %v", sent, ok, late, rec2.all())
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		err    error
		want   string
	}{
		{503, `{"error":"x","reason":"broker_unavailable"}`, nil, "503 broker_unavailable"},
		{502, `not json`, nil, "502"},
		{0, "", errors.New(`Post "http://x": context deadline exceeded`), "client-timeout"},
		{0, "", errors.New(`dial tcp 127.0.0.1:1: connect: connection refused`), "conn-refused"},
		{0, "", errors.New(`read: connection reset by peer`), "conn-reset"},
		{0, "", errors.New(`unexpected EOF`), "eof"},
		{0, "", errors.New(`something else`), "transport-error"},
	} {
		if got := label(tc.status, []byte(tc.body), tc.err); got != tc.want {
			t.Errorf("label(%d, %q, %v) = %q, want %q", tc.status, tc.body, tc.err, got, tc.want)
		}
	}
}
