package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/internal/nanos"
)

// Bucket names of a BoltStore file. Every index bucket holds only the jobs it
// is about (keys: 8-byte big-endian Unix nanoseconds + job id, empty values),
// so the outbox, the reaper and the janitor never scan all jobs.
var (
	bucketJobs        = []byte("jobs")        // id → record (JSON)
	bucketIdem        = []byte("idem")        // idempotency key → id
	bucketUnpublished = []byte("unpublished") // created_at+id: not Published, not final
	bucketStartBy     = []byte("start_by")    // start_by+id: queued with a StartBy
	bucketFinished    = []byte("finished")    // finished_at+id: final (janitor)
	bucketDead        = []byte("dead")        // finished_at+id: dead letters (jobs.IsDeadLetter)
	bucketMeta        = []byte("meta")        // "version" → schemaVersion
	bucketKV          = []byte("kv")          // PutMeta key → value
)

// schemaVersion is the layout version written into new files; OpenBolt
// refuses a file of another version.
const schemaVersion = "1"

// BoltConfig configures [OpenBolt]. Only Path is required.
type BoltConfig struct {
	// Path of the database file, e.g. DATA_DIR/jobs.db. Its directory is
	// created if missing.
	Path string
	// TTL is how long a finished job stays readable (JOB_TTL); 0 means
	// jobs.DefaultTTL (24h).
	TTL time.Duration
	// Logger receives the janitor's errors; nil discards.
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// BatchDelay is the longest a write waits for others to share its
	// transaction (bbolt's DB.MaxBatchDelay); 0 means 500µs. Longer delays
	// coalesce more writes per transaction but add latency to each: bbolt's
	// own default (10ms) caps Create+MarkPublished near 2,500 jobs/s at
	// concurrency 64 here, 0.5ms gives about 11,000 (BenchmarkCreatePublish).
	BatchDelay time.Duration
	// LockTimeout is how long OpenBolt waits for the file lock held by
	// another process (e.g. an API instance still shutting down); 0 means 5s.
	LockTimeout time.Duration
	// JanitorInterval is how often finished jobs past TTL are deleted; 0
	// means TTL/10, between 1s and 1m.
	JanitorInterval time.Duration
}

// BoltStore is the embedded, persistent [jobs.Store] for a single API
// instance: one bbolt file. Writes go through DB.Batch, so concurrent
// callers share one transaction and one fsync; reads are DB.View. Wait is
// woken in-process.
//
// Only one process may open the file at a time (bbolt locks it).
type BoltStore struct {
	db      *bolt.DB
	ttl     time.Duration
	now     func() time.Time
	log     *slog.Logger
	waiters *jobs.Notifier

	stop      chan struct{} // closed by Close: stops the janitor
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ jobs.Store = (*BoltStore)(nil)

// OpenBolt opens (creating if needed) the job database at cfg.Path and starts
// its janitor goroutine, which deletes finished jobs past the TTL (and their
// idempotency keys) until Close.
func OpenBolt(cfg BoltConfig) (*BoltStore, error) {
	if cfg.Path == "" {
		return nil, errors.New("boltstore: BoltConfig.Path is required")
	}
	if cfg.TTL < 0 || cfg.BatchDelay < 0 || cfg.LockTimeout < 0 || cfg.JanitorInterval < 0 {
		return nil, errors.New("boltstore: BoltConfig durations must not be negative")
	}
	if cfg.TTL == 0 {
		cfg.TTL = jobs.DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchDelay == 0 {
		cfg.BatchDelay = 500 * time.Microsecond
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = 5 * time.Second
	}
	if cfg.JanitorInterval == 0 {
		cfg.JanitorInterval = min(max(cfg.TTL/10, time.Second), time.Minute)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("boltstore: create data directory: %w", err)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{
		Timeout:        cfg.LockTimeout,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true, // faster commits; the freelist is rebuilt on open
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: open %s: still locked by another process after %v: %w", cfg.Path, cfg.LockTimeout, err)
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", cfg.Path, err)
	}
	db.MaxBatchDelay = cfg.BatchDelay
	if err := db.Update(initBuckets); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", cfg.Path, err)
	}
	s := &BoltStore{
		db:      db,
		ttl:     cfg.TTL,
		now:     cfg.Now,
		log:     cfg.Logger,
		waiters: jobs.NewNotifier(),
		stop:    make(chan struct{}),
	}
	s.wg.Add(1)
	go s.janitor(cfg.JanitorInterval)
	return s, nil
}

func initBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketJobs, bucketIdem, bucketUnpublished, bucketStartBy, bucketFinished, bucketDead, bucketMeta, bucketKV} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	switch v := meta.Get([]byte("version")); {
	case v == nil:
		return meta.Put([]byte("version"), []byte(schemaVersion))
	case string(v) != schemaVersion:
		return fmt.Errorf("unsupported job database version %q (want %q)", v, schemaVersion)
	}
	return nil
}

