package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/queue"
)

// Fault tests of the async job path through the real binaries: every fault is
// injected for real (SIGKILL, a broker node stopped, poison published to the
// queue, a broker configured with a short consumer_timeout, a job queue declared
// with other arguments, ...).

// A worker SIGKILLed mid-job: the broker requeues the unacked job (a quorum queue
// counts the delivery), the other worker runs it as attempt 2, and exactly one final
// result is recorded.
func TestJobWorkerKilledMidJob(t *testing.T) {
	f := newFarm(t, 2, nil, []string{"MODEL_LATENCY=2s", "JOB_CONCURRENCY=1"})
	j := submitJob(t, f.spec, f.api, "killed mid-job")

	// Find the worker running it.
	victim := -1
	deadline := time.Now().Add(10 * time.Second)
	for victim < 0 {
		for i, w := range f.workers {
			if jobsInFlight(t, w, seedRoute) == 1 {
				victim = i
			}
		}
		if victim < 0 && time.Now().After(deadline) {
			t.Fatal("no worker started the job")
		}
		time.Sleep(20 * time.Millisecond)
	}
	survivor := f.workers[1-victim]
	awaitJob(t, f.spec, f.api, j.ID, 5*time.Second, "running", func(j jobBody) bool { return j.Status == "running" })

	f.workers[victim].signal(syscall.SIGKILL)
	f.workers[victim].wait(10 * time.Second)

	done := awaitFinal(t, f.spec, f.api, j.ID, 15*time.Second)
	want := fmt.Sprintf("w%d", 1-victim)
	if done.Status != "succeeded" || done.Attempts != 2 || resultWorker(done) != want {
		t.Fatalf("after the kill: status %s, attempts %d, answered by %q (want succeeded, 2 attempts, by %s): %+v",
			done.Status, done.Attempts, resultWorker(done), want, done)
	}
	// One final result: the survivor reported one success, the API applied one final
	// state, and once every event the workers sent was applied (the results queue
	// is empty) the job is as it was.
	if s, _ := jobStats(survivor); s.Succeeded != 1 || s.Received != 1 {
		t.Errorf("survivor's job stats %+v, want 1 received and 1 succeeded", s)
	}
	jl := map[string]string{"vhost": f.vh.Name}
	if v := metric(t, f.api, "warren_jobs_finished_total", with(jl, "status", "succeeded")); v != 1 {
		t.Errorf("warren_jobs_finished_total{succeeded} = %v, want 1", v)
	}
	f.vh.WaitQueue(t, queue.JobResults, func(q testbroker.QueueInfo) bool { return q.Ready == 0 && q.Unacked == 0 }, 10*time.Second)
	if again := getJob(t, f.spec, f.api, j.ID, ""); !again.FinishedAt.Equal(*done.FinishedAt) || string(again.Result) != string(done.Result) {
		t.Errorf("the final job changed: %+v, then %+v", done, again)
	}
}

// The API SIGKILLed while jobs are queued, running and being submitted, then
// restarted on the same store: every job that got a 202 reaches a final state and
// is readable; a client that lost its answer resubmits with its Idempotency-Key and
// gets the job the dead API stored, if it stored one. (Whether a kill lands between
// storing a job and its publish reaching the broker is luck here: the outbox that
// covers that case is tested by TestJobAPIKilledBeforePublishConfirm.)
func TestJobAPIKilledAndRestarted(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		jobAPIKilled(t, []string{"DATA_DIR=" + t.TempDir()})
	})
	t.Run("redis", func(t *testing.T) {
		integration(t)
		jobAPIKilled(t, redisStore(t))
	})
}

