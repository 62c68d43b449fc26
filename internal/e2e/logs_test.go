package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/pkg/queue"
)

// TestInputsNeverLogged: a distinctive marker sent as input every way a client
// (or any peer on the broker) can send it — /process, v2 infer, jobs of both
// shapes, an async hand-off, bad requests, and model calls that fail on the
// worker — never appears in the API's or the worker's logs (LOG_LEVEL=debug,
// stdout and stderr). Logs carry sizes and hashes instead: the /process input's
// hash is there, which shows the requests were logged at all.
func TestInputsNeverLogged(t *testing.T) {
	f := newFarm(t, 1, nil, nil)
	// Short enough that an error quoting a shortened value (32 bytes) would
	// still quote all of it.
	marker := "MK-" + rand.Text()[:12]
	v2 := func(dt, data string) string {
		return `{"id":"logs","inputs":[{"name":"data","shape":[1],"datatype":"` + dt + `","data":[` + data + `]}]}`
	}
	q := `"` + marker + `"`

	// Answered calls.
	for _, c := range []struct{ path, body, hdr string }{
		{"/process", `{"data":` + q + `}`, ""},
		{"/v2/models/seed/infer", v2("BYTES", q), ""},
		{"/process", `{"data":` + q + `}`, "respond-async, wait=5"},
	} {
		var hdr []string
		if c.hdr != "" {
			hdr = []string{"Prefer", c.hdr}
		}
		if r := f.do("POST", c.path, c.body, hdr...); r.Status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", c.path, r.Status, r.Body)
		}
	}
	// Jobs of both shapes, to their end.
	for _, body := range []string{`{"data":` + q + `}`, `{"model":"seed",` + strings.TrimPrefix(v2("BYTES", q), "{")} {
		j := submitBody(t, f.spec, f.api, body)
		if j = awaitFinal(t, f.spec, f.api, j.ID, 10*time.Second); j.Status != "succeeded" {
			t.Fatalf("job %s: %+v", j.ID, j)
		}
	}
	// Bad requests: refused by the API before anything is published.
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{"/process", `{"data":` + q + `,"forward_to_model":"maybe"}`, 422},
		{"/process", `{"data":[` + q + `]}`, 422},
		{"/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[2],"datatype":"BYTES","data":[` + q + `]}]}`, 400},
		{"/v2/models/seed/infer", v2("FP32", q), 400},
		{"/jobs", `{"model":"seed","inputs":[{"name":"data","shape":[1],"datatype":"INT8","data":[` + q + `]}]}`, 400},
		{"/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":[` + q + `]}],"outputs":[{"name":"class","parameters":{"p":[` + q + `]}}]}`, 400},
	} {
		if r := f.do("POST", c.path, c.body); r.Status != c.status {
			t.Fatalf("POST %s %s: %d %s, want %d", c.path, c.body, r.Status, r.Body, c.status)
		}
	}

	// Model calls that fail on the worker: a peer on the broker publishes straight
	// to the seed model's request queue (no API to validate first) a request whose
	// data does not fit, and a job whose body is not even JSON.
	ch := amqpChannel(t, f.vh.AMQPURL)
	replies, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ch.Consume(replies.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, body := range []string{v2("FP32", q), v2("BOOL", q), `{"inputs":[` + q + `]}`, marker} {
		err := ch.PublishWithContext(ctx, "", seedRoute.RequestQueue(), false, false, amqp.Publishing{
			ContentType: "application/json", CorrelationId: fmt.Sprint("c", i), ReplyTo: replies.Name, Body: []byte(body),
			Headers: amqp.Table{queue.HeaderSchema: int32(queue.SchemaVersion), queue.HeaderRequestID: "logs-raw",
				queue.HeaderDeadline: time.Now().Add(time.Minute).UnixMilli()},
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-got:
			if d.Headers[queue.HeaderStatus] != queue.StatusError || d.Headers[queue.HeaderReason] != queue.ReasonBadInput {
				t.Fatalf("raw request %d: reply %v %s, want a bad_input error", i, d.Headers, d.Body)
			}
			if strings.Contains(string(d.Body), marker) {
				t.Errorf("raw request %d: the error reply quotes the data: %s", i, d.Body)
			}
		case <-ctx.Done():
			t.Fatalf("raw request %d: no reply", i)
		}
	}
	publishRaw(t, f.vh.AMQPURL, seedRoute.JobQueue(), amqp.Publishing{
		ContentType: "application/json", Body: []byte(v2("FP32", q)),
		Headers: amqp.Table{queue.HeaderSchema: int32(queue.SchemaVersion), queue.HeaderJobID: "j-logs-raw"},
	})
	w := f.workers[0]
	awaitJobStats(t, w, 10*time.Second, "the raw job failed", func(s queue.JobConsumerStats) bool { return s.Failed >= 1 })

	// Let the last lines land, then read both logs.
	time.Sleep(500 * time.Millisecond)
	sum := sha256.Sum256([]byte(marker))
	for _, p := range []*proc{f.api, w} {
		log := p.out.String()
		if i := strings.Index(log, marker); i >= 0 {
			t.Errorf("the %s log has the input marker:\n%s", p.name, log[max(0, strings.LastIndex(log[:i], "\n")+1):min(len(log), i+200)])
		}
	}
	if !strings.Contains(f.api.out.String(), hex.EncodeToString(sum[:8])) {
		t.Error("the API log lacks the /process input's hash: were the requests logged at all (LOG_LEVEL=debug)?")
	}
	if !strings.Contains(w.out.String(), "request failed") {
		t.Error("the worker log lacks the failed raw requests: were they logged at all?")
	}
}
