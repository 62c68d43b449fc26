package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/internal/nanos"
	"github.com/warren-farm/warren/pkg/tlsconfig"
)

// RedisConfig configures [OpenRedis]. Only URL is required.
type RedisConfig struct {
	// URL of the Redis server (REDIS_URL), e.g. redis://127.0.0.1:6379/0 or
	// rediss://user:pass@host:6379/0. Client options such as pool_size or
	// dial_timeout may be given as query parameters (go-redis ParseURL).
	URL string
	// TLS is the CA, client certificate and server name of a rediss:// URL; the
	// zero value trusts the system's roots and expects the URL's host. Files with
	// a plain redis:// URL are an error rather than ignored.
	TLS tlsconfig.Client
	// Prefix of every key and of the notice channel; "" means "warren:".
	// Replicas sharing jobs must use the same prefix.
	Prefix string
	// TTL is how long a finished job (and its idempotency key) stays
	// readable (JOB_TTL); 0 means jobs.DefaultTTL (24h).
	TTL time.Duration
	// Logger receives notice-subscription events; nil discards.
	Logger *slog.Logger
	// Now is the clock that stamps and ages jobs (tests); nil means
	// time.Now. Redis' own key expiry still runs on real time.
	Now func() time.Time
}

// RedisStore is the [jobs.Store] for several API replicas, in Redis (a single
// server or Sentinel; not Cluster). Every write is one round trip: a Lua
// script (EVALSHA) that checks and changes a job atomically, so replicas
// cannot break "the first final state wins".
//
// # Layout
//
//	{prefix}job:{id}      hash: the job (see hashFields); PEXPIRE TTL once final
//	{prefix}idem:{key}    string: job id; PEXPIRE TTL once its job is final
//	{prefix}unpublished   sorted set: ids not Published and not final, by created_at (µs)
//	{prefix}start_by      sorted set: queued ids with a StartBy, by StartBy (µs)
//	{prefix}finished      pub/sub channel: the id of every job that became final
//	{prefix}meta          hash: PutMeta key → value; no expiry
//	{prefix}dead          sorted set: dead letters (jobs.IsDeadLetter), by finished_at (µs);
//	                      entries past the TTL are pruned when read
//
// Every RedisStore holds one subscription to the channel and fans notices out
// to its Waits, so a Wait wakes whichever replica applied the final state.
type RedisStore struct {
	rdb     *redis.Client
	ps      *redis.PubSub
	ttl     time.Duration
	now     func() time.Time
	log     *slog.Logger
	waiters *jobs.Notifier

	kJobPrefix, kIdemPrefix, kUnpublished, kStartBy, kChannel, kMeta, kDead string

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ jobs.Store = (*RedisStore)(nil)

// OpenRedis connects to Redis, checks that it answers, loads the scripts and
// subscribes to finalisation notices (one goroutine, stopped by Close).
func OpenRedis(ctx context.Context, cfg RedisConfig) (*RedisStore, error) {
	if cfg.URL == "" {
		return nil, errors.New("redisstore: RedisConfig.URL is required")
	}
	if cfg.TTL < 0 {
		return nil, errors.New("redisstore: RedisConfig.TTL must not be negative")
	}
	if cfg.TTL == 0 {
		cfg.TTL = jobs.DefaultTTL
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "warren:"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opt, err := Options(cfg.URL, cfg.TLS)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	s := &RedisStore{
		rdb:          rdb,
		ttl:          cfg.TTL,
		now:          cfg.Now,
		log:          cfg.Logger,
		waiters:      jobs.NewNotifier(),
		kJobPrefix:   cfg.Prefix + "job:",
		kIdemPrefix:  cfg.Prefix + "idem:",
		kUnpublished: cfg.Prefix + "unpublished",
		kStartBy:     cfg.Prefix + "start_by",
		kChannel:     cfg.Prefix + "finished",
		kMeta:        cfg.Prefix + "meta",
		kDead:        cfg.Prefix + "dead",
	}
	if err := s.start(ctx); err != nil {
		_ = rdb.Close()
		if opt.TLSConfig != nil {
			err = cfg.TLS.Explain(err, opt.Addr)
		}
		return nil, fmt.Errorf("redisstore: redis %s: %w", opt.Addr, err)
	}
	return s, nil
}

// Options are go-redis's client options for REDIS_URL with tc's CA, client
// certificate and server name (a rediss:// URL), as the store uses them; the
// API's shared rate limiter (pkg/ratelimit/redislimit) connects the same way.
func Options(url string, tc tlsconfig.Client) (*redis.Options, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstore: REDIS_URL: %w", err)
	}
	if err := applyTLS(opt, tc); err != nil {
		return nil, err
	}
	// Maintenance notifications are for managed Redis Enterprise/Cloud
	// endpoints; "auto" would probe every connection for them.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opt, nil
}

// applyTLS puts c's CA, client certificate and server name into the options of a
// rediss:// URL (go-redis's ParseURL gives it only the URL's host as server name).
func applyTLS(opt *redis.Options, c tlsconfig.Client) error {
	if opt.TLSConfig == nil {
		if !c.IsZero() {
			return errors.New("redisstore: TLS files are set but REDIS_URL is redis:// (plain): use rediss://")
		}
		return nil
	}
	if opt.TLSConfig.InsecureSkipVerify {
		return errors.New("redisstore: REDIS_URL: skip_verify would turn certificate verification off, which warren does not do: name your CA in REDIS_CA_FILE instead")
	}
	tc, err := c.Config()
	if err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	if tc.ServerName == "" {
		tc.ServerName = opt.TLSConfig.ServerName
	}
	opt.TLSConfig = tc
	return nil
}

// start loads the scripts, subscribes and starts the notice goroutine.
func (s *RedisStore) start(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load script: %w", err)
		}
	}
	ps := s.rdb.Subscribe(ctx, s.kChannel)
	// Wait for the subscription to be confirmed: notices sent from now on
	// reach this store.
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return fmt.Errorf("subscribe %s: %w", s.kChannel, err)
	}
	s.ps = ps
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	s.wg.Add(1)
	go s.relayNotices(msgs)
	return nil
}