func jobAPIKilled(t *testing.T, store []string) {
	// 4 job slots of 300 ms: the first 40 jobs take 3 s, so the kill below meets
	// them in every state.
	workerEnv := []string{"MODEL_LATENCY=300ms", "JOB_CONCURRENCY=2"}
	f := newFarm(t, 2, store, workerEnv)
	apiEnv := append([]string{"AMQP_URL=" + f.vh.AMQPURL, "MANAGEMENT_URL=" + f.vh.ManagementURL}, store...)

	type sub struct {
		key, data string
		id        string // "" while unknown: the POST got no answer
	}
	var mu sync.Mutex
	var subs []*sub
	post := func(key, data string) (*sub, error) {
		r, err := tryDo(t, f.spec, "POST", f.api.url("/jobs"), fmt.Sprintf(`{"data":%q}`, data), "Idempotency-Key", key)
		s := &sub{key: key, data: data}
		mu.Lock()
		subs = append(subs, s)
		mu.Unlock()
		if err != nil {
			return s, err
		}
		if r.Status != http.StatusAccepted {
			t.Errorf("POST /jobs key %s: %d %s", key, r.Status, r.Body)
			return s, nil
		}
		s.id = decodeJob(t, r).ID
		return s, nil
	}

	// 40 jobs: 4 run at a time, 300 ms each.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 40; i += 8 {
				if _, err := post(fmt.Sprintf("key-%03d", i), fmt.Sprintf("job %d", i)); err != nil {
					t.Errorf("POST /jobs before the kill: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first := append([]*sub(nil), subs...)
	counts := func() map[string]int {
		c := map[string]int{}
		for _, s := range first {
			c[getJob(t, f.spec, f.api, s.id, "").Status]++
		}
		return c
	}

	// Keep submitting while the API dies: some POSTs are cut off somewhere between
	// storing the job, publishing it and answering.
	stop := make(chan struct{})
	var next sync.Mutex
	n := 40
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				next.Lock()
				i := n
				n++
				next.Unlock()
				if _, err := post(fmt.Sprintf("key-%03d", i), fmt.Sprintf("job %d", i)); err != nil {
					return // the API is gone
				}
			}
		}()
	}
	// Kill as soon as the first 40 are in every state: some finished, some
	// running, some still queued.
	var before map[string]int
	for deadline := time.Now().Add(10 * time.Second); ; {
		before = counts()
		if before["queued"] > 0 && before["running"] > 0 && before["succeeded"] > 0 {
			break
		}
		if before["queued"] == 0 && before["running"] == 0 || time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("the kill should meet queued, running and finished jobs: %v", before)
		}
	}
	f.api.signal(syscall.SIGKILL)
	f.api.wait(10 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("at the kill: %v of the first 40; %d POSTs in all", before, len(subs))

	// Workers keep reporting while the API is down; the results queue keeps them.
	f.vh.WaitQueue(t, queue.JobResults, func(q testbroker.QueueInfo) bool { return q.Ready > 0 }, 10*time.Second)
	f.api = startProc(t, "api", apiEnv...)

	// Clients without an answer resubmit with their key: a 200 replay of the job the
	// dead API stored, a 409 while that job is not yet republished, or a new 202.
	var replayed, fresh, outboxed int
	for _, s := range subs {
		if s.id != "" {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for s.id == "" {
			r := f.do("POST", "/jobs", fmt.Sprintf(`{"data":%q}`, s.data), "Idempotency-Key", s.key)
			switch r.Status {
			case http.StatusOK, http.StatusAccepted:
				s.id = decodeJob(t, r).ID
				if r.Status == http.StatusOK {
					replayed++
				} else {
					fresh++
				}
			case http.StatusConflict, http.StatusServiceUnavailable:
				if r.Status == http.StatusConflict && r.json(t)["reason"] == "in_progress" {
					outboxed++ // stored, not yet republished
				}
				if time.Now().After(deadline) {
					t.Fatalf("resubmitting key %s after the restart: still %d %s", s.key, r.Status, r.Body)
				}
				time.Sleep(200 * time.Millisecond)
			default:
				t.Fatalf("resubmitting key %s: %d %s", s.key, r.Status, r.Body)
			}
		}
	}
	t.Logf("cut-off POSTs: %d replayed jobs the dead API had stored (%d republished by the outbox, %d answers 409 in_progress meanwhile), %d new",
		replayed, strings.Count(f.api.out.String(), "republished a stored job"), outboxed, fresh)

	for _, s := range subs {
		j := awaitFinal(t, f.spec, f.api, s.id, 30*time.Second)
		if j.Status != "succeeded" {
			t.Errorf("job %s (key %s): %s %+v", s.id, s.key, j.Status, j.Error)
		}
	}
}

// The broker restarted (a private node: stopped and started on its data) while jobs
// are queued and one is running: none is lost; the quorum job and results queues
// and the reconnect loops of API and worker bring every job to its end.
func TestJobBrokerRestart(t *testing.T) {
	integration(t)
	node := testbroker.StartNode(t)
	spec := newFarmSpec(t)
	w := startProc(t, "worker", "AMQP_URL="+node.AMQPURL, "WORKER_ID=restart-w", "MODEL_LATENCY=300ms", "JOB_CONCURRENCY=1")
	api := startProc(t, "api", "AMQP_URL="+node.AMQPURL, noManagement(t))
	awaitJobConsumer(t, node.AMQPURL, seedRoute, 10*time.Second)
	awaitModelWorkers(t, spec, api, seedRoute, 1)

	var ids []string
	for i := range 15 {
		ids = append(ids, submitJob(t, spec, api, fmt.Sprintf("restart %d", i)).ID)
	}
	awaitFinal(t, spec, api, ids[0], 10*time.Second)
	awaitJobsInFlight(t, w, seedRoute, 1, 5*time.Second)

	node.Stop(t)
	// While the broker is down a submission is refused, not accepted and lost.
	r := doChecked(t, spec, "POST", api.url("/jobs"), `{"data":"while down"}`)
	if r.Status != http.StatusServiceUnavailable || r.json(t)["reason"] != "broker_unavailable" {
		t.Errorf("POST /jobs while the broker is down: %d %s", r.Status, r.Body)
	}
	// The store still answers.
	if j := getJob(t, spec, api, ids[len(ids)-1], ""); j.Status != "queued" {
		t.Errorf("last job while the broker is down: %+v", j)
	}
	node.Start(t)

	for _, id := range ids {
		if j := awaitFinal(t, spec, api, id, 30*time.Second); j.Status != "succeeded" {
			t.Errorf("job %s after the broker restart: %+v", id, j)
		}
	}
	s, _ := jobStats(w)
	t.Logf("worker job stats after the restart: %+v, %d job sessions", s, jobSessions(w))
	if jobSessions(w) < 2 {
		t.Errorf("the worker's job consumer never reconnected")
	}
}

// The API SIGKILLed between storing a job and the broker's confirm of its publish
// (the outbox case). A memory alarm on a private node holds the publish: the job is
// stored, the client has no answer; the broker is restarted so the held publish is
// gone for good. After the restart the API republishes every
// stored job whose publish was never confirmed; the client's resubmission with its
// Idempotency-Key finds that job, and it runs.
func TestJobAPIKilledBeforePublishConfirm(t *testing.T) {
	integration(t)
	node := testbroker.StartNode(t)
	spec := newFarmSpec(t)
	apiEnv := []string{"AMQP_URL=" + node.AMQPURL, noManagement(t), "DATA_DIR=" + t.TempDir()}
	startProc(t, "worker", "AMQP_URL="+node.AMQPURL, "WORKER_ID=outbox-w")
	api := startProc(t, "api", apiEnv...)
	awaitJobConsumer(t, node.AMQPURL, seedRoute, 10*time.Second)
	awaitModelWorkers(t, spec, api, seedRoute, 1)

	node.Ctl(t, "set_vm_memory_high_watermark", "0.000001")
	const body, key = `{"data":"stored, never confirmed"}`, "outbox-1"
	answered := make(chan error, 1)
	go func() {
		r, err := tryDo(t, nil, "POST", api.url("/jobs"), body, "Idempotency-Key", key)
		if err == nil {
			err = fmt.Errorf("answered %d %s", r.Status, r.Body)
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("POST /jobs during the memory alarm: %v; want it held until the kill", err)
	case <-time.After(1500 * time.Millisecond):
	}
	api.signal(syscall.SIGKILL)
	api.wait(10 * time.Second)
	if err := <-answered; err == nil {
		t.Fatal("the held POST got an answer")
	}
	// The held publish must never arrive: were the alarm cleared, the broker would
	// still read it from the dead connection's socket buffer. A restart drops it
	// (and the alarm, which was set at run time only).
	node.Stop(t)
	node.Start(t)

	api = startProc(t, "api", apiEnv...)
	var id string
	for deadline := time.Now().Add(15 * time.Second); id == ""; {
		r := doChecked(t, spec, "POST", api.url("/jobs"), body, "Idempotency-Key", key)
		switch r.Status {
		case http.StatusOK:
			id = decodeJob(t, r).ID // the job the dead API stored
		case http.StatusConflict, http.StatusServiceUnavailable:
			if time.Now().After(deadline) {
				t.Fatalf("resubmission still %d %s", r.Status, r.Body)
			}
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("resubmission: %d %s (want a replay of the stored job)", r.Status, r.Body)
		}
	}
	if j := awaitFinal(t, spec, api, id, 15*time.Second); j.Status != "succeeded" {
		t.Fatalf("the stored job: %+v", j)
	}
	if !strings.Contains(api.out.String(), "republished a stored job whose publish was never confirmed") {
		t.Errorf("the restarted API did not log the republish")
	}
}

// Poison on a job queue: a message without a job id, published straight to
// warren.job.seed.v1 ahead of three real jobs, is rejected once by the worker (no
// requeue loop), dead-lettered to warren.jobs.dead (which the API consumes and
// counts), and does not hold up the jobs behind it, although the worker runs one
// job at a time.
func TestJobPoisonMessageIsDeadLettered(t *testing.T) {
	// A worker that runs no jobs: the API knows the seed model, and declares its
	// job queue (it declares the job queue of every model it knows).
	f := newFarm(t, 1, nil, []string{"JOB_CONCURRENCY=0"})
	f.vh.WaitQueue(t, seedRoute.JobQueue(), func(testbroker.QueueInfo) bool { return true }, 10*time.Second)
	publishRaw(t, f.vh.AMQPURL, seedRoute.JobQueue(), amqp.Publishing{
		ContentType: "application/json", Body: []byte(`{"data":"no job id header"}`),
		Headers: amqp.Table{queue.HeaderSchema: int32(queue.SchemaVersion)},
	})
	var ids []string
	for i := range 3 {
		ids = append(ids, submitJob(t, f.spec, f.api, fmt.Sprintf("behind the poison %d", i)).ID)
	}
	w := f.addWorker("JOB_CONCURRENCY=1")
	for _, id := range ids {
		if j := awaitFinal(t, f.spec, f.api, id, 10*time.Second); j.Status != "succeeded" || j.Attempts != 1 {
			t.Errorf("job %s behind the poison: %+v", id, j)
		}
	}
	if s, _ := jobStats(w); s.Received != 4 || s.Rejected != 1 || s.Succeeded != 3 {
		t.Errorf("worker job stats %+v, want 4 received (no redelivery), 1 rejected, 3 succeeded", s)
	}
	jl := map[string]string{"vhost": f.vh.Name}
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, f.api, "warren_jobs_dead_lettered_total", jl) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the API did not take the poison from %s", queue.JobDead)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := linesWith(f.api.out.String(), "dead-lettered job message without a job id"); !strings.Contains(l, "reason=rejected") {
		t.Errorf("the API did not log the dead-lettered poison with reason rejected: %q", l)
	}
}

