package bench

import (
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCheckLoopbackURL(t *testing.T) {
	for _, u := range []string{
		"amqp://guest:guest@127.0.0.1:5672/", "amqp://localhost/", "http://[::1]:15672", "http://127.0.0.2:1",
	} {
		if err := checkLoopbackURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"amqp://10.0.0.1/", "http://example.com", "amqp://192.168.1.2:5672/"} {
		if err := checkLoopbackURL(u); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestWithVhost(t *testing.T) {
	got, err := WithVhost("amqp://guest:guest@127.0.0.1:5672/", "warren-bench-1-ab")
	if err != nil || got != "amqp://guest:guest@127.0.0.1:5672/warren-bench-1-ab" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := ParseFlags([]string{"-quick", "-phases", "raw,scale", "-concurrency", "2,8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Duration != 2*time.Second || cfg.Runs != 1 || len(cfg.ScaleWorkers) != 3 {
		t.Errorf("quick defaults not applied: %+v", cfg)
	}
	if !cfg.Has(PhaseRaw) || !cfg.Has(PhaseScale) || cfg.Has(PhaseFarm) {
		t.Errorf("phases %v", cfg.Phases)
	}
	if cfg.Concurrency[0] != 2 || cfg.Concurrency[1] != 8 {
		t.Errorf("concurrency %v", cfg.Concurrency)
	}
	cfg, err = ParseFlags([]string{"-quick", "-duration", "5s"}, io.Discard)
	if err != nil || cfg.Duration != 5*time.Second {
		t.Errorf("an explicit flag must win over -quick: %v %v", cfg.Duration, err)
	}
	for _, bad := range [][]string{
		{"-phases", "nope"}, {"-concurrency", "0"}, {"-runs", "0"}, {"-amqp-url", "amqp://10.1.2.3/"}, {"extra"},
	} {
		if _, err := ParseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestCPUSamplerSeesBusyProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	s := NewCPUSampler(map[string]func() []int{"self": func() []int { return []int{os.Getpid()} }})
	s.Start()
	end := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(end) {
		x++
	}
	u := s.Stop()
	if u.Cores["self"] < 0.3 || u.Cores["self"] > float64(runtime.NumCPU())+0.2 {
		t.Errorf("busy loop used %.2f cores, want about 1", u.Cores["self"])
	}
	if u.Machine < u.Cores["self"]-0.2 {
		t.Errorf("machine %.2f below the process's %.2f", u.Machine, u.Cores["self"])
	}
	_ = x
}

func TestProcStop(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	p, err := StartProc("sleeper", sleep, []string{"30"}, os.Environ(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop(5 * time.Second)
	p.Stop(5 * time.Second) // idempotent
	select {
	case <-p.Done():
	default:
		t.Fatal("not exited after Stop")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("SIGTERM took %v", time.Since(start))
	}
}

func TestReportTargets(t *testing.T) {
	res := func(rps float64, p99 time.Duration) *Summary {
		n := int(rps)
		r := &Result{Window: time.Second}
		for i := range n {
			d := time.Millisecond
			if i >= n*98/100 { // the slowest 2%: p99 lands on them
				d = p99
			}
			r.Latencies = append(r.Latencies, d)
		}
		return &Summary{Runs: []*Result{r}}
	}
	rep := &Report{Cfg: &Config{Phases: allPhases, ScaleLatency: 20 * time.Millisecond, ScaleFactor: 2, Runs: 1}}
	rep.Compare = []*CompareRow{
		{Concurrency: 16, Variants: map[string]*Summary{VariantFarm: res(4000, 12*time.Millisecond), VariantRaw: res(8000, 5*time.Millisecond)}},
		{Concurrency: 64, Variants: map[string]*Summary{VariantFarm: res(6000, 30*time.Millisecond), VariantRaw: res(10000, 20*time.Millisecond)}},
	}
	for _, n := range []int{1, 32} {
		rep.Scale = append(rep.Scale, &ScaleRow{Workers: n, Concurrency: 2 * n, Ideal: float64(n) * 50, Sum: res(float64(n)*48, 25*time.Millisecond)})
	}
	got := map[string]string{}
	for _, tg := range rep.Targets() {
		got[tg.Name] = tg.Status
	}
	want := map[string]string{
		"farm ≥ 0.5× raw req/s at concurrency 64":       "PASS", // 0.6
		"p99 at concurrency 16 ≤ 2× the raw loop's p99": "MISS", // 12 vs 5
		"p99 at concurrency 16 under 15 ms":             "PASS",
		"scaling ≥ 0.9× linear up to 32 workers":        "PASS", // 0.96
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	var sb strings.Builder
	rep.PrintCompare(&sb)
	rep.PrintScale(&sb)
	rep.PrintTargets(&sb)
	for _, s := range []string{"0.60×", "[PASS]", "[MISS]", "0.960"} {
		if !strings.Contains(sb.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, sb.String())
		}
	}
}

func TestListenerPids(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	port := ln.Addr().(*net.TCPAddr).Port
	pids := listenerPids(port)
	if len(pids) != 1 || pids[0] != os.Getpid() {
		t.Errorf("listenerPids(%d) = %v, want [%d]", port, pids, os.Getpid())
	}
	if got := amqpPort("amqp://guest:guest@127.0.0.1:5673/"); got != 5673 {
		t.Errorf("amqpPort = %d", got)
	}
	if got := amqpPort("amqp://localhost/"); got != 5672 {
		t.Errorf("amqpPort default = %d", got)
	}
}
