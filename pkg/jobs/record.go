package jobs

import (
	"encoding/binary"
	"encoding/json"
	"time"
)

// record is a Job as BoltStore stores it: every field, internal ones
// included, with times as Unix nanoseconds (0 = unset).
type record struct {
	ID             string          `json:"id"`
	Status         Status          `json:"status"`
	CreatedAt      int64           `json:"created"`
	StartedAt      int64           `json:"started,omitempty"`
	FinishedAt     int64           `json:"finished,omitempty"`
	Attempts       int             `json:"attempts,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          *Error          `json:"error,omitempty"`
	RequestID      string          `json:"request_id,omitempty"`
	Input          []byte          `json:"input,omitempty"`
	IdempotencyKey string          `json:"idem,omitempty"`
	BodyHash       string          `json:"body_hash,omitempty"`
	Published      bool            `json:"published,omitempty"`
	StartBy        int64           `json:"start_by,omitempty"`
	Worker         string          `json:"worker,omitempty"`
}

func encodeJob(j *Job) ([]byte, error) {
	return json.Marshal(record{
		ID:             j.ID,
		Status:         j.Status,
		CreatedAt:      nanos(j.CreatedAt),
		StartedAt:      nanosPtr(j.StartedAt),
		FinishedAt:     nanosPtr(j.FinishedAt),
		Attempts:       j.Attempts,
		Result:         j.Result,
		Error:          j.Error,
		RequestID:      j.RequestID,
		Input:          j.Input,
		IdempotencyKey: j.IdempotencyKey,
		BodyHash:       j.BodyHash,
		Published:      j.Published,
		StartBy:        nanos(j.StartBy),
		Worker:         j.Worker,
	})
}

func decodeJob(data []byte) (*Job, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &Job{
		ID:             r.ID,
		Status:         r.Status,
		CreatedAt:      fromNanos(r.CreatedAt),
		StartedAt:      fromNanosPtr(r.StartedAt),
		FinishedAt:     fromNanosPtr(r.FinishedAt),
		Attempts:       r.Attempts,
		Result:         r.Result,
		Error:          r.Error,
		RequestID:      r.RequestID,
		Input:          r.Input,
		IdempotencyKey: r.IdempotencyKey,
		BodyHash:       r.BodyHash,
		Published:      r.Published,
		StartBy:        fromNanos(r.StartBy),
		Worker:         r.Worker,
	}, nil
}

// nanos is t as Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosPtr(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return nanos(*t)
}

// fromNanos is the inverse of nanos, in UTC.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func fromNanosPtr(n int64) *time.Time {
	if n == 0 {
		return nil
	}
	t := fromNanos(n)
	return &t
}

// indexKey is an index entry: the time as 8 big-endian bytes (so keys sort
// by time) followed by the job id.
func indexKey(t time.Time, id string) []byte {
	k := make([]byte, 8+len(id))
	n := nanos(t)
	if n < 0 {
		n = 0
	}
	binary.BigEndian.PutUint64(k, uint64(n))
	copy(k[8:], id)
	return k
}

// splitIndexKey is the inverse of indexKey.
func splitIndexKey(k []byte) (ns int64, id string) {
	if len(k) < 8 {
		return 0, ""
	}
	return int64(binary.BigEndian.Uint64(k[:8])), string(k[8:])
}