// Close stops the janitor, wakes every Wait and closes the file. Idempotent.
func (s *BoltStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.waiters.Close()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Create implements [jobs.Store.Create].
func (s *BoltStore) Create(ctx context.Context, j *jobs.Job) (*jobs.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	if err := jobs.PrepareCreate(j, now); err != nil {
		return nil, err
	}
	nj := *j // the stored copy: j is the caller's
	var (
		existing *jobs.Job
		outcome  error
	)
	err := s.batch(func(tx *bolt.Tx) error {
		existing, outcome = nil, nil // Batch may run this more than once
		if nj.IdempotencyKey != "" {
			if id := tx.Bucket(bucketIdem).Get([]byte(nj.IdempotencyKey)); id != nil {
				old, err := loadJob(tx, string(id))
				if err != nil {
					return err
				}
				if old != nil && jobs.Visible(old, now, s.ttl) {
					existing, outcome = old, jobs.ReplayOutcome(old, &nj)
					return nil
				}
				// The key's job is gone or past TTL: the key is free.
			}
		}
		if tx.Bucket(bucketJobs).Get([]byte(nj.ID)) != nil {
			outcome = fmt.Errorf("%w: job id %q exists", jobs.ErrConflict, nj.ID)
			return nil
		}
		if nj.IdempotencyKey != "" {
			if err := tx.Bucket(bucketIdem).Put([]byte(nj.IdempotencyKey), []byte(nj.ID)); err != nil {
				return err
			}
		}
		return saveJob(tx, nil, &nj)
	})
	if err != nil {
		return nil, s.wrapErr("create", nj.ID, err)
	}
	return existing, outcome
}

// Get implements [jobs.Store.Get].
func (s *BoltStore) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var j *jobs.Job
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		j, err = loadJob(tx, id)
		return err
	})
	if err != nil {
		return nil, s.wrapErr("get", id, err)
	}
	if j == nil || !jobs.Visible(j, s.now(), s.ttl) {
		return nil, jobs.ErrNotFound
	}
	return j, nil
}

// MarkPublished implements [jobs.Store.MarkPublished].
func (s *BoltStore) MarkPublished(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var outcome error
	err := s.batch(func(tx *bolt.Tx) error {
		outcome = nil
		j, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		if j == nil {
			outcome = jobs.ErrNotFound
			return nil
		}
		if j.Published {
			return nil
		}
		old := *j
		j.Published = true
		return saveJob(tx, &old, j)
	})
	if err != nil {
		return s.wrapErr("mark published", id, err)
	}
	return outcome
}

