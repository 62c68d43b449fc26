package queue

import (
	"bytes"
	"math"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Fuzz targets of what the broker hands a process: the worker's request and job
// decoding, and the API's reply decoding. Any peer can publish to these queues,
// so every header may be missing or of any AMQP type.

// headerValue is an AMQP table value of a kind the fuzzer picks: absent, or one of
// the types amqp091-go decodes a field into.
func headerValue(kind byte, n int64, s string) (any, bool) {
	switch kind % 10 {
	case 0:
		return nil, false
	case 1:
		return n, true
	case 2:
		return int32(n), true
	case 3:
		return s, true
	case 4:
		return []byte(s), true
	case 5:
		return float64(n), true
	case 6:
		return n%2 == 0, true
	case 7:
		return uint8(n), true
	case 8:
		return strconv.FormatInt(n, 10), true
	}
	return nil, true
}

type fuzzHeaders struct {
	t amqp.Table
}

func (h fuzzHeaders) set(key string, kind byte, n int64, s string) {
	if v, ok := headerValue(kind, n, s); ok {
		h.t[key] = v
	}
}

func FuzzDecodeDelivery(f *testing.F) {
	now := time.Now().UnixMilli()
	f.Add(byte(2), int64(2), byte(1), now, byte(3), "req-1", byte(1), int64(5), []byte(`{"inputs":[]}`), "ok", "worker-1")
	f.Add(byte(3), int64(2), byte(8), now, byte(4), "req-2", byte(0), int64(0), []byte("x"), "error", "bad_input")
	f.Add(byte(8), int64(2), byte(3), int64(0), byte(0), "", byte(1), int64(math.MaxInt64), []byte(nil), "", "")
	f.Add(byte(1), int64(3), byte(1), int64(math.MinInt64), byte(6), "x", byte(8), int64(math.MaxInt64), []byte("{}"), "ok", "")
	f.Fuzz(func(t *testing.T, schemaKind byte, schema int64, dlKind byte, dl int64, ridKind byte, rid string,
		attemptKind byte, attempt int64, body []byte, status, reason string) {
		h := fuzzHeaders{amqp.Table{}}
		h.set(HeaderSchema, schemaKind, schema, strconv.FormatInt(schema, 10))
		h.set(HeaderDeadline, dlKind, dl, rid)
		h.set(HeaderRequestID, ridKind, dl, rid)
		h.set(HeaderPublishedUs, ridKind, dl, rid)
		h.set(HeaderAttempt, attemptKind, attempt, rid)
		h.set(deliveryCount, attemptKind^ridKind, attempt, rid)
		h.set(HeaderStatus, 3, 0, status)
		h.set(HeaderReason, ridKind, 0, reason)
		h.set(HeaderWorker, 4, 0, rid)
		d := &amqp.Delivery{Headers: h.t, Body: body, CorrelationId: rid}
		rs := &routeSlots{route: Route{Model: "m", Version: "1"}, queue: "q"}

		// The worker's request decoding: accepted only with this schema and a deadline.
		sv, sok := headerInt64(h.t, HeaderSchema)
		ms, dok := headerInt64(h.t, HeaderDeadline)
		m, err := decodeRequest(d, rs)
		if (err == nil) != (sok && sv == SchemaVersion && dok) {
			t.Fatalf("decodeRequest: err %v with schema %v/%v, deadline %v", err, sv, sok, dok)
		}
		if err == nil {
			if !m.Deadline.Equal(time.UnixMilli(ms)) || !bytes.Equal(m.Body, body) || m.RequestID != headerString(h.t, HeaderRequestID) {
				t.Fatalf("decodeRequest: %+v", m)
			}
			for k, v := range m.Headers {
				if headerString(h.t, k) != v {
					t.Fatalf("header %q = %q, the table has %#v", k, v, h.t[k])
				}
			}
		}

		// A job delivery: its attempt number is at least 1, whatever the headers say.
		if a := jobAttempt(d); a < 1 {
			t.Fatalf("jobAttempt = %d for attempt %#v, delivery count %#v", a, h.t[HeaderAttempt], h.t[deliveryCount])
		}
		if m, err := decodeJob(d, rs, "j1", 1, time.Minute); (err == nil) != (sok && sv == SchemaVersion) {
			t.Fatalf("decodeJob: err %v with schema %v/%v", err, sv, sok)
		} else if err == nil && (m.JobID != "j1" || m.CorrelationID != "j1" || !bytes.Equal(m.Body, body)) {
			t.Fatalf("decodeJob: %+v", m)
		}

		// The API's reply decoding: a reply or a RemoteError carrying the body.
		res := decodeReply(d, time.Now())
		if headerString(h.t, HeaderStatus) == StatusOK {
			if res.err != nil || res.reply == nil || !bytes.Equal(res.reply.Body, body) || res.reply.Worker != headerString(h.t, HeaderWorker) {
				t.Fatalf("decodeReply ok: %+v", res)
			}
			return
		}
		re, ok := res.err.(*RemoteError)
		if !ok || re.Message != string(body) || re.Reason == "" {
			t.Fatalf("decodeReply error: %+v", res)
		}
	})
}
