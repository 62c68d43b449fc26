package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warren-farm/warren/pkg/queue"
)

// The async phase submits N jobs with POST /jobs as fast as SUBMITTERS
// concurrent callers are answered, then long-polls every job with
// GET /jobs/{id}?wait= until it is final. A 202 means the job is stored and its
// persistent message confirmed by the broker, so the submit rate is the rate
// of durable acceptance. Workers start on the jobs as soon as they are queued,
// so submission and execution overlap.
//
// Completion is observed with POLLERS goroutines that take the submitted ids
// in submit order and hold one long-poll each (GET /jobs/{id}?wait=30s) until
// the job is final: about one GET per job, each answered when the job
// finishes, so the observation costs the API little more than the N reads. It
// starts after the last submit, so it does not compete with submission.

// jobQueue is the seed model's job queue ("warren.job.seed.v1"): the jobs the
// phase submits with POST /jobs go to DEFAULT_MODEL, the repository's seed,
// served as version 1.
var jobQueue = queue.Route{Model: seedModel, Version: "1"}.JobQueue()

// asyncPollWait is the wait of each long-poll (below the API's MAX_WAIT default).
const asyncPollWait = 30 * time.Second

// AsyncRun is the outcome of the async phase against one job store.
type AsyncRun struct {
	Store       string // StoreBolt or StoreRedis
	Variant     string // VariantFarm, or VariantFarmBaseline (-baseline-rev)
	Round       int    // 1… (-async-runs)
	StoreDetail string // where the store was

	Jobs, Workers, JobConcurrency, Submitters, Pollers int
	Latency                                            time.Duration

	Submitted      int            // answered 202 with an id
	SubmitFailures map[string]int // by label
	SubmitTime     time.Duration  // first submit sent → last submit answered
	SubmitLat      []time.Duration

	// BacklogAtSubmitEnd is the ready messages in the job queue when the
	// last submit was answered (-1: not known).
	BacklogAtSubmitEnd int
	// FinalAtSubmitEnd is the jobs whose finished_at is before the end of
	// submission.
	FinalAtSubmitEnd int

	// AllFinal is the time from the first submit to the last job seen final.
	AllFinal time.Duration
	// Statuses counts the jobs by the status they ended in; "not final"
	// when the phase gave up waiting, "not found" for a 404.
	Statuses map[string]int
	Attempts map[int]int // attempts → jobs

	// Per job, from the job's own timestamps: E2E = finished_at − created_at,
	// Wait = started_at − created_at, Run = finished_at − started_at.
	E2E, Wait, Run []time.Duration
	// ServerSpan is max(finished_at) − min(created_at).
	ServerSpan time.Duration
	// BusyTime is the sum of Run: slot time spent on jobs.
	BusyTime time.Duration

	Polls        int64
	PollFailures map[string]int

	CPUSubmit, CPUDrain *CPUUsage
	// Leftover is the messages left in the job path's queues at the end.
	Leftover map[string]int
	// RedisKeys is the keys found under the run's REDIS_PREFIX and deleted
	// afterwards (-1 for bolt).
	RedisKeys int
}

// Succeeded is the number of jobs that ended succeeded.
func (a *AsyncRun) Succeeded() int { return a.Statuses["succeeded"] }

// NotSucceeded is the submitted jobs that did not end succeeded.
func (a *AsyncRun) NotSucceeded() int { return a.Submitted - a.Succeeded() }

// SubmitFailed is the submits not answered 202.
func (a *AsyncRun) SubmitFailed() int {
	n := 0
	for _, v := range a.SubmitFailures {
		n += v
	}
	return n
}

// SubmitRate is accepted jobs per second of submission.
func (a *AsyncRun) SubmitRate() float64 {
	if a.SubmitTime <= 0 {
		return 0
	}
	return float64(a.Submitted) / a.SubmitTime.Seconds()
}

// CompletionRate is succeeded jobs per second from the first submit to the
// last job seen final.
func (a *AsyncRun) CompletionRate() float64 {
	if a.AllFinal <= 0 {
		return 0
	}
	return float64(a.Succeeded()) / a.AllFinal.Seconds()
}