// Unpublished implements [jobs.Store.Unpublished].
func (s *BoltStore) Unpublished(ctx context.Context, createdBefore time.Time, limit int) ([]*jobs.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	before := nanos.Of(createdBefore)
	var out []*jobs.Job
	err := s.db.View(func(tx *bolt.Tx) error {
		out = out[:0]
		c := tx.Bucket(bucketUnpublished).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			ns, id := splitIndexKey(k)
			if ns >= before {
				break
			}
			j, err := loadJob(tx, id)
			if err != nil {
				return err
			}
			if j != nil && !j.Published && !j.Status.Final() {
				out = append(out, j)
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrapErr("list unpublished", "", err)
	}
	return out, nil
}

// Apply implements [jobs.Store.Apply].
func (s *BoltStore) Apply(ctx context.Context, ev jobs.Event) (*jobs.Job, bool, error) {
	if err := ev.Validate(); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	now := s.now()
	var (
		out     *jobs.Job
		changed bool
	)
	err := s.batch(func(tx *bolt.Tx) error {
		out, changed = nil, false
		j, err := loadJob(tx, ev.JobID)
		if err != nil || j == nil || !jobs.Visible(j, now, s.ttl) {
			return err
		}
		old := *j
		if changed = jobs.ApplyEvent(j, ev, now); changed {
			if err := saveJob(tx, &old, j); err != nil {
				return err
			}
		}
		out = j
		return nil
	})
	if err != nil {
		return nil, false, s.wrapErr("apply event to", ev.JobID, err)
	}
	if out == nil {
		return nil, false, jobs.ErrNotFound
	}
	if changed && out.Status.Final() {
		s.waiters.Notify(out.ID)
	}
	return out, changed, nil
}

// Cancel implements [jobs.Store.Cancel].
func (s *BoltStore) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	var (
		out     *jobs.Job
		outcome error
	)
	err := s.batch(func(tx *bolt.Tx) error {
		out, outcome = nil, nil
		j, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		if j == nil || !jobs.Visible(j, now, s.ttl) {
			outcome = jobs.ErrNotFound
			return nil
		}
		out = j
		if j.Status != jobs.Queued {
			outcome = jobs.ErrConflict
			return nil
		}
		old := *j
		j.Status, j.FinishedAt = jobs.Cancelled, &now
		return saveJob(tx, &old, j)
	})
	if err != nil {
		return nil, s.wrapErr("cancel", id, err)
	}
	if outcome == nil {
		s.waiters.Notify(id)
	}
	return out, outcome
}

// Delete implements [jobs.Store.Delete].
func (s *BoltStore) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var found bool
	err := s.batch(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketJobs).Get([]byte(id)) != nil
		return deleteJob(tx, id)
	})
	if err != nil {
		return s.wrapErr("delete", id, err)
	}
	if !found {
		return jobs.ErrNotFound
	}
	s.waiters.Notify(id)
	return nil
}

