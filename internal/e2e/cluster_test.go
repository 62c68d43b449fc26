package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
)

// syncOutcome is what one sync caller saw.
type syncOutcome struct {
	at      time.Time // when the answer came
	took    time.Duration
	status  int    // 0: transport error
	reason  string // the JSON reason of a 503/504
	failure string // why the answer breaks the contract, "" if it keeps it
}

// clusterLoad runs sync callers on /process and job submitters on /jobs
// until stop is closed.
type clusterLoad struct {
	mu       sync.Mutex
	sync     []syncOutcome
	jobs     []string // accepted job ids
	refused  map[int]int
	wg       sync.WaitGroup
	stop     chan struct{}
	deadline time.Duration
	began    time.Time
}

func (l *clusterLoad) run(t *testing.T, api *proc, callers, submitters int) {
	spec := newFarmSpec(t)
	for i := range callers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				began := time.Now()
				r, err := tryDo(t, spec, "POST", api.url("/process"), fmt.Sprintf(`{"data":"c%d-%d"}`, i, n),
					"X-Request-Timeout", fmt.Sprint(l.deadline.Seconds()))
				o := syncOutcome{at: time.Now(), took: time.Since(began), status: r.Status}
				switch {
				case err != nil:
					o.failure = "transport error: " + err.Error()
				case r.Status == http.StatusOK:
				case r.Status == http.StatusServiceUnavailable || r.Status == http.StatusGatewayTimeout:
					var b struct {
						Reason string `json:"reason"`
					}
					if json.Unmarshal(r.Body, &b) != nil || b.Reason == "" {
						o.failure = fmt.Sprintf("%d without a JSON reason: %s", r.Status, r.Body)
					}
					o.reason = b.Reason
				default:
					o.failure = fmt.Sprintf("status %d: %s", r.Status, r.Body)
				}
				if o.took > l.deadline+time.Second {
					o.failure += fmt.Sprintf(" answered after %v, deadline %v", o.took, l.deadline)
				}
				l.mu.Lock()
				l.sync = append(l.sync, o)
				l.mu.Unlock()
				if o.status != http.StatusOK {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	for i := range submitters {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				r, err := tryDo(t, spec, "POST", api.url("/jobs"), fmt.Sprintf(`{"data":"j%d-%d"}`, i, n))
				l.mu.Lock()
				if err == nil && r.Status == http.StatusAccepted {
					var j jobBody
					if json.Unmarshal(r.Body, &j) == nil && j.ID != "" {
						l.jobs = append(l.jobs, j.ID)
					}
				} else {
					l.refused[r.Status]++ // 0: transport error
				}
				l.mu.Unlock()
			}
		}()
	}
}

// firstOKAfter is the time from t0 to the first 200 answered after t0.
func (l *clusterLoad) firstOKAfter(t0 time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.sync {
		if o.status == http.StatusOK && o.at.After(t0) && o.at.Add(-o.took).After(t0) {
			return o.at.Sub(t0), true
		}
	}
	return 0, false
}

// summary counts the answers in [from, to) by status/reason.
func (l *clusterLoad) summary(from, to time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := map[string]int{}
	for _, o := range l.sync {
		if o.at.Before(from) || !o.at.Before(to) {
			continue
		}
		k := fmt.Sprint(o.status)
		if o.reason != "" {
			k += " " + o.reason
		}
		counts[k]++
	}
	return fmt.Sprint(counts)
}

func (l *clusterLoad) awaitOK(t *testing.T, t0 time.Time, what string) time.Duration {
	t.Helper()
	d, ok := l.waitOK(t0, 45*time.Second)
	if !ok {
		t.Fatalf("%s: no 200 within 45s; callers saw %s", what, l.summary(t0, time.Now()))
	}
	t.Logf("%s: first 200 after %v", what, d.Round(time.Millisecond))
	return d
}

// waitOK waits up to timeout for the first 200 after t0.
func (l *clusterLoad) waitOK(t0 time.Time, timeout time.Duration) (time.Duration, bool) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if d, ok := l.firstOKAfter(t0); ok {
			return d, true
		}
		if time.Now().After(deadline) {
			return 0, false
		}
	}
}

