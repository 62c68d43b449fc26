package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestMain lets the test binary stand in for the bench binary when
// StartResponderProcess re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ResponderCommand {
		os.Exit(ResponderMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// brokerURL returns the broker for the tests that need one: $AMQP_URL, else
// the local one. They fail, never skip, when it does not answer; -short
// leaves them out.
func brokerURL(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ; runs without -short")
	}
	url := envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		t.Fatalf("RabbitMQ at %s does not answer (%v): start it or set AMQP_URL", redact(url), err)
	}
	_ = conn.Close()
	return url
}

// testQueue declares a uniquely named queue and deletes it at the end.
func testQueue(t *testing.T, url string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "warren-bench-test-" + hex.EncodeToString(b[:])
	if err := DeclareQueue(url, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(name, false, false, false)
		}
	})
	return name
}

func runRawLoop(t *testing.T, url, queue string, confirms bool) *Result {
	t.Helper()
	client, err := NewRawClient(url, queue, 2, confirms)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	res, err := RunClosedLoop(context.Background(),
		LoopConfig{Concurrency: 6, Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond},
		client.Caller())
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() < 50 || res.FailureCount() != 0 {
		t.Fatalf("raw loop: %d successes, failures %v", res.OK(), res.Failures)
	}
	if p50 := res.Percentile(50); p50 <= 0 || p50 > 100*time.Millisecond {
		t.Errorf("raw loop p50 %v", p50)
	}
	return res
}

func TestRawLoopInProcess(t *testing.T) {
	url := brokerURL(t)
	queue := testQueue(t, url)
	r, err := StartResponders(url, queue, 2, 32)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Run("no confirms", func(t *testing.T) { runRawLoop(t, url, queue, false) })
	t.Run("confirms", func(t *testing.T) { runRawLoop(t, url, queue, true) })
}

func TestRawLoopSeparateProcess(t *testing.T) {
	url := brokerURL(t)
	queue := testQueue(t, url)
	rp, err := StartResponderProcess(context.Background(), url, queue, 2, 32, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runRawLoop(t, url, queue, false)
	rp.Stop()
	select {
	case <-rp.proc.Done():
	default:
		t.Fatal("responder process still running after Stop")
	}
}

func TestRawClientRepliesRoutedByCorrelationID(t *testing.T) {
	url := brokerURL(t)
	queue := testQueue(t, url)
	// A responder that answers every request twice, the first time with a
	// stale sequence number: callers must wait for their own reply.
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range deliveries {
			slot, _, _ := cutCorr(d.CorrelationId)
			_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: slot + ".0"})
			_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId})
		}
	}()
	client, err := NewRawClient(url, queue, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	call := client.Caller()(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 20 {
		if got := call(ctx); got != "" {
			t.Fatalf("call failed: %s", got)
		}
	}
}

func cutCorr(s string) (slot, seq string, ok bool) {
	for i := range len(s) {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestMgmtVhostLifecycle(t *testing.T) {
	brokerURL(t)
	m, err := NewMgmt(envOr("MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o, err := m.Overview(ctx)
	if err != nil {
		t.Fatalf("management API: %v", err)
	}
	if o.RabbitMQVersion == "" {
		t.Error("overview without rabbitmq_version")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	vhost := "warren-bench-test-" + hex.EncodeToString(b[:])
	if err := m.CreateVhost(ctx, vhost); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.DeleteVhost(ctx, vhost) }()
	url, err := WithVhost(envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), vhost)
	if err != nil {
		t.Fatal(err)
	}
	if err := DeclareQueue(url, "q"); err != nil {
		t.Fatalf("declare in the new vhost: %v", err)
	}
	if err := m.DeleteVhost(ctx, vhost); err != nil {
		t.Fatal(err)
	}
	if err := DeclareQueue(url, "q"); err == nil {
		t.Error("vhost still usable after delete")
	}
}
