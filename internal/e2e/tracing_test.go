package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tracing"
	"github.com/warren-farm/warren/pkg/worker"
)

// randomHex returns n random bytes in hex (trace and span ids).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newTracing is a tracing with an in-memory exporter of its own, as a process has.
func newTracing(t *testing.T, service string) (*tracing.Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := tracing.New(context.Background(), tracing.Config{ServiceName: service, Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

// spansOf waits (at most 5s) until exp holds a span of each name in trace, and
// returns the trace's spans by name; a name held twice is an error.
func spansOf(t *testing.T, who string, exp *tracetest.InMemoryExporter, traceID string, names ...string) map[string]tracetest.SpanStub {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := map[string]tracetest.SpanStub{}
		var dup []string
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() != traceID {
				continue
			}
			if _, seen := m[s.Name]; seen {
				dup = append(dup, s.Name)
			}
			m[s.Name] = s
		}
		missing := 0
		for _, n := range names {
			if _, ok := m[n]; !ok {
				missing++
			}
		}
		if missing == 0 {
			if len(dup) > 0 {
				t.Errorf("%s: spans recorded twice in trace %s: %v", who, traceID, dup)
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: trace %s has spans %v, want %v", who, traceID, keys(m), names)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attrOf(s tracetest.SpanStub, key attribute.Key) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.String()
		}
	}
	return ""
}

// checkChain checks one request's trace, sent by a caller whose span is caller:
// the API's HTTP server span (named httpSpan) is the caller's child, the publish
// span to q the HTTP span's, the worker's queue wait and process spans the
// publish span's, and the model span the process span's — nothing else in the
// worker's part of the trace. It returns the process span.
func checkChain(t *testing.T, apiSpans, workerSpans *tracetest.InMemoryExporter, traceID, caller, httpSpan, q string) tracetest.SpanStub {
	t.Helper()
	as := spansOf(t, "API", apiSpans, traceID, httpSpan, "publish "+q)
	ws := spansOf(t, "worker", workerSpans, traceID, "queue wait", "process "+q, "predict seed")
	h, pub := as[httpSpan], as["publish "+q]
	wait, proc, pred := ws["queue wait"], ws["process "+q], ws["predict seed"]
	if h.Parent.SpanID().String() != caller || !h.Parent.IsRemote() {
		t.Errorf("%s: parent %s (remote %v), want the caller's span %s", httpSpan, h.Parent.SpanID(), h.Parent.IsRemote(), caller)
	}
	if h.SpanKind != trace.SpanKindServer || pub.SpanKind != trace.SpanKindProducer || proc.SpanKind != trace.SpanKindConsumer {
		t.Errorf("span kinds: HTTP %v, publish %v, process %v", h.SpanKind, pub.SpanKind, proc.SpanKind)
	}
	if route := attrOf(h, "http.route"); "POST "+route != httpSpan {
		t.Errorf("%s: http.route %q", httpSpan, route)
	}
	for _, c := range []struct {
		child, parent tracetest.SpanStub
	}{{pub, h}, {wait, pub}, {proc, pub}, {pred, proc}} {
		if c.child.Parent.SpanID() != c.parent.SpanContext.SpanID() {
			t.Errorf("%q is not a child of %q (parent %s, want %s)", c.child.Name, c.parent.Name,
				c.child.Parent.SpanID(), c.parent.SpanContext.SpanID())
		}
	}
	if len(ws) != 3 {
		t.Errorf("worker spans of trace %s: %v, want queue wait, process %s, predict seed", traceID, keys(ws), q)
	}
	for k, want := range map[attribute.Key]string{"messaging.destination.name": q, "warren.model.name": "seed", "warren.model.version": "1"} {
		if got := attrOf(proc, k); got != want {
			t.Errorf("process span: %s = %q, want %q", k, got, want)
		}
	}
	if got := attrOf(pub, "messaging.destination.name"); got != q {
		t.Errorf("publish span: messaging.destination.name = %q, want %q", got, q)
	}
	return proc
}

// TestTraceReachesTheWorker sends requests carrying a W3C traceparent through a
// real broker and checks that the worker's spans (queue wait, process, model)
// belong to the caller's trace, parented through the API's HTTP and publish spans,
// on every path into the farm: v2 inference (with and without a version),
// /process, and a job, whose spans are named after the job queue. API and worker
// have tracer providers of their own, as two processes would; the only link
// between them is the message headers.
func TestTraceReachesTheWorker(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	atr, apiSpans := newTracing(t, "warren-api")
	wtr, workerSpans := newTracing(t, "warren-worker")
	spec := newFarmSpec(t)

	p := runInProcess(t, vh, api.Config{Tracing: atr}, worker.Config{Tracing: wtr, WorkerID: "traced-1",
		Models: []worker.ModelSpec{serve(seedRoute, model.NewSeed(model.SeedConfig{}), 2, 1)}})
	defer p.stop()

	q, jq := seedRoute.RequestQueue(), seedRoute.JobQueue()
	for _, c := range []struct{ path, body, span string }{
		{"/v2/models/seed/infer", v2Seed("trace me"), "POST /v2/models/:name/infer"},
		{"/v2/models/seed/versions/1/infer", v2Seed("trace me too"), "POST /v2/models/:name/versions/:version/infer"},
		{"/process", `{"data":"trace me"}`, "POST /process"},
	} {
		traceID, caller := randomHex(16), randomHex(8)
		r := doChecked(t, spec, "POST", p.base+c.path, c.body, "traceparent", "00-"+traceID+"-"+caller+"-01")
		if r.Status != 200 {
			t.Fatalf("POST %s: %d %s", c.path, r.Status, r.Body)
		}
		checkChain(t, apiSpans, workerSpans, traceID, caller, c.span, q)
	}

	// A job: the publish and process spans name the job queue, and the worker's
	// spans still belong to the submitter's trace.
	traceID, caller := randomHex(16), randomHex(8)
	r := doChecked(t, spec, "POST", p.base+"/jobs", `{"data":"trace my job"}`, "traceparent", "00-"+traceID+"-"+caller+"-01")
	if r.Status != 202 {
		t.Fatalf("POST /jobs: %d %s", r.Status, r.Body)
	}
	id := r.json(t)["id"].(string)
	if st := finishedJob(t, spec, p.base, id); st != "succeeded" {
		t.Fatalf("job %s: %s", id, st)
	}
	proc := checkChain(t, apiSpans, workerSpans, traceID, caller, "POST /jobs", jq)
	if got := attrOf(proc, "warren.job_id"); got != id {
		t.Errorf("job process span: warren.job_id %q, want %q", got, id)
	}
	// No span of the trace names the request queue.
	for _, exp := range []*tracetest.InMemoryExporter{apiSpans, workerSpans} {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() == traceID && strings.Contains(s.Name, q) {
				t.Errorf("job trace has span %q", s.Name)
			}
		}
	}
}

// noTraceHeaders fails if an AMQP header table carries trace context.
func noTraceHeaders(t *testing.T, what string, h amqp.Table) {
	t.Helper()
	var names []string
	for k := range h {
		names = append(names, k)
		if lk := strings.ToLower(k); lk == "traceparent" || lk == "tracestate" || lk == "baggage" || strings.Contains(lk, "trace") {
			t.Errorf("%s carries trace header %s=%v", what, k, h[k])
		}
	}
	sort.Strings(names)
	t.Logf("%s headers: %v", what, names)
}

// waitConsumed waits until queue q exists and has a consumer.
func waitConsumed(t *testing.T, conn *amqp.Connection, q string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err == nil {
			_ = ch.Close()
			if st.Consumers > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody consumes %s (%v)", q, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTraceContextStaysOutOfReplies talks to a traced worker over raw AMQP: the
// worker continues the trace of each request and job it takes (its process span
// is the publisher's child), but what it sends back — replies, error replies, job
// events — carries no trace context.
func TestTraceContextStaysOutOfReplies(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	wtr, workerSpans := newTracing(t, "warren-worker")
	ptr, pubSpans := newTracing(t, "publisher")

	w := newWorker(t, vh, worker.Config{Tracing: wtr, WorkerID: "traced-raw",
		Models: []worker.ModelSpec{serve(seedRoute, model.NewSeed(model.SeedConfig{}), 1, 1)}})
	ln := listen(t)
	wdone := make(chan struct{})
	go func() { defer close(wdone); _ = w.Run(context.Background(), ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
		<-wdone
	}()

	conn, err := amqp.Dial(vh.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q, jq := seedRoute.RequestQueue(), seedRoute.JobQueue()
	waitConsumed(t, conn, q)
	waitConsumed(t, conn, jq)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	replyQ, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := ch.Consume(replyQ.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A request the worker answers and one it cannot read (an error reply).
	for i, c := range []struct{ body, status string }{{v2Seed("raw"), queue.StatusOK}, {"not json", queue.StatusError}} {
		traceID, parent := randomHex(16), randomHex(8)
		now := time.Now()
		err := ch.PublishWithContext(ctx, "", q, false, false, amqp.Publishing{
			ContentType: "application/json", CorrelationId: fmt.Sprint("raw-", i), ReplyTo: replyQ.Name,
			Expiration: "10000",
			Headers: amqp.Table{
				queue.HeaderSchema: int32(queue.SchemaVersion), queue.HeaderDeadline: now.Add(10 * time.Second).UnixMilli(),
				queue.HeaderRequestID: fmt.Sprint("raw-", i), queue.HeaderPublishedUs: now.UnixMicro(),
				"traceparent": "00-" + traceID + "-" + parent + "-01", "tracestate": "warren=raw",
			},
			Body: []byte(c.body),
		})
		if err != nil {
			t.Fatal(err)
		}
		var d amqp.Delivery
		select {
		case d = <-replies:
		case <-ctx.Done():
			t.Fatalf("no reply to request %d", i)
		}
		if got := d.Headers[queue.HeaderStatus]; d.CorrelationId != fmt.Sprint("raw-", i) || got != c.status {
			t.Fatalf("reply %d: correlation %q, status %v, want %s: %s", i, d.CorrelationId, got, c.status, d.Body)
		}
		noTraceHeaders(t, "reply with status "+c.status, d.Headers)
		proc := spansOf(t, "worker", workerSpans, traceID, "process "+q)["process "+q]
		if proc.Parent.SpanID().String() != parent {
			t.Errorf("request %d: the worker's process span has parent %s, want the publisher's %s", i, proc.Parent.SpanID(), parent)
		}
	}

	// A job published by pkg/queue's traced publisher: the worker's events on the
	// results queue carry no trace context.
	pub, err := queue.NewJobPublisher(queue.JobPublisherConfig{DialConfig: queue.DialConfig{URL: vh.AMQPURL}, Tracing: ptr})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pstop := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	go func() { defer close(pdone); _ = pub.Run(pctx) }()
	defer func() { pstop(); <-pdone }()
	for !pub.Ready() {
		if ctx.Err() != nil {
			t.Fatal("the job publisher never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	results, err := ch.Consume(queue.JobResults, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishJob(ctx, jobs.Message{ID: "traced-job", RequestID: "raw-job", Model: "seed", Version: "1",
		Body: []byte(v2Seed("job"))}); err != nil {
		t.Fatal(err)
	}
	for final := false; !final; {
		var d amqp.Delivery
		select {
		case d = <-results:
		case <-ctx.Done():
			t.Fatal("no final job event")
		}
		var ev jobs.Event
		if err := json.Unmarshal(d.Body, &ev); err != nil || ev.JobID != "traced-job" {
			t.Fatalf("job event %s (%v)", d.Body, err)
		}
		noTraceHeaders(t, "job event "+string(ev.Type), d.Headers)
		if final = ev.Type == jobs.EventFinal; final && ev.Status != jobs.Succeeded {
			t.Errorf("job: %s", d.Body)
		}
	}
	var pubSpan tracetest.SpanStub
	for _, s := range pubSpans.GetSpans() {
		if s.Name == "publish "+jq {
			pubSpan = s
		}
	}
	if !pubSpan.SpanContext.IsValid() {
		t.Fatalf("no publish span for the job; publisher spans: %v", pubSpans.GetSpans())
	}
	proc := spansOf(t, "worker", workerSpans, pubSpan.SpanContext.TraceID().String(), "process "+jq)["process "+jq]
	if proc.Parent.SpanID() != pubSpan.SpanContext.SpanID() {
		t.Errorf("the job's process span is not a child of its publish span")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
