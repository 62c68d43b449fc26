package jobs

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// The tests in this file need no database: they run under -short too.

func TestStatusFinal(t *testing.T) {
	for _, tc := range []struct {
		s     Status
		final bool
	}{
		{Queued, false}, {Running, false}, {Succeeded, true}, {Failed, true},
		{Expired, true}, {Cancelled, true}, {"", false}, {"bogus", false},
	} {
		if got := tc.s.Final(); got != tc.final {
			t.Errorf("%q.Final() = %v, want %v", tc.s, got, tc.final)
		}
	}
}

func TestEventValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   Event
		ok   bool
	}{
		{"running", Event{JobID: "a", Type: EventRunning, Attempt: 1}, true},
		{"running with status running", Event{JobID: "a", Type: EventRunning, Status: Running}, true},
		{"succeeded", Event{JobID: "a", Type: EventFinal, Status: Succeeded, Result: json.RawMessage(`{"x":1}`)}, true},
		{"failed", Event{JobID: "a", Type: EventFinal, Status: Failed, Error: &Error{Reason: "model_error"}}, true},
		{"expired", Event{JobID: "a", Type: EventFinal, Status: Expired}, true},
		{"no id", Event{Type: EventRunning}, false},
		{"unknown type", Event{JobID: "a", Type: "done"}, false},
		{"final without status", Event{JobID: "a", Type: EventFinal}, false},
		{"final cancelled", Event{JobID: "a", Type: EventFinal, Status: Cancelled}, false},
		{"final queued", Event{JobID: "a", Type: EventFinal, Status: Queued}, false},
		{"running with final status", Event{JobID: "a", Type: EventRunning, Status: Succeeded}, false},
		{"negative attempt", Event{JobID: "a", Type: EventRunning, Attempt: -1}, false},
		{"bad result", Event{JobID: "a", Type: EventFinal, Status: Succeeded, Result: json.RawMessage(`{`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ev.Validate()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidEvent)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestEventJSON pins the wire format workers publish.
func TestEventJSON(t *testing.T) {
	ev := Event{JobID: "j1", Type: EventFinal, Status: Failed, At: time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC),
		Attempt: 2, Worker: "w", Error: &Error{Reason: "model_error", Message: "boom"}}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"job_id":"j1","type":"final","status":"failed","at":"2031-01-02T03:04:05.000000006Z","attempt":2,"worker":"w","error":{"reason":"model_error","message":"boom"}}`
	if string(b) != want {
		t.Fatalf("Event JSON\n got %s\nwant %s", b, want)
	}
}

// TestJobJSON: the HTTP body fields only; started_at/finished_at are null
// until set; internal fields never appear.
func TestJobJSON(t *testing.T) {
	j := Job{ID: "j1", Status: Queued, CreatedAt: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
		RequestID: "r", Input: []byte("secret"), IdempotencyKey: "k", BodyHash: "h", Published: true, Worker: "w"}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"j1","status":"queued","created_at":"2031-01-02T03:04:05Z","started_at":null,"finished_at":null,"attempts":0}`
	if string(b) != want {
		t.Fatalf("Job JSON\n got %s\nwant %s", b, want)
	}
}
