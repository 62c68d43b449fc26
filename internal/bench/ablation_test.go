package bench

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/queue"
)

func TestAblationVariants(t *testing.T) {
	vs := AblationVariants()
	if vs[0].Name != AblationPlain || vs[len(vs)-1].Name != AblationFarmSet {
		t.Fatalf("first %q, last %q: want %q first and %q last", vs[0].Name, vs[len(vs)-1].Name, AblationPlain, AblationFarmSet)
	}
	plain := vs[0].F
	if plain != (AblationFeatures{Prefetch: ablationRawPrefetch, AckEvery: 1}) {
		t.Errorf("plain raw loop %+v", plain)
	}
	seen := map[string]bool{}
	for _, v := range vs {
		if seen[v.Name] {
			t.Errorf("variant %q twice", v.Name)
		}
		seen[v.Name] = true
		if v.F.Prefetch < 1 || v.F.AckEvery < 1 || v.What == "" {
			t.Errorf("variant %q: %+v, what %q", v.Name, v.F, v.What)
		}
	}
	// Each single-feature row differs from plain in exactly one field.
	for _, v := range vs[1:] {
		if v.Cumulative {
			continue
		}
		if n := featureDiffs(plain, v.F); n != 1 {
			t.Errorf("variant %q changes %d features, want 1: %+v", v.Name, n, v.F)
		}
	}
	// The cumulative rows each add one feature to the row before, from +confirms.
	prev := vs[slices.IndexFunc(vs, func(v AblationVariant) bool { return v.Name == "+confirms" })].F
	cum := 0
	for _, v := range vs {
		if !v.Cumulative {
			continue
		}
		cum++
		if n := featureDiffs(prev, v.F); n != 1 {
			t.Errorf("cumulative %q changes %d features from the row before, want 1", v.Name, n)
		}
		prev = v.F
	}
	if cum == 0 {
		t.Fatal("no cumulative rows")
	}
	// The farm's full set, as pkg/queue and the worker's defaults do it.
	want := AblationFeatures{Confirms: true, Mandatory: true, TTL: true, Headers: true, ReplyQueue: true,
		QueuePolicy: true, OneChannel: true, Prefetch: queue.DefaultConcurrency, AckEvery: 1}
	if got := vs[len(vs)-1].F; got != want {
		t.Errorf("farm set %+v, want %+v", got, want)
	}
}

// featureDiffs counts the fields in which a and b differ.
func featureDiffs(a, b AblationFeatures) int {
	n := 0
	for _, d := range []bool{a.Confirms != b.Confirms, a.Mandatory != b.Mandatory, a.TTL != b.TTL, a.Headers != b.Headers, a.HeadersMin != b.HeadersMin,
		a.ReplyQueue != b.ReplyQueue, a.QueuePolicy != b.QueuePolicy, a.OneChannel != b.OneChannel,
		a.Prefetch != b.Prefetch, a.AckEvery != b.AckEvery} {
		if d {
			n++
		}
	}
	return n
}

func TestSelectAblationVariants(t *testing.T) {
	all, err := SelectAblationVariants("")
	if err != nil || len(all) != len(AblationVariants()) {
		t.Fatalf("empty list: %d variants, %v", len(all), err)
	}
	got, err := SelectAblationVariants(" farm-set , +ttl")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range got {
		names = append(names, v.Name)
	}
	// raw is always there; the order is AblationVariants'.
	if want := []string{AblationPlain, "+ttl", AblationFarmSet}; !slices.Equal(names, want) {
		t.Errorf("got %v, want %v", names, want)
	}
	if _, err := SelectAblationVariants("+ttl,+nonsense"); err == nil || !strings.Contains(err.Error(), "+nonsense") {
		t.Errorf("unknown variant: %v", err)
	}
}