// relayNotices hands each notice to the local waiters until the
// subscription is closed. A new subscription confirmation means go-redis
// reconnected and resubscribed; notices sent in between are lost, so every
// waiter re-reads its job.
func (s *RedisStore) relayNotices(msgs <-chan any) {
	defer s.wg.Done()
	for msg := range msgs {
		switch m := msg.(type) {
		case *redis.Message:
			s.waiters.Notify(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.log.Warn("job notice subscription re-established; waking all waiters", "channel", m.Channel)
				s.waiters.NotifyAll()
			}
		}
	}
}

// Close unsubscribes, stops the notice goroutine, wakes every Wait and
// closes the client. Idempotent.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() {
		err := s.ps.Close()
		s.wg.Wait()
		s.waiters.Close()
		s.closeErr = errors.Join(err, s.rdb.Close())
	})
	return s.closeErr
}

// Create implements [jobs.Store.Create].
func (s *RedisStore) Create(ctx context.Context, j *jobs.Job) (*jobs.Job, error) {
	now := s.now()
	if err := jobs.PrepareCreate(j, now); err != nil {
		return nil, err
	}
	hasIdem := "0"
	if j.IdempotencyKey != "" {
		hasIdem = "1"
	}
	startBy := ""
	if !j.StartBy.IsZero() {
		startBy = strconv.FormatInt(j.StartBy.UnixMicro(), 10)
	}
	args := []any{j.ID, s.cutoff(now), s.kJobPrefix, hasIdem, strconv.FormatInt(j.CreatedAt.UnixMicro(), 10), startBy}
	args = append(args, hashFields(j)...)
	res, err := luaCreate.Run(ctx, s.rdb,
		[]string{s.jobKey(j.ID), s.kIdemPrefix + j.IdempotencyKey, s.kUnpublished, s.kStartBy}, args...).Slice()
	if err != nil {
		return nil, s.wrapErr("create", j.ID, err)
	}
	switch code(res) {
	case 0:
		return nil, nil
	case 1:
		existing, err := jobFromFlat(res[1])
		if err != nil {
			return nil, s.wrapErr("create", j.ID, err)
		}
		return existing, jobs.ReplayOutcome(existing, j)
	case 2:
		return nil, fmt.Errorf("%w: job id %q exists", jobs.ErrConflict, j.ID)
	}
	return nil, s.wrapErr("create", j.ID, fmt.Errorf("unexpected script reply %v", res))
}