// killAndRestart SIGKILLs n, waits up to 5s for a sync 200, restarts n, and
// returns the time from the kill to the first 200 (which, when the node
// held the classic request queue, comes only after the restart).
func (l *clusterLoad) killAndRestart(t *testing.T, c *testbroker.Cluster, n *testbroker.Node, what string) time.Duration {
	t.Helper()
	home := c.QueueHome(t, "/", seedRoute.RequestQueue())
	t0 := time.Now()
	n.Kill(t)
	d, ok := l.waitOK(t0, 5*time.Second)
	n.Start(t)
	if !ok {
		d, ok = l.waitOK(t0, 45*time.Second)
		if !ok {
			t.Fatalf("%s: no 200 within 45s after the restart; callers saw %s", what, l.summary(t0, time.Now()))
		}
		t.Logf("%s (the request queue's home: %v): first 200 only after the restart, %v after the kill",
			what, home == n.Name, d.Round(time.Millisecond))
	} else {
		t.Logf("%s (the request queue's home: %v): first 200 after %v", what, home == n.Name, d.Round(time.Millisecond))
	}
	t.Logf("callers from the kill to the restart's end: %s", l.summary(t0, time.Now()))
	return d
}

// apiNode is the node holding the API's connection(s).
func apiNode(t *testing.T, c *testbroker.Cluster) *testbroker.Node {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		for _, n := range c.Nodes {
			if !n.Running() || n.Paused() {
				continue
			}
			for _, name := range n.Connections(t) {
				if strings.HasPrefix(name, "warren-api ") {
					return n
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node holds the API's connection")
		}
	}
}

// TestClusterNodeLoss runs an API and two workers against a 3-node cluster
// (AMQP_URL lists all three) under continuous sync and job load, SIGKILLs the
// node leading the job queue, restarts it, SIGKILLs the node the API is
// connected to, restarts it, and pauses a minority node for longer than
// net_ticktime. No accepted job is lost or ends twice; every sync caller gets
// a 200, or a 503/504 with a JSON reason, within its deadline.
func TestClusterNodeLoss(t *testing.T) {
	integration(t)
	c, spec, api, load, stopLoad := startClusterFarm(t, "cw")
	began := load.began

	// 1. The job queue's leader dies.
	leader := c.Node(c.QueueLeader(t, "/", seedRoute.JobQueue()))
	if leader == nil {
		t.Fatal("the job queue has no leader")
	}
	rec1 := load.killAndRestart(t, c, leader, "job queue leader "+leader.Name+" killed")

	// 2. The API's node dies (the restarted leader is back, so two of three run).
	an := apiNode(t, c)
	rec2 := load.killAndRestart(t, c, an, "API's node "+an.Name+" killed")

	// 3. A minority node paused for longer than net_ticktime: one that holds
	// neither the API's connection nor the classic request queue. (Pausing
	// the request queue's home node stops sync traffic well beyond the
	// resume: README "Running in production", not fixed yet.)
	apiNow := apiNode(t, c)
	home := c.QueueHome(t, "/", seedRoute.RequestQueue())
	t.Logf("request queue %s lives on %s; the API is connected to %s", seedRoute.RequestQueue(), home, apiNow.Name)
	var paused *testbroker.Node
	for _, n := range c.Nodes {
		if n != apiNow && n.Name != home {
			paused = n
			break
		}
	}
	t2 := time.Now()
	paused.Pause(t)
	time.Sleep(time.Duration(testbroker.ClusterNetTicktime)*time.Second + 5*time.Second)
	paused.Resume(t)
	t3 := time.Now()
	pauseSeen := load.summary(t2, t3)
	t.Logf("callers while %s was paused for %v: %s", paused.Name, t3.Sub(t2).Round(time.Second), pauseSeen)
	load.awaitOK(t, t3, "after the resume")
	time.Sleep(2 * time.Second)
	stopLoad()
	t.Logf("callers after the resume: %s", load.summary(t3, time.Now()))

	okCount, jobs, lost, twice, refused := load.verify(t, spec, api)
	if n := okPaused(load, t2, t3); n == 0 {
		t.Errorf("no 200 while a minority node was paused: %s", pauseSeen)
	}
	t.Logf("load for %v: %d sync answers (%d ok), %d jobs accepted (%d not succeeded, %d changed final state), submissions refused %s; recovery to the first 200: leader kill %v, API node kill %v",
		time.Since(began).Round(time.Second), len(load.sync), okCount, jobs, lost, twice, refused,
		rec1.Round(time.Millisecond), rec2.Round(time.Millisecond))
}

// startClusterFarm starts a 3-node cluster, two workers (WORKER_ID prefix1 and
// prefix2) and an API, with AMQP_URL listing the nodes and env added, then the
// load (4 sync callers with a 2 s deadline, 2 job submitters), and returns once
// the load has run for 3 s. stopLoad stops the load (again at cleanup: a no-op).
func startClusterFarm(t *testing.T, prefix string, env ...string) (c *testbroker.Cluster,
	spec *apidoctest.Validator, api *proc, load *clusterLoad, stopLoad func()) {
	t.Helper()
	c = testbroker.StartCluster(t, 3)
	env = append([]string{"AMQP_URL=" + strings.Join(c.URLs(), ",")}, env...)
	spec = newFarmSpec(t)
	for i := 1; i <= 2; i++ {
		startProc(t, "worker", append(slices.Clone(env), fmt.Sprintf("WORKER_ID=%s%d", prefix, i))...)
	}
	api = startProc(t, "api", append(slices.Clone(env), noManagement(t))...)
	awaitModelWorkers(t, spec, api, seedRoute, 2)
	awaitJobConsumer(t, c.Nodes[0].AMQPURL, seedRoute, 15*time.Second)

	load = &clusterLoad{stop: make(chan struct{}), refused: map[int]int{}, deadline: 2 * time.Second, began: time.Now()}
	load.run(t, api, 4, 2)
	stopped := false
	stopLoad = func() {
		if !stopped {
			stopped = true
			close(load.stop)
			load.wg.Wait()
		}
	}
	t.Cleanup(stopLoad)
	time.Sleep(3 * time.Second)
	return c, spec, api, load, stopLoad
}

// verify checks, once the load has stopped, that every sync answer kept the
// contract and that every accepted job ends succeeded, once. It returns the
// number of 200s, of accepted jobs, of jobs not succeeded, of jobs whose final
// state changed, and the refused submissions by status.
func (l *clusterLoad) verify(t *testing.T, spec *apidoctest.Validator, api *proc) (okCount, accepted, lost, twice int, refused string) {
	t.Helper()
	l.mu.Lock()
	var bad []string
	for _, o := range l.sync {
		if o.failure != "" {
			bad = append(bad, o.failure)
		}
		if o.status == http.StatusOK {
			okCount++
		}
	}
	jobs := append([]string(nil), l.jobs...)
	refused = fmt.Sprint(l.refused)
	total := len(l.sync)
	l.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("%d of %d sync answers break the contract, e.g. %q", len(bad), total, bad[:min(5, len(bad))])
	}
	final := map[string]string{}
	for _, id := range jobs {
		j := awaitFinal(t, spec, api, id, 60*time.Second)
		final[id] = j.Status
	}
	for _, id := range jobs {
		if j := getJob(t, spec, api, id, ""); j.Status != final[id] {
			twice++
			t.Errorf("job %s ended %s, then %s", id, final[id], j.Status)
		}
		if final[id] != "succeeded" {
			lost++
			t.Errorf("job %s ended %s", id, final[id])
		}
	}
	return okCount, len(jobs), lost, twice, refused
}