// A job that crashes its worker every time: two workers SIGKILLed mid-run with
// JOB_MAX_ATTEMPTS=2; the third delivery is attempt 3, which the next worker fails
// without running it (attempts_exhausted), readable through GET.
func TestJobAttemptsExhaustedAfterCrashes(t *testing.T) {
	integration(t)
	repo := slowLabRepository(t)
	// A worker that runs no jobs, so that the API knows the model.
	f := newFarm(t, 1, nil, []string{"MODEL_REPOSITORY=" + repo, "JOB_CONCURRENCY=0"})
	env := []string{"MODEL_REPOSITORY=" + repo, "JOB_MAX_ATTEMPTS=2", "JOB_CONCURRENCY=1", "DRAIN_TIMEOUT=1s"}
	j := submitJob(t, f.spec, f.api, "slow: crashes its worker")
	for attempt := 1; attempt <= 2; attempt++ {
		w := f.addWorker(env...)
		awaitJobsInFlight(t, w, seedRoute, 1, 10*time.Second)
		awaitJob(t, f.spec, f.api, j.ID, 5*time.Second, fmt.Sprintf("running attempt %d", attempt),
			func(j jobBody) bool { return j.Status == "running" && j.Attempts == attempt })
		w.signal(syscall.SIGKILL)
		w.wait(10 * time.Second)
	}
	w := f.addWorker(env...)
	done := awaitFinal(t, f.spec, f.api, j.ID, 10*time.Second)
	if done.Status != "failed" || done.Error == nil || done.Error.Reason != string(jobs.ReasonAttemptsExhausted) || done.Attempts != 3 {
		t.Fatalf("after two crashes: %+v (error %+v), want failed attempts_exhausted at attempt 3", done, done.Error)
	}
	if s, _ := jobStats(w); s.Failed != 1 || s.Succeeded != 0 {
		t.Errorf("third worker's job stats %+v, want 1 failed without running", s)
	}

	// It is a dead letter: the operator lists it with the API binary's own
	// subcommand, fixes the model (a worker whose seed answers "slow…" at once
	// replaces the crashing one) and replays it: same id, succeeded.
	deadletters := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binaries(t), "api"), append([]string{"deadletters", "--url=" + f.api.url("")}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String() + errb.String(), code
	}
	if out, code := deadletters("list", "--all"); code != 0 || !strings.Contains(out, j.ID) || !strings.Contains(out, "attempts_exhausted") {
		t.Fatalf("api deadletters list --all: exit %d\n%s", code, out)
	}
	w.signal(syscall.SIGTERM)
	w.wait(10 * time.Second)
	f.addWorker("MODEL_REPOSITORY="+modelRepository(t), "MODELS=seed", "JOB_CONCURRENCY=1")
	if out, code := deadletters("replay", j.ID); code != 0 || !strings.Contains(out, `"status": "queued"`) {
		t.Fatalf("api deadletters replay: exit %d\n%s", code, out)
	}
	replayed := awaitFinal(t, f.spec, f.api, j.ID, 15*time.Second)
	if replayed.ID != j.ID || replayed.Status != "succeeded" || replayed.Attempts != 1 {
		t.Fatalf("the replayed job: %+v (error %+v), want succeeded at attempt 1 under the same id", replayed, replayed.Error)
	}
	if out, code := deadletters("list"); code != 0 || strings.Contains(out, j.ID) || !strings.Contains(out, `"count": 0`) {
		t.Fatalf("after the replay: exit %d\n%s", code, out)
	}
	if out, code := deadletters("discard", j.ID); code != 1 || !strings.Contains(out, "not_dead_letter") {
		t.Fatalf("discard of a succeeded job: exit %d\n%s", code, out)
	}
}

