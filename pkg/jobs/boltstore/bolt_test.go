package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/jobstest"
)

func openBoltT(t *testing.T, ttl time.Duration, now func() time.Time) jobs.Store {
	t.Helper()
	s, err := OpenBolt(BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db"), TTL: ttl, Now: now})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	// Runs before the Close above (cleanups are LIFO).
	t.Cleanup(func() {
		if err := s.checkIndexes(); err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			t.Errorf("index buckets inconsistent with the jobs: %v", err)
		}
	})
	return s
}

func TestBoltContract(t *testing.T) { jobstest.Run(t, openBoltT) }

// checkIndexes verifies that every index entry is implied by a job and every
// job has the entries it implies.
func (s *BoltStore) checkIndexes() error {
	return s.db.View(func(tx *bolt.Tx) error {
		want := map[string]map[string]bool{}
		add := func(bucket []byte, k []byte) {
			if k == nil {
				return
			}
			if want[string(bucket)] == nil {
				want[string(bucket)] = map[string]bool{}
			}
			want[string(bucket)][string(k)] = true
		}
		err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			j, err := decodeJob(v)
			if err != nil {
				return err
			}
			e := entriesFor(j)
			add(bucketUnpublished, e.unpublished)
			add(bucketStartBy, e.startBy)
			add(bucketFinished, e.finished)
			if j.IdempotencyKey != "" && tx.Bucket(bucketIdem).Get([]byte(j.IdempotencyKey)) == nil {
				return fmt.Errorf("job %s: idempotency key %q missing", j.ID, j.IdempotencyKey)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketUnpublished, bucketStartBy, bucketFinished} {
			got := map[string]bool{}
			_ = tx.Bucket(b).ForEach(func(k, _ []byte) error { got[string(k)] = true; return nil })
			for k := range got {
				if !want[string(b)][k] {
					_, id := splitIndexKey([]byte(k))
					return fmt.Errorf("bucket %s: stale entry for %s", b, id)
				}
			}
			for k := range want[string(b)] {
				if !got[k] {
					_, id := splitIndexKey([]byte(k))
					return fmt.Errorf("bucket %s: missing entry for %s", b, id)
				}
			}
		}
		return nil
	})
}