// ExpireQueued implements [jobs.Store.ExpireQueued].
func (s *BoltStore) ExpireQueued(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	now = now.UTC()
	cutoff := nanos.Of(now)
	var ids []string
	err := s.batch(func(tx *bolt.Tx) error {
		ids = ids[:0]
		// Collect first: deleting under a cursor skips entries.
		var due []string
		c := tx.Bucket(bucketStartBy).Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			ns, id := splitIndexKey(k)
			if ns > cutoff {
				break
			}
			due = append(due, id)
		}
		for _, id := range due {
			j, err := loadJob(tx, id)
			if err != nil {
				return err
			}
			if j == nil || j.Status != jobs.Queued { // a stale entry: saveJob keeps none
				continue
			}
			old := *j
			j.Status, j.FinishedAt, j.Error = jobs.Expired, &now, jobs.ExpiredError()
			if err := saveJob(tx, &old, j); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrapErr("expire queued", "", err)
	}
	for _, id := range ids {
		s.waiters.Notify(id)
	}
	return ids, nil
}

// DeadLetters implements [jobs.Store.DeadLetters].
func (s *BoltStore) DeadLetters(ctx context.Context, after string, limit int) ([]*jobs.Job, error) {
	ns, afterID, err := jobs.ParseDeadCursor(after)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	now := s.now()
	var out []*jobs.Job
	err = s.db.View(func(tx *bolt.Tx) error {
		out = out[:0]
		start := indexKey(time.Unix(0, ns), afterID)
		c := tx.Bucket(bucketDead).Cursor()
		for k, _ := c.Seek(start); k != nil && len(out) < limit; k, _ = c.Next() {
			if bytes.Equal(k, start) {
				continue
			}
			_, id := splitIndexKey(k)
			j, err := loadJob(tx, id)
			if err != nil {
				return err
			}
			if j != nil && jobs.IsDeadLetter(j) && jobs.Visible(j, now, s.ttl) {
				out = append(out, j)
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrapErr("list dead letters", "", err)
	}
	return out, nil
}

// CountDeadLetters implements [jobs.Store.CountDeadLetters]: the dead
// letters not yet past the TTL (the janitor deletes those a little later).
func (s *BoltStore) CountDeadLetters(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cutoff := nanos.Of(s.now().Add(-s.ttl))
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDead).Cursor()
		for k, _ := c.Seek(indexKey(time.Unix(0, cutoff+1), "")); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, s.wrapErr("count dead letters", "", err)
	}
	return n, nil
}

// Replay implements [jobs.Store.Replay].
func (s *BoltStore) Replay(ctx context.Context, id string, startBy time.Time) (*jobs.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	var (
		out     *jobs.Job
		outcome error
	)
	err := s.batch(func(tx *bolt.Tx) error {
		out, outcome = nil, nil
		j, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		if j == nil || !jobs.Visible(j, now, s.ttl) {
			outcome = jobs.ErrNotFound
			return nil
		}
		old := *j
		if outcome = jobs.PrepareReplay(j, now, startBy); outcome != nil {
			out = &old
			return nil
		}
		out = j
		return saveJob(tx, &old, j)
	})
	if err != nil {
		return nil, s.wrapErr("replay", id, err)
	}
	return out, outcome
}

// Wait implements [jobs.Store.Wait].
func (s *BoltStore) Wait(ctx context.Context, id string, timeout time.Duration) (*jobs.Job, error) {
	return s.waiters.Wait(ctx, s.Get, id, timeout)
}

// PutMeta implements [jobs.Store.PutMeta].
func (s *BoltStore) PutMeta(ctx context.Context, key string, value []byte) error {
	if err := jobs.CheckMetaKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	v := append([]byte{}, value...) // bbolt keeps the slice until the commit
	err := s.batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKV).Put([]byte(key), v)
	})
	if err != nil {
		return s.wrapErr("put meta", key, err)
	}
	return nil
}

// ListMeta implements [jobs.Store.ListMeta].
func (s *BoltStore) ListMeta(ctx context.Context, prefix string) (map[string][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			out[string(k)] = append([]byte{}, v...) // v is only valid in tx
		}
		return nil
	})
	if err != nil {
		return nil, s.wrapErr("list meta", prefix, err)
	}
	return out, nil
}

// batch runs fn in a DB.Batch. fn may run more than once (bbolt retries a
// batch without a failing call), so it must reset its outputs first, and it
// returns an error only for storage failures: domain outcomes (not found,
// conflict) go through captured variables so that they do not make bbolt
// re-run the whole batch.
func (s *BoltStore) batch(fn func(*bolt.Tx) error) error {
	return s.db.Batch(fn)
}

// wrapErr maps a closed database to jobs.ErrClosed and names the operation.
func (s *BoltStore) wrapErr(op, id string, err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = jobs.ErrClosed
	}
	if id == "" {
		return fmt.Errorf("boltstore: %s: %w", op, err)
	}
	return fmt.Errorf("boltstore: %s %s: %w", op, id, err)
}