// The consumer_timeout test runs a private node whose consumer_timeout is short and
// checked often. On RabbitMQ 3.10 the timeout is evaluated on the channel's tick,
// rabbit.channel_tick_interval (60 s by default, not in rabbitmq.conf's schema).
// Measured on 3.10.8 with a quorum queue and one unacked delivery: consumer_timeout
// 3000 with the default tick closed the channel after 60.0 s; with a 1000 ms tick
// after 3.0-4.0 s. The broker logs "[warning] Consumer 1 on channel 2 has timed out
// waiting for delivery acknowledgement. Timeout used: 3000 ms." and closes the
// channel with 406 PRECONDITION_FAILED "delivery acknowledgement on channel 2 timed
// out".
const (
	testConsumerTimeout = 4 * time.Second
	testChannelTick     = 500 * time.Millisecond
	consumerTimedOut    = "has timed out waiting for delivery acknowledgement"
)

// Long jobs against the broker's consumer_timeout: a job's delivery stays unacked
// while it runs, so JOB_RUN_TIMEOUT must end a run before the broker would. The
// slow model is the test's lab server (slowLabRepository): "slow…" inputs never
// finish by themselves.
//
// (b) JOB_RUN_TIMEOUT (2.5 s) below consumer_timeout (4 s): each attempt is stopped
// at 2.5 s and retried, the job ends failed/run_timeout after JOB_MAX_ATTEMPTS (2)
// although it held the queue ~7 s in all, the broker never times the consumer out,
// and a short job submitted meanwhile succeeds.
//
// (a) The control on the same node: JOB_RUN_TIMEOUT above consumer_timeout: the
// broker closes the worker's channel and logs it (4-4.5 s after the job started:
// the 4 s timeout plus up to one 500 ms tick); the worker consumes again on a new
// session and the job goes back to the queue (the run that lost its connection is
// stopped, so its slot takes the redelivered copy).
func TestJobRunTimeoutBelowConsumerTimeout(t *testing.T) {
	integration(t)
	// The shipped broker configuration, with this test's consumer_timeout after it
	// (the last value wins): the node refuses to start if the file does not parse.
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deployments", "rabbitmq", "rabbitmq.conf"))
	if err != nil {
		t.Fatal(err)
	}
	checkShippedConsumerTimeout(t, string(shipped))
	node := testbroker.StartNodeWith(t, testbroker.NodeOptions{
		ExtraConfig:       string(shipped) + fmt.Sprintf("\n# the test's override\nconsumer_timeout = %d\n", testConsumerTimeout.Milliseconds()),
		AdditionalErlArgs: fmt.Sprintf("-rabbit channel_tick_interval %d", testChannelTick.Milliseconds()),
	})
	want := fmt.Sprintf("{{ok,%d},{ok,%d}}", testConsumerTimeout.Milliseconds(), testChannelTick.Milliseconds())
	if got := node.Ctl(t, "eval", "{application:get_env(rabbit, consumer_timeout), application:get_env(rabbit, channel_tick_interval)}."); strings.TrimSpace(got) != want {
		t.Fatalf("node settings %s, want %s", got, want)
	}
	spec := newFarmSpec(t)
	brokerLog := func() string {
		b, err := os.ReadFile(filepath.Join(node.Dir, "log", "node.log"))
		if err != nil {
			t.Fatalf("reading the node's log: %v", err)
		}
		return string(b)
	}
	repo := slowLabRepository(t)
	slowEnv := []string{"MODEL_REPOSITORY=" + repo, "JOB_CONCURRENCY=1", "DRAIN_TIMEOUT=1s"}
	vhosts := nodeVhosts(t, node, "below", "above")

	t.Run("run timeout below consumer_timeout", func(t *testing.T) {
		url := vhosts[0]
		api := startProc(t, "api", "AMQP_URL="+url, noManagement(t))
		awaitBroker(t, spec, api)
		slow := startProc(t, "worker", append([]string{"AMQP_URL=" + url, "WORKER_ID=slow",
			"JOB_RUN_TIMEOUT=2500ms", "JOB_MAX_ATTEMPTS=2", "JOB_RETRY_BACKOFF=2s", "JOB_RETRY_BACKOFF_MAX=2s"}, slowEnv...)...)
		awaitJobConsumer(t, url, seedRoute, 10*time.Second)
		awaitModelWorkers(t, spec, api, seedRoute, 1)
		long := submitJob(t, spec, api, "slow: longer than consumer_timeout")
		began := time.Now()
		awaitJobsInFlight(t, slow, seedRoute, 1, 5*time.Second)
		// (A session may have ended before: a consume of a quorum queue that is
		// still starting can fail with 541 INTERNAL_ERROR, and the worker retries.)
		sessions := jobSessions(slow)

		// A short job alongside, on a fast worker that stops before the long job's
		// retry is due (2.5 s run + 2 s backoff), so every attempt runs on slow.
		fast := startProc(t, "worker", append([]string{"AMQP_URL=" + url, "WORKER_ID=fast"}, slowEnv...)...)
		short := submitJob(t, spec, api, "short")
		if j := awaitFinal(t, spec, api, short.ID, 5*time.Second); j.Status != "succeeded" || resultWorker(j) != "fast" {
			t.Fatalf("short job: %+v", j)
		}
		fast.signal(syscall.SIGTERM)
		fast.wait(10 * time.Second)
		if el := time.Since(began); el > 4*time.Second {
			t.Fatalf("the fast worker stopped %v after the long job started: it may have taken a retry", el)
		} else {
			t.Logf("short job done and the fast worker gone %v after the long job started", el.Round(10*time.Millisecond))
		}

		j, final := pollFinal(t, spec, api, long.ID, 20*time.Second)
		took := time.Since(began)
		if l := linesWith(brokerLog(), consumerTimedOut); l != "" {
			t.Errorf("the broker timed a consumer out:\n%s", l)
		}
		if !final {
			t.Fatalf("long job not final after %v: %+v", took, j)
		}
		if j.Status != "failed" || j.Error == nil || j.Error.Reason != string(jobs.ReasonRunTimeout) || j.Attempts != 2 {
			t.Fatalf("long job: %+v (error %+v), want failed run_timeout after 2 attempts", j, j.Error)
		}
		if took < testConsumerTimeout {
			t.Errorf("the long job ended after %v, not longer than consumer_timeout (%v): the test proves nothing", took, testConsumerTimeout)
		}
		t.Logf("long job failed with run_timeout after %v and %d attempts", took.Round(10*time.Millisecond), j.Attempts)
		if s, _ := jobStats(slow); jobSessions(slow) != sessions || s.Failed != 1 || s.Retried != 1 {
			t.Errorf("slow worker: %d job sessions since the job started, job stats %+v; want none (channel never closed), 1 retried, 1 failed",
				jobSessions(slow)-sessions, s)
		}
	})

	t.Run("control: run timeout above consumer_timeout", func(t *testing.T) {
		url := vhosts[1]
		api := startProc(t, "api", "AMQP_URL="+url, noManagement(t))
		awaitBroker(t, spec, api)
		w := startProc(t, "worker", append([]string{"AMQP_URL=" + url, "WORKER_ID=over", "JOB_RUN_TIMEOUT=60s"}, slowEnv...)...)
		awaitJobConsumer(t, url, seedRoute, 10*time.Second)
		awaitModelWorkers(t, spec, api, seedRoute, 1)
		j := submitJob(t, spec, api, "slow: held past consumer_timeout")
		awaitJobsInFlight(t, w, seedRoute, 1, 5*time.Second)
		sessions := jobSessions(w)
		began := time.Now()
		deadline := began.Add(testConsumerTimeout + 4*testChannelTick + 2*time.Second)
		for !strings.Contains(brokerLog(), consumerTimedOut) {
			if time.Now().After(deadline) {
				t.Fatalf("the broker did not time the consumer out within %v", time.Since(began))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("the broker timed the consumer out %v after the job started", time.Since(began).Round(10*time.Millisecond))
		// The worker saw its channel closed and consumes again on a new session; the
		// job went back to the queue (it is delivered again to the new session).
		for deadline := time.Now().Add(5 * time.Second); jobSessions(w) <= sessions || queueConsumers(t, url, seedRoute.JobQueue()) < 1; {
			if time.Now().After(deadline) {
				t.Fatalf("the worker's job consumer is not consuming on a new session: %d sessions, %d before", jobSessions(w), sessions)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(w.out.String(), "broker session ended") {
			t.Errorf("the worker did not log the end of its session")
		}
		// The redelivered copy runs on the new session (attempt 2): the run that
		// lost its channel gave its slot up.
		awaitJob(t, spec, api, j.ID, 5*time.Second, "running again as attempt 2", func(j jobBody) bool {
			return j.Status == "running" && j.Attempts == 2
		})
	})
}

// Cancel: a job cancelled while queued behind a busy worker (JOB_CONCURRENCY=1, so
// it waits in the queue, not in the worker's buffer) is skipped when its turn comes:
// the worker heard the cancel notice. A running job cannot be cancelled (409).
func TestJobCancel(t *testing.T) {
	f := newFarm(t, 1, nil, []string{"MODEL_LATENCY=2s", "JOB_CONCURRENCY=1"})
	w := f.workers[0]
	awaitJobConsumer(t, f.vh.AMQPURL, seedRoute, 10*time.Second)
	busy := submitJob(t, f.spec, f.api, "keeps the worker busy")
	awaitJob(t, f.spec, f.api, busy.ID, 5*time.Second, "running", func(j jobBody) bool { return j.Status == "running" })
	doomed := submitJob(t, f.spec, f.api, "cancelled while queued")

	r := f.do("DELETE", "/jobs/"+doomed.ID, "")
	if j := decodeJob(t, r); r.Status != http.StatusOK || j.Status != "cancelled" || j.FinishedAt == nil {
		t.Fatalf("DELETE of a queued job: %d %s", r.Status, r.Body)
	}
	r = f.do("DELETE", "/jobs/"+busy.ID, "")
	if m := r.json(t); r.Status != http.StatusConflict || m["reason"] != "not_cancellable" {
		t.Fatalf("DELETE of a running job: %d %s", r.Status, r.Body)
	}

	if j := awaitFinal(t, f.spec, f.api, busy.ID, 10*time.Second); j.Status != "succeeded" {
		t.Fatalf("the running job: %+v", j)
	}
	// The cancelled job's turn comes right after; the worker skips it.
	awaitJobStats(t, w, 5*time.Second, "done with both deliveries", func(s queue.JobConsumerStats) bool { return s.Received == 2 })
	awaitJobsInFlight(t, w, seedRoute, 0, 5*time.Second)
	jl := map[string]string{"vhost": f.vh.Name, "queue": seedRoute.JobQueue(), "model": "seed", "version": "1"}
	if v := metric(t, w, "warren_worker_jobs_handled_total", with(jl, "outcome", "cancelled")); v != 1 {
		t.Errorf(`warren_worker_jobs_handled_total{outcome="cancelled"} = %v, want 1`, v)
	}
	if v := metric(t, w, "warren_worker_jobs_handled_total", with(jl, "outcome", "succeeded")); v != 1 {
		t.Errorf(`warren_worker_jobs_handled_total{outcome="succeeded"} = %v, want 1 (the cancelled job ran)`, v)
	}
	if j := getJob(t, f.spec, f.api, doomed.ID, ""); j.Status != "cancelled" || j.StartedAt != nil || j.Attempts != 0 {
		t.Errorf("the cancelled job: %+v", j)
	}
}

// Long-poll across replicas: two APIs on one Redis prefix and one vhost. A job
// submitted on A and long-polled on B returns as soon as it is final, whichever
// replica consumed the result. Replica C has no broker at all (it never consumes a
// result), so its long-polls can only be woken through Redis.
func TestJobLongPollAcrossReplicas(t *testing.T) {
	integration(t)
	store := redisStore(t)
	const latency = time.Second
	f := newFarm(t, 1, store, []string{"MODEL_LATENCY=" + latency.String(), "JOB_CONCURRENCY=6"})
	b := startProc(t, "api", append([]string{"AMQP_URL=" + f.vh.AMQPURL, "MANAGEMENT_URL=" + f.vh.ManagementURL}, store...)...)
	c := startProc(t, "api", append([]string{"AMQP_URL=amqp://guest:guest@" + freeAddr(t) + "/", noManagement(t)}, store...)...)

	type poll struct {
		on      *proc
		id      string
		elapsed time.Duration
		job     jobBody
		err     error
	}
	polls := make(chan poll, 6)
	var wg sync.WaitGroup
	for i := range 6 {
		j := submitJob(t, f.spec, f.api, fmt.Sprintf("replica %d", i))
		on := b
		if i%2 == 1 {
			on = c
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			begin := time.Now()
			r, err := tryDo(t, f.spec, "GET", on.url("/jobs/"+j.ID+"?wait=30"), "")
			p := poll{on: on, id: j.ID, elapsed: time.Since(begin), err: err}
			if err == nil && r.Status == http.StatusOK {
				_ = json.Unmarshal(r.Body, &p.job)
			} else if err == nil {
				p.err = fmt.Errorf("%d %s", r.Status, r.Body)
			}
			polls <- p
		}()
	}
	wg.Wait()
	close(polls)
	for p := range polls {
		name := map[*proc]string{b: "B", c: "C (no broker)"}[p.on]
		switch {
		case p.err != nil:
			t.Errorf("long poll of %s on %s: %v", p.id, name, p.err)
		case p.job.Status != "succeeded":
			t.Errorf("long poll of %s on %s returned after %v with %+v", p.id, name, p.elapsed, p.job)
		case p.elapsed > latency+2*time.Second:
			t.Errorf("long poll of %s on %s returned after %v; the job took %v", p.id, name, p.elapsed, latency)
		default:
			t.Logf("long poll on %s: %v", name, p.elapsed.Round(time.Millisecond))
		}
	}
	jl := map[string]string{"vhost": f.vh.Name}
	onA := metric(t, f.api, "warren_jobs_finished_total", with(jl, "status", "succeeded"))
	onB := metric(t, b, "warren_jobs_finished_total", with(jl, "status", "succeeded"))
	t.Logf("results applied: %v by A, %v by B, none by C", onA, onB)
	if onA+onB != 6 {
		t.Errorf("A and B applied %v final results, want 6", onA+onB)
	}
}

// The sync path does not wait behind a job backlog: with 5,000 jobs queued behind a
// worker that runs one job at a time (200 ms each), /process is answered at the
// model's latency, because jobs have their own queue, connection and handlers.
func TestJobBacklogDoesNotDelaySyncPath(t *testing.T) {
	f := newFarm(t, 1, nil, []string{"MODEL_LATENCY=200ms", "JOB_CONCURRENCY=1", "CONCURRENCY=4"})
	const n, conc = 5000, 64
	begin := time.Now()
	var wg sync.WaitGroup
	var failed sync.Once
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += conc {
				spec := f.spec
				if i >= conc { // validate the first round against the document, not all 5,000
					spec = nil
				}
				r, err := tryDo(t, spec, "POST", f.api.url("/jobs"), fmt.Sprintf(`{"data":"backlog %d"}`, i))
				if err != nil || r.Status != http.StatusAccepted {
					failed.Do(func() { t.Errorf("POST /jobs %d: %v %d %s", i, err, r.Status, r.Body) })
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("submitted %d jobs at concurrency %d in %v", n, conc, time.Since(begin).Round(time.Millisecond))
	q := f.vh.WaitQueue(t, seedRoute.JobQueue(), func(q testbroker.QueueInfo) bool { return q.Ready > n-200 }, 15*time.Second)
	t.Logf("%s: %d ready, %d unacked", seedRoute.JobQueue(), q.Ready, q.Unacked)

	for i := range 20 {
		in := fmt.Sprintf("sync %d", i)
		start := time.Now()
		r := f.do("POST", "/process", fmt.Sprintf(`{"data":%q}`, in), "X-Request-Timeout", "5s")
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("/process %d took %v behind the job backlog: %d %s", i, el, r.Status, r.Body)
		}
		checkPrediction(t, r, in, r.Header.Get("X-Request-ID"))
	}
	// The backlog was there all along: the job path works through ~5 jobs a second.
	s, _ := jobStats(f.workers[0])
	if left := n - int(s.Received); left < n-200 {
		t.Errorf("only %d jobs left: the backlog was worked off during the test", left)
	}
}

// Jobs take a model name: POST /jobs with a v2 request naming the digits ONNX model
// runs it on a worker that serves it (MODELS=seed,digits) and the job's result is
// the v2 response, whose most probable digit is the test image's label. An unknown
// model is 404, a tensor that does not fit 400 naming the input. The v2 hand-off
// (Prefer: respond-async on /v2/models/{m}/infer) answers the v2 response when the
// job finishes within the wait, and 202 with the job's Location on a slow model.
func TestJobsTakeAModelName(t *testing.T) {
	f := newFarm(t, 1, nil, []string{"MODELS=seed,digits", "MODEL_LATENCY=1s", "JOB_CONCURRENCY=2"})
	awaitModelWorkers(t, f.spec, f.api, digitsRoute, 1)
	vecs := digitsVectors(t)

	v := vecs[0]
	j := submitBody(t, f.spec, f.api, `{"model":"digits","inputs":`+digitsInputs(v)+`}`)
	if j.Model != "digits" || j.ModelVersion != "1" {
		t.Fatalf("digits job: %+v", j)
	}
	done := awaitFinal(t, f.spec, f.api, j.ID, 15*time.Second)
	if done.Status != "succeeded" || done.Model != "digits" || done.ModelVersion != "1" || done.Attempts != 1 {
		t.Fatalf("digits job: %+v (error %+v)", done, done.Error)
	}
	if d := digitOf(t, done.Result); d != v.Label {
		t.Errorf("digits job answered %d for an image of a %d", d, v.Label)
	}
	// A version named explicitly.
	v = vecs[1]
	j = submitBody(t, f.spec, f.api, `{"model":"digits","version":"1","inputs":`+digitsInputs(v)+`}`)
	if done = awaitFinal(t, f.spec, f.api, j.ID, 15*time.Second); done.Status != "succeeded" || digitOf(t, done.Result) != v.Label {
		t.Errorf("digits job with a version: %+v", done)
	}

	r := f.do("POST", "/jobs", `{"model":"nosuchmodel","inputs":`+digitsInputs(v)+`}`)
	if r.Status != http.StatusNotFound || r.json(t)["reason"] != "not_found" || !strings.Contains(string(r.Body), "nosuchmodel") {
		t.Errorf("a job of an unknown model: %d %s", r.Status, r.Body)
	}
	r = f.do("POST", "/jobs", `{"model":"digits","version":"7","inputs":`+digitsInputs(v)+`}`)
	if r.Status != http.StatusNotFound || r.json(t)["reason"] != "not_found" {
		t.Errorf("a job of an unknown version: %d %s", r.Status, r.Body)
	}
	short, _ := json.Marshal(v.Input[:63])
	r = f.do("POST", "/jobs", `{"model":"digits","inputs":[{"name":"input","datatype":"FP32","shape":[1,63],"data":`+string(short)+`}]}`)
	if m := r.json(t); r.Status != http.StatusBadRequest || m["reason"] != "bad_input" || !strings.Contains(fmt.Sprint(m["detail"]), `"input"`) {
		t.Errorf("a job whose tensor does not fit: %d %s", r.Status, r.Body)
	}
	r = f.do("POST", "/jobs", `{"model":"digits","inputs":[{"name":"pixels","datatype":"FP32","shape":[1,64],"data":`+string(mustJSON(v.Input))+`}]}`)
	if r.Status != http.StatusBadRequest || r.json(t)["reason"] != "bad_input" {
		t.Errorf("a job with an input the model does not have: %d %s", r.Status, r.Body)
	}

	// The v2 hand-off: done within the wait → 200 with the v2 response.
	v = vecs[2]
	r = f.do("POST", "/v2/models/digits/infer", `{"inputs":`+digitsInputs(v)+`}`, "Prefer", "respond-async, wait=5")
	if r.Status != http.StatusOK || r.Header.Get("Location") != "" {
		t.Fatalf("digits hand-off: %d %v %s", r.Status, r.Header, r.Body)
	}
	if d := digitOf(t, r.Body); d != v.Label {
		t.Errorf("digits hand-off answered %d for an image of a %d", d, v.Label)
	}
	// Not done within the wait (the seed model takes 1 s here) → 202 and the job.
	r = f.do("POST", "/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["handed off"]}]}`,
		"Prefer", "respond-async, wait=0.1")
	if r.Status != http.StatusAccepted || r.Header.Get("Preference-Applied") != "respond-async" || !strings.HasPrefix(r.Header.Get("Location"), "/jobs/") {
		t.Fatalf("slow hand-off: %d %v %s", r.Status, r.Header, r.Body)
	}
	if j := decodeJob(t, r); j.Model != "seed" || j.ModelVersion != "1" || j.Status == "succeeded" {
		t.Errorf("slow hand-off's job: %s", r.Body)
	}
	r = f.do("GET", r.Header.Get("Location")+"?wait=10", "")
	var resp v2Response
	if j := decodeJob(t, r); j.Status != "succeeded" || json.Unmarshal(j.Result, &resp) != nil || resp.ModelName != "seed" || len(resp.Outputs) != 4 {
		t.Errorf("slow hand-off's job when done: %s", r.Body)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Jobs of a model run only on workers that serve it: one worker serves seed, one
// digits, and each model's jobs are run by its own worker (the workers' per-model
// job counters and the seed results' worker_id say so). With the digits worker
// stopped, digits jobs are still accepted and wait in their queue; they run once a
// digits worker is back.
func TestJobsRunOnlyOnWorkersWithTheModel(t *testing.T) {
	f := newFarm(t, 1, nil, []string{"WORKER_ID=w-seed", "JOB_CONCURRENCY=2"})
	ws := f.workers[0]
	wd := f.addWorker("MODELS=digits", "WORKER_ID=w-digits", "JOB_CONCURRENCY=2")
	awaitModelWorkers(t, f.spec, f.api, digitsRoute, 1)
	vecs := digitsVectors(t)

	const n = 6
	var digits, seeds []string
	for i := range n {
		digits = append(digits, submitBody(t, f.spec, f.api, `{"model":"digits","inputs":`+digitsInputs(vecs[i])+`}`).ID)
		seeds = append(seeds, submitJob(t, f.spec, f.api, fmt.Sprintf("seed job %d", i)).ID)
	}
	for i, id := range digits {
		j := awaitFinal(t, f.spec, f.api, id, 15*time.Second)
		if j.Status != "succeeded" || j.Model != "digits" || digitOf(t, j.Result) != vecs[i].Label {
			t.Errorf("digits job %d: %+v (error %+v)", i, j, j.Error)
		}
	}
	for i, id := range seeds {
		if j := awaitFinal(t, f.spec, f.api, id, 15*time.Second); j.Status != "succeeded" || resultWorker(j) != "w-seed" {
			t.Errorf("seed job %d: %+v, run by %q", i, j, resultWorker(j))
		}
	}
	handled := func(w *proc, r queue.Route) (float64, bool) {
		v, _, ok := sample(families(t, w.url("/metrics")), "warren_worker_jobs_handled_total",
			map[string]string{"queue": r.JobQueue(), "outcome": "succeeded"})
		return v, ok
	}
	if v, ok := handled(wd, digitsRoute); v != n {
		t.Errorf("the digits worker ran %v digits jobs (series %v), want %d", v, ok, n)
	}
	if v, ok := handled(ws, seedRoute); v != n {
		t.Errorf("the seed worker ran %v seed jobs (series %v), want %d", v, ok, n)
	}
	if _, ok := handled(ws, digitsRoute); ok {
		t.Error("the seed worker has a digits job series: it consumes digits jobs")
	}
	if _, ok := handled(wd, seedRoute); ok {
		t.Error("the digits worker has a seed job series: it consumes seed jobs")
	}
	if s, _ := jobStats(ws); s.Received != n {
		t.Errorf("the seed worker took %d jobs, want %d: %+v", s.Received, n, s)
	}
	if s, _ := jobStats(wd); s.Received != n {
		t.Errorf("the digits worker took %d jobs, want %d: %+v", s.Received, n, s)
	}

	// The digits worker goes away: digits jobs queue; the seed worker leaves them.
	wd.signal(syscall.SIGTERM)
	if code := wd.wait(30 * time.Second); code != 0 {
		t.Fatalf("digits worker exit code %d", code)
	}
	awaitModelWorkers(t, f.spec, f.api, digitsRoute, 0)
	var waiting []string
	for i := range 3 {
		waiting = append(waiting, submitBody(t, f.spec, f.api, `{"model":"digits","inputs":`+digitsInputs(vecs[n+i])+`}`).ID)
	}
	f.vh.WaitQueue(t, digitsRoute.JobQueue(), func(q testbroker.QueueInfo) bool { return q.Ready == 3 && q.Consumers == 0 }, 15*time.Second)
	for _, id := range waiting {
		if j := getJob(t, f.spec, f.api, id, ""); j.Status != "queued" {
			t.Errorf("digits job without a digits worker: %+v", j)
		}
	}
	back := f.addWorker("MODELS=digits", "WORKER_ID=w-digits-2", "JOB_CONCURRENCY=2")
	for i, id := range waiting {
		j := awaitFinal(t, f.spec, f.api, id, 20*time.Second)
		if j.Status != "succeeded" || digitOf(t, j.Result) != vecs[n+i].Label {
			t.Errorf("digits job %d after the worker came back: %+v", i, j)
		}
	}
	if v, _ := handled(back, digitsRoute); v != 3 {
		t.Errorf("the new digits worker ran %v digits jobs, want 3", v)
	}
	if s, _ := jobStats(ws); s.Received != n {
		t.Errorf("the seed worker took %d jobs, want still %d: %+v", s.Received, n, s)
	}
}

// A broken job topology degrades only the job path: the seed model's job queue is
// declared beforehand with other arguments, so the API's (and the worker's)
// declaration of it fails with 406. /process and /v2 inference still answer 200,
// /ready is 200 with jobs degraded and the queue named, POST /jobs answers 503
// jobs_unavailable at once. Deleting the bad queue heals it in the running
// processes: /ready says ok again (the API's job publisher declares it again on its
// connection, without a reconnect) and jobs run.
func TestJobTopologyBrokenDegradesOnlyJobs(t *testing.T) {
	for _, c := range []struct {
		name string
		args amqp.Table
		arg  string // what the broker's refusal names
	}{
		{"classic queue", nil, "PRECONDITION_FAILED"},
		{"another delivery limit", amqp.Table{
			amqp.QueueTypeArg: amqp.QueueTypeQuorum, "x-delivery-limit": int32(queue.JobDeliveryLimit + 1),
			"x-dead-letter-exchange": queue.JobDLX, "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
		}, "x-delivery-limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			integration(t)
			f := &farm{t: t, vh: testbroker.NewVhost(t), spec: newFarmSpec(t)}
			ch := amqpChannel(t, f.vh.AMQPURL)
			if _, err := ch.QueueDeclare(seedRoute.JobQueue(), true, false, false, false, c.args); err != nil {
				t.Fatal(err)
			}
			w := f.addWorker()
			f.api = startProc(t, "api", "AMQP_URL="+f.vh.AMQPURL, "MANAGEMENT_URL="+f.vh.ManagementURL)
			f.waitWorkers(1)

			b := awaitReady(t, f.spec, f.api, 10*time.Second, "jobs degraded", func(b apiReady) bool { return b.Jobs.Status == "degraded" })
			if !strings.Contains(b.Jobs.Problem, seedRoute.JobQueue()) || !strings.Contains(b.Jobs.Problem, c.arg) {
				t.Errorf("/ready's jobs problem does not name the queue and %s: %q", c.arg, b.Jobs.Problem)
			}
			if b.Broker != "up" || b.Workers != 1 {
				t.Errorf("/ready: %+v", b)
			}
			r := f.do("POST", "/process", `{"data":"sync still works"}`)
			checkPrediction(t, r, "sync still works", r.Header.Get("X-Request-ID"))
			r = f.do("POST", "/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["v2 too"]}]}`)
			if r.Status != http.StatusOK {
				t.Errorf("/v2 infer with a broken job queue: %d %s", r.Status, r.Body)
			}
			if code, _, _ := getJSON(w.url("/ready"), &struct{}{}); code != http.StatusOK {
				t.Errorf("worker /ready %d: its broken job queue made it unready", code)
			}
			for _, sub := range []struct{ path, body string }{
				{"/jobs", `{"data":"no job queue"}`},
				{"/process", `{"data":"no job queue"}`},
				{"/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["no job queue"]}]}`},
			} {
				begin := time.Now()
				r := f.do("POST", sub.path, sub.body, "Prefer", "respond-async")
				if m := r.json(t); r.Status != http.StatusServiceUnavailable || m["reason"] != "jobs_unavailable" || r.Header.Get("Retry-After") == "" {
					t.Errorf("POST %s (a job) with a broken job queue: %d %v %s", sub.path, r.Status, r.Header, r.Body)
				}
				if el := time.Since(begin); el > 2*time.Second {
					t.Errorf("POST %s (a job) answered after %v", sub.path, el)
				}
			}

			// The operator deletes the bad queue: healed without a restart.
			if _, err := ch.QueueDelete(seedRoute.JobQueue(), false, false, false); err != nil {
				t.Fatal(err)
			}
			awaitReady(t, f.spec, f.api, 15*time.Second, "jobs ok again", func(b apiReady) bool { return b.Jobs.Status == "ok" && b.Jobs.Problem == "" })
			f.vh.WaitQueue(t, seedRoute.JobQueue(), func(q testbroker.QueueInfo) bool {
				return q.Arguments["x-queue-type"] == "quorum" && q.Arguments["x-delivery-limit"] == float64(queue.JobDeliveryLimit)
			}, 10*time.Second)
			j := submitJob(t, f.spec, f.api, "after the repair")
			if done := awaitFinal(t, f.spec, f.api, j.ID, 15*time.Second); done.Status != "succeeded" || resultWorker(done) != "w0" {
				t.Errorf("a job after the repair: %+v", done)
			}
			if l := linesWith(f.api.out.String(), "reconnected to broker"); l != "" {
				t.Errorf("the API reconnected to heal:\n%s", l)
			}
		})
	}
}

// checkShippedConsumerTimeout checks that deployments/rabbitmq/rabbitmq.conf sets a
// consumer_timeout of at least twice the default JOB_RUN_TIMEOUT (see the file).
func checkShippedConsumerTimeout(t *testing.T, conf string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^consumer_timeout\s*=\s*(\d+)\s*$`).FindAllStringSubmatch(conf, -1)
	if len(m) != 1 {
		t.Fatalf("rabbitmq.conf: want one consumer_timeout line, found %d", len(m))
	}
	ms, _ := strconv.ParseInt(m[0][1], 10, 64)
	v, _ := config.Lookup("JOB_RUN_TIMEOUT")
	run, err := time.ParseDuration(v.Default(config.Worker))
	if err != nil {
		t.Fatalf("default JOB_RUN_TIMEOUT %q: %v", v.Default(config.Worker), err)
	}
	if ct := time.Duration(ms) * time.Millisecond; ct < 2*run {
		t.Errorf("rabbitmq.conf: consumer_timeout %v is less than twice the default JOB_RUN_TIMEOUT (%v)", ct, run)
	}
}

// linesWith returns the lines of text that contain substr.
func linesWith(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