// TestBoltReopen: what was stored survives a Close and a new OpenBolt (an API
// restart): jobs, idempotency keys, the outbox, the start-by index and meta.
func TestBoltReopen(t *testing.T) {
	ctx := context.Background()
	clk := jobstest.NewClock()
	path := filepath.Join(t.TempDir(), "data", "jobs.db") // the directory is created
	s, err := OpenBolt(BoltConfig{Path: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	jobstest.MustCreate(t, s, &jobs.Job{ID: "pub", IdempotencyKey: "K", BodyHash: "H", Input: []byte("in")})
	if err := s.MarkPublished(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	jobstest.MustCreate(t, s, &jobs.Job{ID: "unpub", StartBy: jobstest.T0.Add(time.Minute)})
	jobstest.MustCreate(t, s, &jobs.Job{ID: "done"})
	done := jobstest.MustApply(t, s, jobs.Event{JobID: "done", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: jobstest.T0, Result: []byte(`{"a":1}`)}, true)
	before := map[string]*jobs.Job{"pub": jobstest.MustGet(t, s, "pub"), "unpub": jobstest.MustGet(t, s, "unpub"), "done": done}
	if err := s.PutMeta(ctx, "models/m", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenBolt(BoltConfig{Path: path, Now: clk.Now})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for id, want := range before {
		jobstest.SameJob(t, "after reopen "+id, jobstest.MustGet(t, s, id), want)
	}
	if m, err := s.ListMeta(ctx, ""); err != nil || len(m) != 1 || string(m["models/m"]) != `{"v":1}` {
		t.Fatalf("meta after reopen = %q, %v", m, err)
	}
	if existing, err := s.Create(ctx, &jobs.Job{ID: "again", IdempotencyKey: "K", BodyHash: "H"}); err != nil || existing == nil || existing.ID != "pub" {
		t.Fatalf("replay after reopen = %+v, %v", existing, err)
	}
	l, err := s.Unpublished(ctx, jobstest.T0.Add(time.Hour), 10)
	if err != nil || len(l) != 1 || l[0].ID != "unpub" {
		t.Fatalf("outbox after reopen = %v, %v", l, err)
	}
	if ids, err := s.ExpireQueued(ctx, jobstest.T0.Add(time.Hour), 10); err != nil || len(ids) != 1 || ids[0] != "unpub" {
		t.Fatalf("ExpireQueued after reopen = %v, %v", ids, err)
	}
	if err := s.checkIndexes(); err != nil {
		t.Fatal(err)
	}
}

// TestBoltJanitor: finished jobs past the TTL are deleted with their
// idempotency key (unless the key was reused meanwhile); others stay.
func TestBoltJanitor(t *testing.T) {
	ctx := context.Background()
	clk := jobstest.NewClock()
	s, err := OpenBolt(BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db"), TTL: time.Hour, Now: clk.Now, JanitorInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	jobstest.MustCreate(t, s, &jobs.Job{ID: "old", IdempotencyKey: "K1", BodyHash: "H"})
	jobstest.MustApply(t, s, jobs.Event{JobID: "old", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: jobstest.T0}, true)
	jobstest.MustCreate(t, s, &jobs.Job{ID: "reused", IdempotencyKey: "K2", BodyHash: "H"})
	jobstest.MustApply(t, s, jobs.Event{JobID: "reused", Type: jobs.EventFinal, Status: jobs.Failed, Attempt: 1, At: jobstest.T0}, true)
	jobstest.MustCreate(t, s, &jobs.Job{ID: "recent"})
	jobstest.MustApply(t, s, jobs.Event{JobID: "recent", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: jobstest.T0.Add(30 * time.Minute)}, true)
	jobstest.MustCreate(t, s, &jobs.Job{ID: "queued", CreatedAt: jobstest.T0.Add(-100 * time.Hour)})

	clk.Set(jobstest.T0.Add(time.Hour))
	jobstest.MustCreate(t, s, &jobs.Job{ID: "new", IdempotencyKey: "K2", BodyHash: "H"}) // K2 is free again

	n, err := s.sweep(clk.Now())
	if err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v; want 2", n, err)
	}
	raw := func(bucket, key string) bool {
		var found bool
		_ = s.db.View(func(tx *bolt.Tx) error { found = tx.Bucket([]byte(bucket)).Get([]byte(key)) != nil; return nil })
		return found
	}
	if raw("jobs", "old") || raw("jobs", "reused") || raw("idem", "K1") {
		t.Fatal("sweep left a job or key past TTL")
	}
	if !raw("idem", "K2") || !raw("jobs", "recent") || !raw("jobs", "queued") || !raw("jobs", "new") {
		t.Fatal("sweep deleted too much")
	}
	if existing, err := s.Create(ctx, &jobs.Job{ID: "x", IdempotencyKey: "K2", BodyHash: "H"}); !errors.Is(err, jobs.ErrInProgress) || existing.ID != "new" {
		t.Fatalf("K2 after sweep = %+v, %v; want job new", existing, err)
	}
	if err := s.checkIndexes(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.sweep(clk.Now()); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v", n, err)
	}
}

// TestBoltJanitorRuns: the goroutine sweeps on its own.
func TestBoltJanitorRuns(t *testing.T) {
	clk := jobstest.NewClock()
	s, err := OpenBolt(BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db"), TTL: time.Minute, Now: clk.Now, JanitorInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	jobstest.MustCreate(t, s, &jobs.Job{ID: "a"})
	jobstest.MustApply(t, s, jobs.Event{JobID: "a", Type: jobs.EventFinal, Status: jobs.Succeeded, Attempt: 1, At: jobstest.T0}, true)
	clk.Set(jobstest.T0.Add(time.Hour))
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found bool
		_ = s.db.View(func(tx *bolt.Tx) error { found = tx.Bucket(bucketJobs).Get([]byte("a")) != nil; return nil })
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("janitor did not delete the job within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBoltLocked: a second process (here: a second open) gets an error after
// LockTimeout instead of hanging.
func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	s, err := OpenBolt(BoltConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	s2, err := OpenBolt(BoltConfig{Path: path, LockTimeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second OpenBolt of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), "locked") || time.Since(start) > 2*time.Second {
		t.Fatalf("second OpenBolt: %v after %v", err, time.Since(start))
	}
}

func TestBoltConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  BoltConfig
		want string
	}{
		{"no path", BoltConfig{}, "Path is required"},
		{"negative TTL", BoltConfig{Path: filepath.Join(t.TempDir(), "a.db"), TTL: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenBolt(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestBoltVersionMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put([]byte("version"), []byte("99"))
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	s, err := OpenBolt(BoltConfig{Path: path})
	if err == nil {
		s.Close()
		t.Fatal("OpenBolt accepted a version-99 file")
	}
	if !strings.Contains(err.Error(), "version") {
		t.Fatalf("err = %v", err)
	}
}