// Get implements [jobs.Store.Get].
func (s *RedisStore) Get(ctx context.Context, id string) (*jobs.Job, error) {
	m, err := s.rdb.HGetAll(ctx, s.jobKey(id)).Result()
	if err != nil {
		return nil, s.wrapErr("get", id, err)
	}
	if len(m) == 0 {
		return nil, jobs.ErrNotFound
	}
	j, err := jobFromMap(m)
	if err != nil {
		return nil, s.wrapErr("get", id, err)
	}
	if !jobs.Visible(j, s.now(), s.ttl) {
		return nil, jobs.ErrNotFound
	}
	return j, nil
}

// MarkPublished implements [jobs.Store.MarkPublished].
func (s *RedisStore) MarkPublished(ctx context.Context, id string) error {
	n, err := luaMarkPublished.Run(ctx, s.rdb, []string{s.jobKey(id), s.kUnpublished}, id).Int()
	if err != nil {
		return s.wrapErr("mark published", id, err)
	}
	if n == 0 {
		return jobs.ErrNotFound
	}
	return nil
}

// Unpublished implements [jobs.Store.Unpublished].
func (s *RedisStore) Unpublished(ctx context.Context, createdBefore time.Time, limit int) ([]*jobs.Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	// Scores are whole microseconds: round the bound up and filter exactly
	// below.
	stop := "(" + strconv.FormatInt(ceilMicros(createdBefore), 10)
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.kUnpublished, Start: "-inf", Stop: stop, ByScore: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, s.wrapErr("list unpublished", "", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.jobKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrapErr("list unpublished", "", err)
	}
	out := make([]*jobs.Job, 0, len(ids))
	for _, c := range cmds {
		m := c.Val()
		if len(m) == 0 {
			continue // deleted meanwhile
		}
		j, err := jobFromMap(m)
		if err != nil {
			return nil, s.wrapErr("list unpublished", "", err)
		}
		if !j.Published && !j.Status.Final() && j.CreatedAt.Before(createdBefore) {
			out = append(out, j)
		}
	}
	return out, nil
}

// Apply implements [jobs.Store.Apply].
func (s *RedisStore) Apply(ctx context.Context, ev jobs.Event) (*jobs.Job, bool, error) {
	if err := ev.Validate(); err != nil {
		return nil, false, err
	}
	now := s.now()
	at := ev.At
	if at.IsZero() {
		at = now
	}
	errJSON := ""
	if ev.Error != nil {
		b, err := json.Marshal(ev.Error)
		if err != nil {
			return nil, false, fmt.Errorf("redisstore: apply event to %s: %w", ev.JobID, err)
		}
		errJSON = string(b)
	}
	dead := "0"
	if ev.Type == jobs.EventFinal && jobs.IsDeadLetter(&jobs.Job{Status: ev.Status, Error: ev.Error}) {
		dead = "1"
	}
	res, err := luaApply.Run(ctx, s.rdb,
		[]string{s.jobKey(ev.JobID), s.kUnpublished, s.kStartBy, s.kChannel, s.kDead},
		ev.JobID, s.cutoff(now), s.ttlMillis(), s.kIdemPrefix, string(ev.Type), string(ev.Status),
		strconv.FormatInt(at.UnixNano(), 10), ev.Attempt, ev.Worker, string(ev.Result), errJSON,
		dead, strconv.FormatInt(at.UnixMicro(), 10), startedNanos(ev),
	).Slice()
	if err != nil {
		return nil, false, s.wrapErr("apply event to", ev.JobID, err)
	}
	if code(res) == 0 {
		return nil, false, jobs.ErrNotFound
	}
	if len(res) != 3 {
		return nil, false, s.wrapErr("apply event to", ev.JobID, fmt.Errorf("unexpected script reply %v", res))
	}
	j, err := jobFromFlat(res[2])
	if err != nil {
		return nil, false, s.wrapErr("apply event to", ev.JobID, err)
	}
	return j, res[1] == int64(1), nil
}

// startedNanos is a final event's StartedAt for luaApply, "" when it has none.
func startedNanos(ev jobs.Event) string {
	if ev.Type != jobs.EventFinal || ev.StartedAt == nil || ev.StartedAt.IsZero() {
		return ""
	}
	return strconv.FormatInt(ev.StartedAt.UnixNano(), 10)
}