// loadJob reads job id in tx; nil (and no error) if there is none.
func loadJob(tx *bolt.Tx, id string) (*jobs.Job, error) {
	data := tx.Bucket(bucketJobs).Get([]byte(id))
	if data == nil {
		return nil, nil
	}
	j, err := decodeJob(data)
	if err != nil {
		return nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	return j, nil
}

// indexEntries are the index keys a job state implies, nil where it has none.
type indexEntries struct{ unpublished, startBy, finished, dead []byte }

func entriesFor(j *jobs.Job) indexEntries {
	var e indexEntries
	if j == nil {
		return e
	}
	if !j.Published && !j.Status.Final() {
		e.unpublished = indexKey(j.CreatedAt, j.ID)
	}
	if j.Status == jobs.Queued && !j.StartBy.IsZero() {
		e.startBy = indexKey(j.StartBy, j.ID)
	}
	if j.Status.Final() && j.FinishedAt != nil {
		e.finished = indexKey(*j.FinishedAt, j.ID)
		if jobs.IsDeadLetter(j) {
			e.dead = e.finished
		}
	}
	return e
}

// saveJob writes j and moves its index entries from what old (nil for a new
// job) implied to what j implies.
func saveJob(tx *bolt.Tx, old, j *jobs.Job) error {
	data, err := encodeJob(j)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	if err := tx.Bucket(bucketJobs).Put([]byte(j.ID), data); err != nil {
		return err
	}
	was, now := entriesFor(old), entriesFor(j)
	for _, ix := range []struct {
		bucket   []byte
		was, now []byte
	}{
		{bucketUnpublished, was.unpublished, now.unpublished},
		{bucketStartBy, was.startBy, now.startBy},
		{bucketFinished, was.finished, now.finished},
		{bucketDead, was.dead, now.dead},
	} {
		if bytes.Equal(ix.was, ix.now) {
			continue
		}
		b := tx.Bucket(ix.bucket)
		if ix.was != nil {
			if err := b.Delete(ix.was); err != nil {
				return err
			}
		}
		if ix.now != nil {
			if err := b.Put(ix.now, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// janitorBatch bounds the jobs one janitor transaction deletes.
const janitorBatch = 1000

// janitor deletes finished jobs past the TTL every interval until Close.
func (s *BoltStore) janitor(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.sweep(s.now()); err != nil {
				s.log.Error("job janitor failed", "err", err)
			}
		}
	}
}

// sweep deletes every finished job whose FinishedAt is more than the TTL
// before now, with its idempotency key (if the key still points at it), in
// transactions of at most janitorBatch jobs. It returns how many it deleted.
func (s *BoltStore) sweep(now time.Time) (int, error) {
	cutoff := nanos.Of(now.Add(-s.ttl))
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			fin := tx.Bucket(bucketFinished)
			var keys [][]byte
			c := fin.Cursor()
			for k, _ := c.First(); k != nil && len(keys) < janitorBatch; k, _ = c.Next() {
				if ns, _ := splitIndexKey(k); ns > cutoff {
					break
				}
				keys = append(keys, append([]byte(nil), k...))
			}
			for _, k := range keys {
				_, id := splitIndexKey(k)
				if err := deleteJob(tx, id); err != nil {
					return err
				}
				if err := fin.Delete(k); err != nil { // in case the job was already gone
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("boltstore: janitor: %w", err)
		}
		total += n
		if n < janitorBatch {
			return total, nil
		}
	}
}

// deleteJob deletes job id, its index entries and its idempotency key if
// that key still names it.
func deleteJob(tx *bolt.Tx, id string) error {
	j, err := loadJob(tx, id)
	if err != nil || j == nil {
		return err
	}
	if j.IdempotencyKey != "" {
		idem := tx.Bucket(bucketIdem)
		if cur := idem.Get([]byte(j.IdempotencyKey)); string(cur) == id {
			if err := idem.Delete([]byte(j.IdempotencyKey)); err != nil {
				return err
			}
		}
	}
	e := entriesFor(j)
	for _, ix := range []struct{ bucket, key []byte }{
		{bucketUnpublished, e.unpublished}, {bucketStartBy, e.startBy}, {bucketFinished, e.finished},
		{bucketDead, e.dead},
	} {
		if ix.key != nil {
			if err := tx.Bucket(ix.bucket).Delete(ix.key); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketJobs).Delete([]byte(id))
}

// Waiters is how many Waits of this store are waiting on id now (tests,
// diagnostics).
func (s *BoltStore) Waiters(id string) int { return s.waiters.Waiters(id) }
