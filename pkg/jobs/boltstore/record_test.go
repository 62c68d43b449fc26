package boltstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/jobstest"
)

// The tests in this file need no database: they run under -short too.

func TestRecordRoundTrip(t *testing.T) {
	started, finished := jobstest.T0.Add(time.Second), jobstest.T0.Add(2*time.Second)
	j := &jobs.Job{ID: "a", Status: jobs.Failed, CreatedAt: jobstest.T0, StartedAt: &started, FinishedAt: &finished, Attempts: 3,
		Result: json.RawMessage(`{"a":[1,2]}`), Error: &jobs.Error{Reason: "r", Message: "m"}, RequestID: "req",
		Input: []byte{0, 1, 2, 255}, IdempotencyKey: "k", BodyHash: "h", Published: true, StartBy: jobstest.T0.Add(time.Hour), Worker: "w",
		Model: "m", Version: "v", Format: jobs.FormatProcess}
	data, err := encodeJob(j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	jobstest.SameJob(t, "record round trip", got, j)
}

func TestIndexKeyOrder(t *testing.T) {
	a := indexKey(jobstest.T0, "zzz")
	b := indexKey(jobstest.T0.Add(time.Nanosecond), "aaa")
	if string(a) >= string(b) {
		t.Fatal("index keys do not sort by time first")
	}
	ns, id := splitIndexKey(b)
	if ns != jobstest.T0.Add(time.Nanosecond).UnixNano() || id != "aaa" {
		t.Fatalf("splitIndexKey = %d, %q", ns, id)
	}
}