// Cancel implements [jobs.Store.Cancel].
func (s *RedisStore) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	now := s.now()
	res, err := luaCancel.Run(ctx, s.rdb,
		[]string{s.jobKey(id), s.kUnpublished, s.kStartBy, s.kChannel},
		id, s.cutoff(now), s.ttlMillis(), s.kIdemPrefix, strconv.FormatInt(now.UnixNano(), 10),
	).Slice()
	if err != nil {
		return nil, s.wrapErr("cancel", id, err)
	}
	c := code(res)
	if c == 0 {
		return nil, jobs.ErrNotFound
	}
	if len(res) != 2 {
		return nil, s.wrapErr("cancel", id, fmt.Errorf("unexpected script reply %v", res))
	}
	j, err := jobFromFlat(res[1])
	if err != nil {
		return nil, s.wrapErr("cancel", id, err)
	}
	if c == 2 {
		return j, jobs.ErrConflict
	}
	return j, nil
}

// Delete implements [jobs.Store.Delete].
func (s *RedisStore) Delete(ctx context.Context, id string) error {
	n, err := luaDelete.Run(ctx, s.rdb,
		[]string{s.jobKey(id), s.kUnpublished, s.kStartBy, s.kChannel, s.kDead}, id, s.kIdemPrefix).Int()
	if err != nil {
		return s.wrapErr("delete", id, err)
	}
	if n == 0 {
		return jobs.ErrNotFound
	}
	return nil
}

// ExpireQueued implements [jobs.Store.ExpireQueued].
func (s *RedisStore) ExpireQueued(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	errJSON, err := json.Marshal(jobs.ExpiredError())
	if err != nil {
		return nil, err
	}
	ids, err := luaExpireQueued.Run(ctx, s.rdb,
		[]string{s.kStartBy, s.kUnpublished, s.kChannel},
		strconv.FormatInt(now.UnixMicro(), 10), limit, s.kJobPrefix, s.kIdemPrefix,
		strconv.FormatInt(now.UnixNano(), 10), s.ttlMillis(), string(errJSON),
	).StringSlice()
	if err != nil {
		return nil, s.wrapErr("expire queued", "", err)
	}
	return ids, nil
}

// pruneDead removes the dead-letter entries past the TTL (their jobs expired).
func (s *RedisStore) pruneDead(ctx context.Context, now time.Time) error {
	cut := strconv.FormatInt(now.Add(-s.ttl).UnixMicro(), 10)
	return s.rdb.ZRemRangeByScore(ctx, s.kDead, "-inf", cut).Err()
}

