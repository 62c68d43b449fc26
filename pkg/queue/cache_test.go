package queue

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestReplyCacheKeepsTheMostRecent(t *testing.T) {
	c := newReplyCache(3)
	for i := 0; i < 5; i++ {
		c.put(fmt.Sprint(i), amqp.Publishing{CorrelationId: fmt.Sprint(i)})
	}
	for i := 0; i < 5; i++ {
		p, ok := c.get(fmt.Sprint(i))
		if want := i >= 2; ok != want || (ok && p.CorrelationId != fmt.Sprint(i)) {
			t.Errorf("key %d: present=%v (%q), want present=%v", i, ok, p.CorrelationId, want)
		}
	}
	if len(c.m) != 3 {
		t.Errorf("cache holds %d entries, bound is 3", len(c.m))
	}
	off := newReplyCache(0)
	off.put("k", amqp.Publishing{})
	if _, ok := off.get("k"); ok {
		t.Error("a zero-size cache stored something")
	}
}

func TestDecodeRequestNamesWhatIsWrong(t *testing.T) {
	rs := &routeSlots{route: Route{Model: "m", Version: "1"}, queue: "warren.req.m.v1"}
	for _, tc := range []struct {
		headers amqp.Table
		want    string
	}{
		{amqp.Table{}, "missing x-warren-schema"},
		{amqp.Table{HeaderSchema: int32(1)}, "unsupported message schema 1"},
		{amqp.Table{HeaderSchema: int32(2)}, "missing x-warren-deadline-ms"},
	} {
		_, err := decodeRequest(&amqp.Delivery{Headers: tc.headers}, rs)
		if err == nil || err.Error()[:len(tc.want)] != tc.want {
			t.Errorf("%v: err = %v, want %q", tc.headers, err, tc.want)
		}
	}
	m, err := decodeRequest(&amqp.Delivery{Headers: amqp.Table{HeaderSchema: int64(2), HeaderDeadline: int64(1700000000000), HeaderRequestID: "r",
		"traceparent": []byte("00-abc"), "x-count": int32(3)}, CorrelationId: "c"}, rs)
	if err != nil || m.RequestID != "r" || m.Deadline.UnixMilli() != 1700000000000 || m.CorrelationID != "c" || m.Route != rs.route || m.Queue != rs.queue {
		t.Fatalf("%+v %v", m, err)
	}
	// String and byte-string headers (another client may send byte arrays) reach the
	// handler as text; other types are left out.
	if m.Headers["traceparent"] != "00-abc" || m.Headers["x-request-id"] != "r" {
		t.Fatalf("headers %v", m.Headers)
	}
	if _, ok := m.Headers["x-count"]; ok {
		t.Fatalf("%+v %v", m, err)
	}
}