func okPaused(l *clusterLoad, from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.sync {
		if o.status == http.StatusOK && !o.at.Before(from) && o.at.Before(to) {
			n++
		}
	}
	return n
}

// TestClusterQuorumRequestQueue is TestClusterNodeLoss's farm with
// REQUEST_QUEUE_TYPE=quorum: the sync request queue is replicated on the three
// nodes. Under the same load it SIGKILLs the request queue's leader (sync
// traffic must come back without the node's restart), pauses the new leader for
// longer than net_ticktime (200s must come back within 5 s of the resume), then kills two
// nodes at once (the majority: no queue can take a write; callers must still
// get a status within their deadline) and restarts them. No accepted job is lost
// or ends twice.
func TestClusterQuorumRequestQueue(t *testing.T) {
	integration(t)
	c, spec, api, load, stopLoad := startClusterFarm(t, "qw", "REQUEST_QUEUE_TYPE=quorum")
	began := load.began

	// 1. The request queue's leader dies: a follower takes over, sync traffic
	// returns before the node does.
	leader := c.Node(c.QueueLeader(t, "/", seedRoute.RequestQueue()))
	if leader == nil {
		t.Fatal("the request queue has no leader: is it a quorum queue?")
	}
	t0 := time.Now()
	leader.Kill(t)
	rec1, ok := load.waitOK(t0, 20*time.Second)
	if !ok {
		t.Errorf("request queue leader %s killed: no 200 within 20s while it was down; callers saw %s",
			leader.Name, load.summary(t0, time.Now()))
	}
	t.Logf("request queue leader %s killed: first 200 after %v, the node still down; callers saw %s",
		leader.Name, rec1.Round(time.Millisecond), load.summary(t0, time.Now()))
	leader.Start(t)
	load.awaitOK(t, time.Now(), "after the restart")

	// 2. The new leader paused for longer than net_ticktime.
	second := c.Node(c.QueueLeader(t, "/", seedRoute.RequestQueue()))
	t2 := time.Now()
	second.Pause(t)
	time.Sleep(time.Duration(testbroker.ClusterNetTicktime)*time.Second + 5*time.Second)
	second.Resume(t)
	t3 := time.Now()
	pauseSeen := load.summary(t2, t3)
	// A pause this short (net_ticktime + 5 s) ends before the cluster declares the
	// leader down, so no follower takes over; the API's consumer check cannot read
	// the queue meanwhile (503 no_workers). What matters is that the farm is back
	// at once when the node is, unlike with a classic queue (TestClusterNodeLoss).
	rec2, ok := load.waitOK(t3, 5*time.Second)
	if !ok {
		t.Errorf("no 200 within 5s of resuming the request queue's leader: %s", load.summary(t3, time.Now()))
	}
	t.Logf("request queue leader %s paused for %v: callers saw %s while paused; first 200 %v after the resume",
		second.Name, t3.Sub(t2).Round(time.Second), pauseSeen, rec2.Round(time.Millisecond))

	// 3. Two nodes killed at once: the survivor is a minority and pauses itself
	// (pause_minority); every caller still gets a status, and the farm comes back
	// by itself once both nodes are restarted.
	var victims []*testbroker.Node
	for _, n := range c.Nodes {
		if len(victims) < 2 {
			victims = append(victims, n)
		}
	}
	t4 := time.Now()
	for _, n := range victims {
		n.Kill(t)
	}
	time.Sleep(10 * time.Second)
	down := load.summary(t4, time.Now())
	t5 := time.Now()
	for _, n := range victims {
		n.Start(t)
	}
	rec3 := load.awaitOK(t, t5, "after restarting the two killed nodes")
	t.Logf("two nodes (%s, %s) killed for 10s: callers saw %s; first 200 %v after the restarts began",
		victims[0].Name, victims[1].Name, down, rec3.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	stopLoad()

	okCount, jobs, lost, twice, refused := load.verify(t, spec, api)
	t.Logf("load for %v: %d sync answers (%d ok), %d jobs accepted (%d not succeeded, %d changed final state), submissions refused %s; first 200: leader kill %v (node down), leader pause %v after the resume, two-node kill %v after the restarts",
		time.Since(began).Round(time.Second), len(load.sync), okCount, jobs, lost, twice, refused,
		rec1.Round(time.Millisecond), rec2.Round(time.Millisecond), rec3.Round(time.Millisecond))
}