// DrainRate is the rate of the jobs that finished after submission ended,
// over the time after submission ended.
func (a *AsyncRun) DrainRate() float64 {
	d := a.AllFinal - a.SubmitTime
	if d <= 0 {
		return 0
	}
	return float64(a.Succeeded()-a.FinalAtSubmitEnd) / d.Seconds()
}

// Ideal is workers × JOB_CONCURRENCY / MODEL_LATENCY in jobs per second.
func (a *AsyncRun) Ideal() float64 {
	return float64(a.Workers*a.JobConcurrency) / a.Latency.Seconds()
}

// Target is 0.9 × Ideal.
func (a *AsyncRun) Target() float64 { return 0.9 * a.Ideal() }

// Utilization is the share of the job slots' time (workers × JOB_CONCURRENCY
// over AllFinal) spent running jobs.
func (a *AsyncRun) Utilization() float64 {
	slots := float64(a.Workers*a.JobConcurrency) * a.AllFinal.Seconds()
	if slots <= 0 {
		return 0
	}
	return a.BusyTime.Seconds() / slots
}

// jobBody is the part of a job the bench reads.
type jobBody struct {
	ID         string     `json:"id"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Attempts   int        `json:"attempts"`
	Error      *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
}

func finalStatus(s string) bool {
	switch s {
	case "succeeded", "failed", "expired", "cancelled":
		return true
	}
	return false
}

// Label names the run in the report: its store, and with a baseline or several
// runs its variant and round.
func (a *AsyncRun) Label() string {
	l := a.Store
	if a.Variant != "" && a.Variant != VariantFarm {
		l += " " + a.Variant
	}
	if a.Round > 1 || a.Variant == VariantFarmBaseline {
		l += " r" + strconv.Itoa(a.Round)
	}
	return l
}

// async runs the async phase once against one store with the binaries of variant
// (VariantFarm, or VariantFarmBaseline with -baseline-rev); round numbers the
// runs (-async-runs).
func (b *bench) async(ctx context.Context, store, variant string, round int) error {
	cfg := b.cfg
	name := fmt.Sprintf("async-%s-%s-%d", store, variant, round)
	vurl, err := b.newVhost(ctx, b.vhost+"-"+name)
	if err != nil {
		return err
	}
	apiBin, workerBin, models := b.apiBin, b.workerBin, b.modelsDir
	if variant == VariantFarmBaseline {
		apiBin, workerBin, models = b.baseAPI, b.baseWorker, b.baseModels
	}
	fc := FarmConfig{
		APIBin: apiBin, WorkerBin: workerBin, AMQPURL: vurl, ManagementURL: cfg.ManagementURL,
		LogDir: b.logDir, Name: name, ReadyTimeout: 120 * time.Second,
		ModelRepository: models, Models: seedModel,
		WorkerEnv: []string{
			"MODEL_LATENCY=" + cfg.AsyncLatency.String(),
			"JOB_CONCURRENCY=" + strconv.Itoa(cfg.AsyncJobConcurrency),
		},
	}
	run := &AsyncRun{
		Store: store, Variant: variant, Round: round, Jobs: cfg.AsyncJobs, Workers: cfg.AsyncWorkers, JobConcurrency: cfg.AsyncJobConcurrency,
		Submitters: cfg.AsyncSubmitters, Pollers: cfg.AsyncPollers, Latency: cfg.AsyncLatency,
		SubmitFailures: map[string]int{}, PollFailures: map[string]int{}, Statuses: map[string]int{},
		Attempts: map[int]int{}, Leftover: map[string]int{}, BacklogAtSubmitEnd: -1, RedisKeys: -1,
	}
	groups := map[string]func() []int{}
	var rdb *redis.Client
	var prefix string
	if store == StoreRedis {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("-redis-url: %w", err)
		}
		rdb = redis.NewClient(opt)
		defer func() { _ = rdb.Close() }()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("redis at %s does not answer: %w", redact(cfg.RedisURL), err)
		}
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		prefix = fmt.Sprintf("warren-bench-%d-%s:", os.Getpid(), hex.EncodeToString(rnd[:]))
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := deleteRedisPrefix(dctx, rdb, prefix)
			if err != nil {
				_, _ = fmt.Fprintf(b.log, "bench: deleting redis keys %s*: %v\n", prefix, err)
			}
			run.RedisKeys = n
		}()
		fc.APIEnv = []string{"REDIS_URL=" + cfg.RedisURL, "REDIS_PREFIX=" + prefix}
		run.StoreDetail = fmt.Sprintf("Redis %s, REDIS_PREFIX=%s", redact(cfg.RedisURL), prefix)
		if port := redisPort(cfg.RedisURL); port > 0 {
			if pids := listenerPids(port); len(pids) > 0 {
				groups["redis"] = func() []int { return pids }
			}
		}
	}
	b.rep.Async = append(b.rep.Async, run)

	_, _ = fmt.Fprintf(b.log, "bench: async (%s, %s, round %d): starting the api and %d workers (JOB_CONCURRENCY=%d MODEL_LATENCY=%v)\n",
		store, variant, round, cfg.AsyncWorkers, cfg.AsyncJobConcurrency, cfg.AsyncLatency)
	farm, err := StartFarm(ctx, fc, cfg.AsyncWorkers)
	if err != nil {
		return fmt.Errorf("start farm: %w", err)
	}
	defer farm.Stop()
	if store == StoreBolt {
		run.StoreDetail = fmt.Sprintf("embedded bbolt, DATA_DIR %s (%s)", farm.DataDir, fsType(farm.DataDir))
	}
	groups["api"] = func() []int { p, _ := farm.Pids(); return []int{p} }
	groups["workers"] = func() []int { _, w := farm.Pids(); return w }

	// Submission.
	tr := NewHTTPTransport(cfg.AsyncSubmitters)
	defer tr.CloseIdleConnections()
	sampler := b.sampler(groups)
	t0 := time.Now()
	sampler.Start()
	sub := SubmitJobs(ctx, tr, farm.BaseURL, cfg.AsyncJobs, cfg.AsyncSubmitters)
	run.SubmitTime = time.Since(t0)
	submitEnd := t0.Add(run.SubmitTime)
	run.CPUSubmit = sampler.Stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	if n, err := queueReady(vurl, jobQueue); err == nil {
		run.BacklogAtSubmitEnd = n
	}
	run.SubmitFailures = sub.Failures
	var ids []string
	for i, id := range sub.IDs {
		if id != "" {
			ids = append(ids, id)
			run.SubmitLat = append(run.SubmitLat, sub.Latencies[i])
		}
	}
	slices.Sort(run.SubmitLat)
	run.Submitted = len(ids)
	b.step++
	_, _ = fmt.Fprintf(b.log, "[%2d/%d] async %-5s submit: %s jobs in %.2fs = %s jobs/s  p50 %s  p99 %s  failures %s  backlog %d  cpu %.2f cores\n",
		b.step, b.steps, run.Label(), thousands(int64(run.Submitted)), run.SubmitTime.Seconds(), fmtRate(run.SubmitRate()),
		fmtDur(Percentile(run.SubmitLat, 50)), fmtDur(Percentile(run.SubmitLat, 99)), fmtFailures(run.SubmitFailures),
		run.BacklogAtSubmitEnd, cpuMachine(run.CPUSubmit))
	if err := farm.Check(); err != nil {
		return err
	}

	// Completion: long-poll every job in submit order.
	expect := time.Duration(float64(run.Submitted)/run.Ideal()*float64(time.Second)) * 3
	pctx, cancel := context.WithTimeout(ctx, max(5*time.Minute, expect+2*time.Minute))
	defer cancel()
	ptr := NewHTTPTransport(cfg.AsyncPollers)
	defer ptr.CloseIdleConnections()
	sampler = b.sampler(groups)
	sampler.Start()
	var final atomic.Int64
	done := make(chan struct{})
	go func() { // progress every 10 s
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_, _ = fmt.Fprintf(b.log, "bench: async %s: %s of %s jobs final after %.0fs\n", store,
					thousands(final.Load()), thousands(int64(len(ids))), time.Since(t0).Seconds())
			}
		}
	}()
	poll := PollJobs(pctx, ptr, farm.BaseURL, ids, cfg.AsyncPollers, asyncPollWait, func() { final.Add(1) })
	close(done)
	run.CPUDrain = sampler.Stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	run.Polls, run.PollFailures = poll.Polls, poll.Failures
	if !poll.LastFinal.IsZero() {
		run.AllFinal = poll.LastFinal.Sub(t0)
	}
	got := poll.Jobs
	var first, last time.Time
	for _, j := range got {
		if j == nil {
			run.Statuses["not final"]++
			continue
		}
		run.Statuses[j.Status]++
		if j.Status == "not found" {
			continue
		}
		run.Attempts[j.Attempts]++
		if first.IsZero() || j.CreatedAt.Before(first) {
			first = j.CreatedAt
		}
		if j.FinishedAt == nil {
			continue
		}
		f := *j.FinishedAt
		if f.After(last) {
			last = f
		}
		if !f.After(submitEnd) {
			run.FinalAtSubmitEnd++
		}
		run.E2E = append(run.E2E, f.Sub(j.CreatedAt))
		if j.StartedAt != nil {
			run.Wait = append(run.Wait, j.StartedAt.Sub(j.CreatedAt))
			run.Run = append(run.Run, f.Sub(*j.StartedAt))
			run.BusyTime += f.Sub(*j.StartedAt)
		}
	}
	if !first.IsZero() && !last.IsZero() {
		run.ServerSpan = last.Sub(first)
	}
	for _, s := range [][]time.Duration{run.E2E, run.Wait, run.Run} {
		slices.Sort(s)
	}
	for _, q := range []string{jobQueue, queue.JobResults, queue.JobDead} {
		if n, err := queueReady(vurl, q); err == nil {
			run.Leftover[q] = n
		} else {
			run.Leftover[q] = -1
		}
	}
	b.step++
	_, _ = fmt.Fprintf(b.log, "[%2d/%d] async %-5s done:   %s succeeded of %s, all final after %.1fs = %s jobs/s (target %s)  e2e p50 %s  p99 %s  cpu %.2f cores\n",
		b.step, b.steps, run.Label(), thousands(int64(run.Succeeded())), thousands(int64(run.Submitted)), run.AllFinal.Seconds(),
		fmtRate(run.CompletionRate()), fmtRate(run.Target()), fmtLong(Percentile(run.E2E, 50)), fmtLong(Percentile(run.E2E, 99)),
		cpuMachine(run.CPUDrain))
	return farm.Check()
}

// Submitted is the outcome of SubmitJobs.
type Submitted struct {
	// IDs holds the id of job i, or "" when its submit failed.
	IDs []string
	// Latencies holds the latency of submit i (0 when it failed).
	Latencies []time.Duration
	// Failures counts the failed submits by label ("503", "timeout", ...).
	Failures map[string]int
}

// SubmitJobs POSTs n jobs to baseURL/jobs from conc concurrent callers, each
// sending its next job as soon as the previous one is answered, and returns
// what was accepted (202 with an id). Every job carries distinct data. Failed
// submits are not retried.
func SubmitJobs(ctx context.Context, rt http.RoundTripper, baseURL string, n, conc int) *Submitted {
	out := &Submitted{IDs: make([]string, n), Latencies: make([]time.Duration, n), Failures: map[string]int{}}
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
		tag  = strconv.FormatInt(time.Now().UnixNano(), 36)
		u    = baseURL + "/jobs"
	)
	for range conc {
		wg.Go(func() {
			var resp bytes.Buffer
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				body := `{"data":"bench-async-` + tag + `-` + strconv.Itoa(i) + `"}`
				start := time.Now()
				id, label := submitJob(ctx, rt, u, body, &resp)
				if label != "" {
					mu.Lock()
					out.Failures[label]++
					mu.Unlock()
					continue
				}
				out.IDs[i], out.Latencies[i] = id, time.Since(start)
			}
		})
	}
	wg.Wait()
	return out
}

// Polled is the outcome of PollJobs.
type Polled struct {
	// Jobs holds job i as last read when final, with Status "not found"
	// for a 404, or nil when it was not seen final before ctx ended.
	Jobs []*jobBody
	// LastFinal is when the last job was seen final.
	LastFinal time.Time
	Polls     int64          // GET requests sent
	Failures  map[string]int // failed GETs by label (retried)
}

// PollJobs waits for every job of ids to be final: pollers goroutines take
// the ids in order and hold one GET baseURL/jobs/{id}?wait=<wait> at a time
// each, repeating it until the job is final. onFinal, if set, is called
// once per job seen final. It returns when all are final or ctx ends.
func PollJobs(ctx context.Context, rt http.RoundTripper, baseURL string, ids []string, pollers int, wait time.Duration, onFinal func()) *Polled {
	out := &Polled{Jobs: make([]*jobBody, len(ids)), Failures: map[string]int{}}
	var (
		next  atomic.Int64
		polls atomic.Int64
		mu    sync.Mutex
		wg    sync.WaitGroup
	)
	for range pollers {
		wg.Go(func() {
			var resp bytes.Buffer
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(ids) {
					return
				}
				u := baseURL + "/jobs/" + url.PathEscape(ids[k]) + "?wait=" + wait.String()
				for ctx.Err() == nil {
					polls.Add(1)
					j, label := pollJob(ctx, rt, u, &resp)
					if label == "404" {
						out.Jobs[k] = &jobBody{ID: ids[k], Status: "not found"}
						break
					}
					if label != "" {
						if ctx.Err() != nil {
							break
						}
						mu.Lock()
						out.Failures[label]++
						mu.Unlock()
						time.Sleep(100 * time.Millisecond)
						continue
					}
					if finalStatus(j.Status) {
						now := time.Now()
						out.Jobs[k] = j
						mu.Lock()
						if now.After(out.LastFinal) {
							out.LastFinal = now
						}
						mu.Unlock()
						if onFinal != nil {
							onFinal()
						}
						break
					}
				}
			}
		})
	}
	wg.Wait()
	out.Polls = polls.Load()
	return out
}

func cpuMachine(u *CPUUsage) float64 {
	if u == nil {
		return 0
	}
	return u.Machine
}

// submitJob POSTs one job and returns its id, or a failure label.
func submitJob(ctx context.Context, rt http.RoundTripper, u, body string, resp *bytes.Buffer) (id, label string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(body)))
	if err != nil {
		return "", "bad-request"
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := rt.RoundTrip(req)
	if err != nil {
		if ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		return "", errorLabel(ctx, err)
	}
	resp.Reset()
	_, err = resp.ReadFrom(res.Body)
	_ = res.Body.Close()
	switch {
	case err != nil:
		return "", errorLabel(ctx, err)
	case res.StatusCode != http.StatusAccepted:
		return "", strconv.Itoa(res.StatusCode)
	}
	var j jobBody
	if err := json.Unmarshal(resp.Bytes(), &j); err != nil || j.ID == "" {
		return "", "202-without-id"
	}
	return j.ID, ""
}

// pollJob GETs one job (a long-poll with ?wait=) and returns it, or a
// failure label ("404" for an unknown job).
func pollJob(ctx context.Context, rt http.RoundTripper, u string, resp *bytes.Buffer) (*jobBody, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "bad-request"
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		return nil, errorLabel(ctx, err)
	}
	resp.Reset()
	_, err = resp.ReadFrom(res.Body)
	_ = res.Body.Close()
	switch {
	case err != nil:
		return nil, errorLabel(ctx, err)
	case res.StatusCode != http.StatusOK:
		return nil, strconv.Itoa(res.StatusCode)
	}
	j := &jobBody{}
	if err := json.Unmarshal(resp.Bytes(), j); err != nil {
		return nil, "undecodable"
	}
	return j, ""
}

// deleteRedisPrefix deletes every key under prefix and returns how many
// there were.
func deleteRedisPrefix(ctx context.Context, rdb *redis.Client, prefix string) (int, error) {
	n := 0
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, redisGlobEscape(prefix)+"*", 1000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return n, err
			}
			n += len(keys)
		}
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

// redisGlobEscape escapes the glob characters of a SCAN MATCH pattern.
func redisGlobEscape(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func redisPort(raw string) int {
	u, err := url.Parse(raw)
	if err != nil {
		return 0
	}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	return 6379
}

// fsType names the file system holding path (for the report: fsync costs
// differ between a disk and tmpfs).
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "file system unknown"
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x01021994:
		return "tmpfs, no real fsync"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794C7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system 0x%x", uint64(st.Type))
}

// queueReady returns the number of ready messages in queue (a passive
// declare: exact, unlike the management API's sampled counts).
func queueReady(amqpURL, queue string) (int, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}
