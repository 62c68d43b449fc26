package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/httperr"
	"github.com/warren-farm/warren/pkg/queue"
)

func TestStatusForCoversTheContract(t *testing.T) {
	for _, tc := range []struct {
		err        error
		status     int
		reason     string
		retryAfter bool
	}{
		{errDraining, 503, "draining", true},
		{queue.ErrNoWorkers, 503, "no_workers", true},
		{fmt.Errorf("%w: queue gone", queue.ErrNoWorkers), 503, "no_workers", true},
		{queue.ErrQueueFull, 503, "queue_full", true},
		{fmt.Errorf("%w: not connected", queue.ErrBrokerUnavailable), 503, "broker_unavailable", true},
		{queue.ErrClosed, 503, "broker_unavailable", true},
		{context.DeadlineExceeded, 504, "timeout", false},
		{&queue.RemoteError{Reason: queue.ReasonModelError, Message: "boom"}, 502, "model_error", false},
		{&queue.RemoteError{Reason: queue.ReasonBadMessage, Message: "schema"}, 502, "model_error", false},
	} {
		var he *httperr.Error
		if !errors.As(statusFor(tc.err), &he) {
			t.Fatalf("%v: not mapped", tc.err)
		}
		if he.Status != tc.status || he.Reason != tc.reason || (he.RetryAfter > 0) != tc.retryAfter || he.Detail == "" {
			t.Errorf("%v → %+v", tc.err, he)
		}
	}
	if d := statusFor(fmt.Errorf("%w: not connected", queue.ErrBrokerUnavailable)).(*httperr.Error).Detail; !strings.HasSuffix(d, ": not connected") {
		t.Errorf("broker detail %q should carry the cause", d)
	}
}

func TestTimeoutHeader(t *testing.T) {
	s := &Server{cfg: Config{RequestTimeout: 10 * time.Second, MaxRequestTimeout: 60 * time.Second}}
	for h, want := range map[string]time.Duration{
		"": 10 * time.Second, "3": 3 * time.Second, "0.5": 500 * time.Millisecond,
		"2.5s": 2500 * time.Millisecond, "250ms": 250 * time.Millisecond, "3600": 60 * time.Second, " 1s ": time.Second,
	} {
		ve := &httperr.ValidationError{}
		if got := s.timeout(h, ve); got != want || ve.OrNil() != nil {
			t.Errorf("timeout(%q) = %s, %v; want %s", h, got, ve.OrNil(), want)
		}
	}
	for _, h := range []string{"0", "-1", "soon", "1 hour", "NaN", "-2s", "0s"} {
		ve := &httperr.ValidationError{}
		s.timeout(h, ve)
		if ve.OrNil() == nil || ve.Items[0].Loc[1] != "X-Request-Timeout" {
			t.Errorf("timeout(%q) accepted", h)
		}
	}
}

func TestRequestIDRules(t *testing.T) {
	for id, ok := range map[string]bool{
		"abc": true, "7f3c-ab_12.x:y@z/w+v=": true, strings.Repeat("a", 128): true,
		"": false, strings.Repeat("a", 129): false, "has space": false, "new\nline": false, "ünï": false, `q"uote`: false,
	} {
		if validRequestID(id) != ok {
			t.Errorf("validRequestID(%q) = %v", id, !ok)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"max below default": {Queue: queue.ClientConfig{DialConfig: queue.DialConfig{URL: "amqp://localhost/"}}, RequestTimeout: 10 * time.Second, MaxRequestTimeout: time.Second},
		"no url":            {},
		"bad url":           {Queue: queue.ClientConfig{DialConfig: queue.DialConfig{URL: "http://x"}}},
		"negative bound":    {Queue: queue.ClientConfig{DialConfig: queue.DialConfig{URL: "amqp://localhost/"}}, QueueMaxLength: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, err := New(Config{Queue: queue.ClientConfig{DialConfig: queue.DialConfig{URL: "amqp://localhost/"}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.RequestTimeout != 10*time.Second || s.cfg.BodyLimit != 1<<20 {
		t.Errorf("defaults: %+v", s.cfg)
	}
}