// DeadLetters implements [jobs.Store.DeadLetters]. It reads the index page
// by page from the cursor's microsecond on and filters exactly on the jobs'
// own times, so ties within a microsecond are neither lost nor repeated.
func (s *RedisStore) DeadLetters(ctx context.Context, after string, limit int) ([]*jobs.Job, error) {
	ns, afterID, err := jobs.ParseDeadCursor(after)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	now := s.now()
	if err := s.pruneDead(ctx, now); err != nil {
		return nil, s.wrapErr("list dead letters", "", err)
	}
	min := strconv.FormatInt(ns/1000, 10)
	var out []*jobs.Job
	for offset := int64(0); len(out) < limit; {
		batch := int64(limit + 16)
		ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: s.kDead, Start: min, Stop: "+inf", ByScore: true, Offset: offset, Count: batch,
		}).Result()
		if err != nil {
			return nil, s.wrapErr("list dead letters", "", err)
		}
		offset += int64(len(ids))
		if len(ids) > 0 {
			pipe := s.rdb.Pipeline()
			cmds := make([]*redis.MapStringStringCmd, len(ids))
			for i, id := range ids {
				cmds[i] = pipe.HGetAll(ctx, s.jobKey(id))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, s.wrapErr("list dead letters", "", err)
			}
			var page []*jobs.Job
			for _, c := range cmds {
				if len(c.Val()) == 0 {
					continue // expired or deleted meanwhile
				}
				j, err := jobFromMap(c.Val())
				if err != nil {
					return nil, s.wrapErr("list dead letters", "", err)
				}
				if jobs.IsDeadLetter(j) && jobs.Visible(j, now, s.ttl) && jobs.AfterCursor(j, ns, afterID) {
					page = append(page, j)
				}
			}
			// Redis orders equal scores by member; the jobs' nanoseconds
			// may order them otherwise within one microsecond.
			slices.SortStableFunc(page, func(a, b *jobs.Job) int {
				if c := a.FinishedAt.Compare(*b.FinishedAt); c != 0 {
					return c
				}
				return strings.Compare(a.ID, b.ID)
			})
			out = append(out, page...)
		}
		if int64(len(ids)) < batch {
			break
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// CountDeadLetters implements [jobs.Store.CountDeadLetters].
func (s *RedisStore) CountDeadLetters(ctx context.Context) (int, error) {
	if err := s.pruneDead(ctx, s.now()); err != nil {
		return 0, s.wrapErr("count dead letters", "", err)
	}
	n, err := s.rdb.ZCard(ctx, s.kDead).Result()
	if err != nil {
		return 0, s.wrapErr("count dead letters", "", err)
	}
	return int(n), nil
}

// Replay implements [jobs.Store.Replay]: it reads the job, prepares the
// replay in Go (jobs.PrepareReplay) and writes it with a script that
// checks that the job is still the dead letter it read; if another replica
// changed it meanwhile, it reads again.
func (s *RedisStore) Replay(ctx context.Context, id string, startBy time.Time) (*jobs.Job, error) {
	for range 5 {
		j, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		old := *j
		if err := jobs.PrepareReplay(j, s.now(), startBy); err != nil {
			return &old, err
		}
		hist, err := json.Marshal(j.History)
		if err != nil {
			return nil, fmt.Errorf("redisstore: replay %s: %w", id, err)
		}
		sb, sbUs := "", ""
		fields := []any{"status", string(j.Status), "published", "0", "attempts", "0", "history", string(hist)}
		if !j.StartBy.IsZero() {
			sb = strconv.FormatInt(j.StartBy.UnixNano(), 10)
			sbUs = strconv.FormatInt(j.StartBy.UnixMicro(), 10)
			fields = append(fields, "start_by", sb)
		}
		args := append([]any{id, strconv.FormatInt(old.FinishedAt.UnixNano(), 10), s.kIdemPrefix,
			strconv.FormatInt(j.CreatedAt.UnixMicro(), 10), sbUs}, fields...)
		res, err := luaReplay.Run(ctx, s.rdb, []string{s.jobKey(id), s.kUnpublished, s.kStartBy, s.kDead}, args...).Slice()
		if err != nil {
			return nil, s.wrapErr("replay", id, err)
		}
		switch code(res) {
		case 0:
			return nil, jobs.ErrNotFound
		case 1:
			if len(res) != 2 {
				break
			}
			out, err := jobFromFlat(res[1])
			if err != nil {
				return nil, s.wrapErr("replay", id, err)
			}
			return out, nil
		case 2:
			continue // changed since read: read again
		}
		return nil, s.wrapErr("replay", id, fmt.Errorf("unexpected script reply %v", res))
	}
	return nil, s.wrapErr("replay", id, errors.New("the job kept changing; try again"))
}

// Wait implements [jobs.Store.Wait].
func (s *RedisStore) Wait(ctx context.Context, id string, timeout time.Duration) (*jobs.Job, error) {
	return s.waiters.Wait(ctx, s.Get, id, timeout)
}

// PutMeta implements [jobs.Store.PutMeta].
func (s *RedisStore) PutMeta(ctx context.Context, key string, value []byte) error {
	if err := jobs.CheckMetaKey(key); err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, s.kMeta, key, value).Err(); err != nil {
		return s.wrapErr("put meta", key, err)
	}
	return nil
}

