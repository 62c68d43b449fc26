package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/internal/nanos"
)

// record is a jobs.Job as BoltStore stores it: every field, internal ones
// included, with times as Unix nanoseconds (0 = unset).
type record struct {
	ID             string          `json:"id"`
	Status         jobs.Status     `json:"status"`
	CreatedAt      int64           `json:"created"`
	StartedAt      int64           `json:"started,omitempty"`
	FinishedAt     int64           `json:"finished,omitempty"`
	Attempts       int             `json:"attempts,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          *jobs.Error     `json:"error,omitempty"`
	RequestID      string          `json:"request_id,omitempty"`
	Input          []byte          `json:"input,omitempty"`
	IdempotencyKey string          `json:"idem,omitempty"`
	BodyHash       string          `json:"body_hash,omitempty"`
	Published      bool            `json:"published,omitempty"`
	StartBy        int64           `json:"start_by,omitempty"`
	Worker         string          `json:"worker,omitempty"`
	Model          string          `json:"model,omitempty"`
	Version        string          `json:"model_version,omitempty"`
	Format         string          `json:"format,omitempty"`
	Owner          string          `json:"owner,omitempty"`
}

func encodeJob(j *jobs.Job) ([]byte, error) {
	return json.Marshal(record{
		ID:             j.ID,
		Status:         j.Status,
		CreatedAt:      nanos.Of(j.CreatedAt),
		StartedAt:      nanos.OfPtr(j.StartedAt),
		FinishedAt:     nanos.OfPtr(j.FinishedAt),
		Attempts:       j.Attempts,
		Result:         j.Result,
		Error:          j.Error,
		RequestID:      j.RequestID,
		Input:          j.Input,
		IdempotencyKey: j.IdempotencyKey,
		BodyHash:       j.BodyHash,
		Published:      j.Published,
		StartBy:        nanos.Of(j.StartBy),
		Worker:         j.Worker,
		Model:          j.Model,
		Version:        j.Version,
		Format:         j.Format,
		Owner:          j.Owner,
	})
}

func decodeJob(data []byte) (*jobs.Job, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &jobs.Job{
		ID:             r.ID,
		Status:         r.Status,
		CreatedAt:      nanos.Time(r.CreatedAt),
		StartedAt:      nanos.TimePtr(r.StartedAt),
		FinishedAt:     nanos.TimePtr(r.FinishedAt),
		Attempts:       r.Attempts,
		Result:         r.Result,
		Error:          r.Error,
		RequestID:      r.RequestID,
		Input:          r.Input,
		IdempotencyKey: r.IdempotencyKey,
		BodyHash:       r.BodyHash,
		Published:      r.Published,
		StartBy:        nanos.Time(r.StartBy),
		Worker:         r.Worker,
		Model:          r.Model,
		Version:        r.Version,
		Format:         r.Format,
		Owner:          r.Owner,
	}, nil
}

// indexKey is an index entry: the time as 8 big-endian bytes (so keys sort
// by time) followed by the job id.
func indexKey(t time.Time, id string) []byte {
	k := make([]byte, 8+len(id))
	n := nanos.Of(t)
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