func TestParseFlagsAblation(t *testing.T) {
	cfg, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Has(PhaseAblation) {
		t.Error("the ablation runs by default; it should only when named")
	}
	if cfg.AblationConcurrency != 64 || cfg.AblationRuns != 3 || cfg.AblationDuration != 4*time.Second {
		t.Errorf("defaults: c=%d runs=%d duration=%v", cfg.AblationConcurrency, cfg.AblationRuns, cfg.AblationDuration)
	}
	cfg, err = ParseFlags([]string{"-phases", "ablation", "-ablation-concurrency", "8", "-ablation-runs", "5",
		"-ablation-duration", "2s", "-ablation-variants", "+confirms,farm-set"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Has(PhaseAblation) || cfg.AblationConcurrency != 8 || cfg.AblationRuns != 5 || cfg.AblationDuration != 2*time.Second ||
		cfg.AblationVariants != "+confirms,farm-set" {
		t.Errorf("parsed %+v", cfg)
	}
	cfg, err = ParseFlags([]string{"-quick", "-phases", "ablation"}, io.Discard)
	if err != nil || cfg.AblationRuns != 1 || cfg.AblationDuration != 2*time.Second {
		t.Errorf("-quick: %v runs=%d duration=%v", err, cfg.AblationRuns, cfg.AblationDuration)
	}
	for _, bad := range [][]string{
		{"-phases", "ablation", "-ablation-concurrency", "0"},
		{"-phases", "ablation", "-ablation-runs", "0"},
		{"-phases", "ablation", "-ablation-duration", "0s"},
		{"-phases", "ablation", "-ablation-variants", "+bogus"},
	} {
		if _, err := ParseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestPrintAblation(t *testing.T) {
	vs, err := SelectAblationVariants("+confirms,farm-set")
	if err != nil {
		t.Fatal(err)
	}
	run := func(ok int, brokerCores, benchCores float64) *Result {
		lat := make([]time.Duration, ok)
		for i := range lat {
			lat[i] = time.Duration(i+1) * time.Microsecond
		}
		return &Result{Concurrency: 64, Window: time.Second, Latencies: lat,
			CPU: &CPUUsage{Cores: map[string]float64{"broker": brokerCores, "bench": benchCores}, Window: time.Second}}
	}
	rows := []*AblationRow{
		{Variant: vs[0], Sum: &Summary{Runs: []*Result{run(1000, 0.1, 0.05), run(2000, 0.2, 0.1), run(4000, 0.4, 0.2)}}},
		{Variant: vs[1], Sum: &Summary{Runs: []*Result{run(1000, 0.2, 0.1)}}},
		{Variant: vs[2], Sum: &Summary{Runs: []*Result{run(500, 0.15, 0.2)}}, Returned: 3},
	}
	rows[2].Sum.Runs[0].Failures = map[string]int{"nack": 2}
	r := &Report{Cfg: &Config{AblationRuns: 3}, Ablation: &AblationRun{Concurrency: 64, Responders: 2, Conns: 2, Rows: rows}}
	var sb strings.Builder
	r.PrintAblation(&sb)
	out := sb.String()
	for _, want := range []string{
		"| variant | change against raw | req/s | × raw |",
		// raw: median 2,000 req/s; 100 µs of broker and 50 µs of bench per request in every run.
		"| raw | ",
		"| 2,000 | 1.00× | 1.00× (1.00–1.00×) |",
		"| 100 | 50 | 0 |",
		// +confirms: 1,000 req/s = 0.50×, 200 and 100 µs/req.
		"| 1,000 | 0.50× | 1.00× (1.00–1.00×) |", // its one run beside raw's first (1,000)
		"| 200 | 100 | 0 |",
		"| *cumulative, from +confirms* |",
		// farm-set: 500 req/s = 0.25×, 300 and 400 µs/req, its failures and returns.
		"| 500 | 0.25× | 0.50× (0.50–0.50×) |",
		"| 300 | 400 | nack×2, 3 returned |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "*cumulative") > strings.Index(out, "| farm-set |") {
		t.Errorf("cumulative marker after the cumulative rows:\n%s", out)
	}
	(&Report{Cfg: &Config{}}).PrintAblation(&sb) // no ablation: prints nothing, no panic
}

// runAblationLoop runs variant f's responders and client on a fresh queue for
// a short closed loop and checks that every call succeeded.
func runAblationLoop(t *testing.T, url string, f AblationFeatures) *Result {
	t.Helper()
	q := testQueue(t, url) // declared plain; re-declared below for the policy variant
	if f.QueuePolicy {
		deleteQueue(url, q)
		if err := declareAblationQueue(url, q, true); err != nil {
			t.Fatal(err)
		}
	}
	r, err := StartAblationResponders(url, q, 2, f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client, err := NewAblationClient(url, q, 2, f)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if f.OneChannel && len(client.conns) != 1 {
		t.Errorf("one channel: %d connections", len(client.conns))
	}
	res, err := RunClosedLoop(context.Background(),
		LoopConfig{Concurrency: 8, Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond}, client.Caller())
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() < 50 || res.FailureCount() != 0 || client.Returned() != 0 {
		t.Fatalf("%+v: %d successes, failures %v, %d returned", f, res.OK(), res.Failures, client.Returned())
	}
	return res
}

func TestAblationLoops(t *testing.T) {
	url := brokerURL(t)
	for _, v := range AblationVariants() {
		if v.Name != AblationPlain && v.Name != AblationFarmSet && v.Name != "ack-batch" && v.Name != "prefetch-1" && v.Name != "+headers-min" {
			continue
		}
		t.Run(v.Name, func(t *testing.T) { runAblationLoop(t, url, v.F) })
	}
}

// TestAblationFarmSetOnTheWire checks that the farm-set variant's request
// carries what the farm's does: confirm-mode publish with mandatory, the
// expiration, headers and properties, a server-named reply queue, and a
// durable queue with the bound.
func TestAblationFarmSetOnTheWire(t *testing.T) {
	url := brokerURL(t)
	vs, _ := SelectAblationVariants(AblationFarmSet)
	f := vs[len(vs)-1].F
	q := testQueue(t, url)
	deleteQueue(url, q)
	if err := declareAblationQueue(url, q, true); err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// A redeclare must be equivalent (else 406 PRECONDITION_FAILED): this one
	// passes only if the queue is durable with the bound.
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-max-length": int32(ablationMaxLength), "x-overflow": "reject-publish"}); err != nil {
		t.Fatalf("queue not durable with the bound: %v", err)
	}
	deliveries, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewAblationClient(url, q, 2, f)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan string, 1)
	go func() { done <- client.Caller()(0)(ctx) }()
	var d amqp.Delivery
	select {
	case d = <-deliveries:
	case <-ctx.Done():
		t.Fatal("no request delivered")
	}
	if ms, err := strconv.Atoi(d.Expiration); err != nil || ms < 9000 || ms > 10000 {
		t.Errorf("expiration %q, want about 10000 ms", d.Expiration)
	}
	for _, h := range []string{queue.HeaderSchema, queue.HeaderDeadline, queue.HeaderPublishedUs} {
		if _, ok := d.Headers[h]; !ok {
			t.Errorf("header %s missing: %v", h, d.Headers)
		}
	}
	if len(d.Headers) != 3 { // as queue.Client sends them
		t.Errorf("headers %v: want the farm's 3", d.Headers)
	}
	if len(d.MessageId) != 32 || d.Type != ablationRequestType || d.Timestamp.IsZero() {
		t.Errorf("properties: message id %q, type %q, timestamp %v", d.MessageId, d.Type, d.Timestamp)
	}
	if !strings.HasPrefix(d.ReplyTo, "amq.gen-") {
		t.Errorf("reply_to %q: want a server-named queue", d.ReplyTo)
	}
	if err := ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "" {
		t.Fatalf("call failed: %s", got)
	}
}