// ListMeta implements [jobs.Store.ListMeta]. It walks the meta hash with
// HSCAN (MATCH on the escaped prefix), so a large hash never blocks Redis.
func (s *RedisStore) ListMeta(ctx context.Context, prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	match := globEscape(prefix) + "*"
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, s.kMeta, cursor, match, 1000).Result()
		if err != nil {
			return nil, s.wrapErr("list meta", prefix, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.HasPrefix(kv[i], prefix) { // MATCH is a filter; keep it exact
				out[kv[i]] = []byte(kv[i+1])
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// globEscape escapes the glob metacharacters of Redis' MATCH in s.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (s *RedisStore) jobKey(id string) string { return s.kJobPrefix + id }

// cutoff is now - TTL in Unix nanoseconds: a final job that finished at or
// before it is no longer visible.
func (s *RedisStore) cutoff(now time.Time) string {
	return strconv.FormatInt(now.Add(-s.ttl).UnixNano(), 10)
}

func (s *RedisStore) ttlMillis() int64 { return max(s.ttl.Milliseconds(), 1) }

// wrapErr maps a closed client to jobs.ErrClosed and names the operation.
func (s *RedisStore) wrapErr(op, id string, err error) error {
	if errors.Is(err, redis.ErrClosed) {
		err = jobs.ErrClosed
	}
	if id == "" {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return fmt.Errorf("redisstore: %s %s: %w", op, id, err)
}

// ceilMicros is t in Unix microseconds, rounded up.
func ceilMicros(t time.Time) int64 {
	ns := t.UnixNano()
	us := ns / 1000
	if ns%1000 > 0 {
		us++
	}
	return us
}

// code is the leading status code of a script reply, -1 if there is none.
func code(res []any) int64 {
	if len(res) == 0 {
		return -1
	}
	c, ok := res[0].(int64)
	if !ok {
		return -1
	}
	return c
}

// hashFields are the field/value pairs of a new job's hash. Times are Unix
// nanoseconds; absent optional fields are left out.
func hashFields(j *jobs.Job) []any {
	f := []any{
		"id", j.ID,
		"status", string(j.Status),
		"created", strconv.FormatInt(nanos.Of(j.CreatedAt), 10), // 0 for unset, as the reader expects
		"attempts", "0",
		"published", "0",
	}
	add := func(k, v string) {
		if v != "" {
			f = append(f, k, v)
		}
	}
	add("request_id", j.RequestID)
	add("input", string(j.Input))
	add("idem", j.IdempotencyKey)
	add("body_hash", j.BodyHash)
	add("worker", j.Worker)
	add("model", j.Model)
	add("model_version", j.Version)
	add("format", j.Format)
	add("owner", j.Owner)
	if !j.StartBy.IsZero() {
		add("start_by", strconv.FormatInt(j.StartBy.UnixNano(), 10))
	}
	return f
}

// jobFromFlat decodes a hash returned by a script as a flat field/value
// array.
func jobFromFlat(v any) (*jobs.Job, error) {
	flat, ok := v.([]any)
	if !ok || len(flat)%2 != 0 {
		return nil, fmt.Errorf("unexpected hash reply %T", v)
	}
	m := make(map[string]string, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		k, ok1 := flat[i].(string)
		val, ok2 := flat[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unexpected hash reply entry %T=%T", flat[i], flat[i+1])
		}
		m[k] = val
	}
	return jobFromMap(m)
}

// jobFromMap decodes a job hash.
func jobFromMap(m map[string]string) (*jobs.Job, error) {
	j := &jobs.Job{
		ID:             m["id"],
		Status:         jobs.Status(m["status"]),
		RequestID:      m["request_id"],
		IdempotencyKey: m["idem"],
		BodyHash:       m["body_hash"],
		Published:      m["published"] == "1",
		Worker:         m["worker"],
		Model:          m["model"],
		Version:        m["model_version"],
		Format:         m["format"],
		Owner:          m["owner"],
	}
	if !j.Status.Valid() || j.ID == "" {
		return nil, fmt.Errorf("corrupt job hash (id %q, status %q)", j.ID, j.Status)
	}
	var err error
	num := func(k string) int64 {
		v, ok := m[k]
		if !ok || err != nil {
			return 0
		}
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			err = fmt.Errorf("job %s: field %s: %w", j.ID, k, perr)
		}
		return n
	}
	j.CreatedAt = nanos.Time(num("created"))
	j.StartedAt = nanos.TimePtr(num("started"))
	j.FinishedAt = nanos.TimePtr(num("finished"))
	j.StartBy = nanos.Time(num("start_by"))
	if a := num("attempts"); a >= 0 && a <= math.MaxInt32 {
		j.Attempts = int(a)
	}
	if err != nil {
		return nil, err
	}
	if v, ok := m["input"]; ok {
		j.Input = []byte(v)
	}
	if v, ok := m["result"]; ok {
		j.Result = json.RawMessage(v)
	}
	if v, ok := m["history"]; ok {
		if err := json.Unmarshal([]byte(v), &j.History); err != nil {
			return nil, fmt.Errorf("job %s: field history: %w", j.ID, err)
		}
	}
	if v, ok := m["error"]; ok {
		j.Error = &jobs.Error{}
		if err := json.Unmarshal([]byte(v), j.Error); err != nil {
			return nil, fmt.Errorf("job %s: field error: %w", j.ID, err)
		}
	}
	return j, nil
}

// Waiters is how many Waits of this store are waiting on id now (tests,
// diagnostics).
func (s *RedisStore) Waiters(id string) int { return s.waiters.Waiters(id) }
