package jobs

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
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
		{"error without reason", Event{JobID: "a", Type: EventFinal, Status: Failed, Error: &Error{Message: "boom"}}, false},
		{"failed without error", Event{JobID: "a", Type: EventFinal, Status: Failed}, true},
		{"reason of a newer worker", Event{JobID: "a", Type: EventFinal, Status: Failed, Error: &Error{Reason: "gpu_on_fire"}}, true},
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

// TestEventDecodesQueueJobUpdate: the JSON pkg/queue's JobUpdate produced
// (worker always present, plain strings) decodes into the same Event, so
// workers and APIs of both versions understand each other during a rollout.
func TestEventDecodesQueueJobUpdate(t *testing.T) {
	at := time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, tc := range []struct {
		wire string
		want Event
	}{
		{`{"job_id":"j1","type":"running","at":"2031-01-02T03:04:05.000000006Z","attempt":1,"worker":""}`,
			Event{JobID: "j1", Type: EventRunning, At: at, Attempt: 1}},
		{`{"job_id":"j1","type":"final","status":"failed","at":"2031-01-02T03:04:05.000000006Z","attempt":3,"worker":"w","error":{"reason":"attempts_exhausted","message":"m"}}`,
			Event{JobID: "j1", Type: EventFinal, Status: Failed, At: at, Attempt: 3, Worker: "w", Error: &Error{Reason: ReasonAttemptsExhausted, Message: "m"}}},
		{`{"job_id":"j1","type":"final","status":"succeeded","at":"2031-01-02T03:04:05.000000006Z","attempt":1,"worker":"w","result":{"a":1}}`,
			Event{JobID: "j1", Type: EventFinal, Status: Succeeded, At: at, Attempt: 1, Worker: "w", Result: json.RawMessage(`{"a":1}`)}},
	} {
		var got Event
		if err := json.Unmarshal([]byte(tc.wire), &got); err != nil {
			t.Fatalf("%s: %v", tc.wire, err)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", tc.wire, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s\n decoded %+v\n    want %+v", tc.wire, got, tc.want)
		}
	}
}

// TestReasons pins the reason vocabulary: these strings are on the wire and
// in clients' hands.
func TestReasons(t *testing.T) {
	want := map[Reason]string{
		ReasonModelError: "model_error", ReasonBadMessage: "bad_message", ReasonBadInput: "bad_input",
		ReasonAttemptsExhausted: "attempts_exhausted", ReasonDeliveryLimit: "delivery_limit",
		ReasonRunTimeout: "run_timeout", ReasonExpired: "expired", ReasonTimeout: "timeout",
	}
	if len(Reasons) != len(want) {
		t.Fatalf("Reasons has %d entries, want %d", len(Reasons), len(want))
	}
	seen := map[Reason]bool{}
	for _, r := range Reasons {
		if w, ok := want[r]; !ok || string(r) != w {
			t.Errorf("Reasons holds %q, not in the documented vocabulary", r)
		}
		if seen[r] {
			t.Errorf("Reasons lists %q twice", r)
		}
		seen[r] = true
		if !r.Known() {
			t.Errorf("%q.Known() = false", r)
		}
	}
	for _, r := range []Reason{"", "gpu_on_fire", "Model_Error"} {
		if r.Known() {
			t.Errorf("%q.Known() = true", r)
		}
	}
	if got := ExpiredError().Reason; got != ReasonExpired {
		t.Errorf("ExpiredError().Reason = %q", got)
	}
}

func TestFinalStatuses(t *testing.T) {
	want := []Status{Succeeded, Failed, Expired, Cancelled}
	if !reflect.DeepEqual(FinalStatuses, want) {
		t.Fatalf("FinalStatuses = %v, want %v", FinalStatuses, want)
	}
	for _, s := range []Status{Queued, Running, Succeeded, Failed, Expired, Cancelled} {
		if slices.Contains(FinalStatuses, s) != s.Final() {
			t.Errorf("%q: in FinalStatuses = %v, Final() = %v", s, !s.Final(), s.Final())
		}
		if !s.Valid() {
			t.Errorf("%q.Valid() = false", s)
		}
	}
	if Status("bogus").Valid() || Status("").Valid() {
		t.Error("an unknown status is Valid")
	}
}

// TestJobJSON: the HTTP body fields only; started_at/finished_at are null
// until set; model and model_version only when set; internal fields never
// appear.
func TestJobJSON(t *testing.T) {
	j := Job{ID: "j1", Status: Queued, CreatedAt: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC),
		RequestID: "r", Input: []byte("secret"), IdempotencyKey: "k", BodyHash: "h", Published: true, Worker: "w", Format: FormatV2}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"j1","status":"queued","created_at":"2031-01-02T03:04:05Z","started_at":null,"finished_at":null,"attempts":0}`
	if string(b) != want {
		t.Fatalf("Job JSON\n got %s\nwant %s", b, want)
	}
	j.Model, j.Version = "resnet", "3"
	j.Status, j.Error = Failed, &Error{Reason: ReasonModelError, Message: "boom"}
	if b, err = json.Marshal(j); err != nil {
		t.Fatal(err)
	}
	const wantModel = `{"id":"j1","status":"failed","model":"resnet","model_version":"3","created_at":"2031-01-02T03:04:05Z","started_at":null,"finished_at":null,"attempts":0,"error":{"reason":"model_error","message":"boom"}}`
	if string(b) != wantModel {
		t.Fatalf("Job JSON with a model\n got %s\nwant %s", b, wantModel)
	}
}
