package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/apidoc/apidoctest"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/worker"
)

// poisoned is the seed model, except that "poison" hangs until its run is
// interrupted: a job that takes its worker down with it.
type poisoned struct{ *model.Seed }

func (p poisoned) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if in := batch[0].Input(model.SeedInput); in != nil {
		if data, _ := in.Data.([]string); len(data) == 1 && data[0] == "poison" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}
	return p.Seed.Predict(ctx, batch)
}

// TestDeadLetterReplayedAgainstAFixedWorker: a poison job outlives its
// delivery limit (JOB_MAX_ATTEMPTS=1; its worker is stopped while it runs, so
// the broker delivers it again and the next worker fails it
// attempts_exhausted), is listed by the admin API with its reason, and once a
// fixed worker runs, is replayed and succeeds under the same id. Every answer is
// checked against the OpenAPI document.
func TestDeadLetterReplayedAgainstAFixedWorker(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	spec, err := apidoctest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	f := newInprocFarm(t)
	defer f.close()
	start := func(id string, m model.Predictor) func() {
		w := newWorker(t, f.vh, worker.Config{WorkerID: id, DrainTimeout: 200 * time.Millisecond,
			Models: []worker.ModelSpec{serve(seedRoute, m, 2, 1)},
			Jobs:   worker.JobsConfig{MaxAttempts: 1}})
		ln := listen(t)
		return f.run(func(ctx context.Context) { _ = w.Run(ctx, ln) })
	}
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, f.base+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		vreq, _ := http.NewRequest(method, f.base+path, strings.NewReader(body))
		if err := spec.Validate(vreq, []byte(body), resp, b); err != nil {
			t.Errorf("%s %s: %v\n%s", method, path, err, b)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	waitStatus := func(id, want string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, j := call("GET", "/jobs/"+id+"?wait=2", "")
			if j["status"] == want {
				return j
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s is %v, want %s", id, j["status"], want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	stopA := start("w-a", poisoned{model.NewSeed(model.SeedConfig{})})
	f.knowSeedReady(t)
	code, j := call("POST", "/jobs", `{"data":"poison"}`)
	if code != 202 {
		t.Fatalf("submit: %d %v", code, j)
	}
	id := j["id"].(string)
	waitStatus(id, "running")
	stopA() // the run is interrupted by the drain: the broker delivers it again
	stopB := start("w-b", poisoned{model.NewSeed(model.SeedConfig{})})
	dead := waitStatus(id, "failed")
	if e := dead["error"].(map[string]any); e["reason"] != "attempts_exhausted" {
		t.Fatalf("dead job: %v", dead)
	}

	code, page := call("GET", "/admin/deadletters", "")
	list, _ := page["dead_letters"].([]any)
	if code != 200 || page["count"] != 1.0 || len(list) != 1 {
		t.Fatalf("list: %d %v", code, page)
	}
	if d := list[0].(map[string]any); d["id"] != id || d["error"].(map[string]any)["reason"] != "attempts_exhausted" || d["worker"] != "w-b" {
		t.Fatalf("listed: %v", d)
	}
	if code, d := call("GET", "/admin/deadletters/"+id, ""); code != 200 || d["input"] == nil {
		t.Fatalf("show: %d %v", code, d)
	}

	// The fix: a worker whose model no longer hangs; then the replay.
	stopB()
	start("w-fixed", model.NewSeed(model.SeedConfig{}))
	f.knowSeedReady(t)
	// Through the CLI subcommand (`api deadletters`), as an operator would.
	var out, errb bytes.Buffer
	p := cli.Process{Args: []string{"deadletters", "--url=" + f.base, "list", "--all"}, Getenv: func(string) string { return "" },
		Stdout: &out, Stderr: &errb}
	if code := cli.DeadLetters(p); code != 0 || !strings.Contains(out.String(), id) || !strings.Contains(out.String(), "attempts_exhausted") {
		t.Fatalf("api deadletters list --all: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	p.Args = []string{"deadletters", "--url=" + f.base, "replay", id}
	if code := cli.DeadLetters(p); code != 0 {
		t.Fatalf("api deadletters replay: exit %d\n%s", code, errb.String())
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r["id"] != id || r["status"] != "queued" || len(r["history"].([]any)) != 1 {
		t.Fatalf("replay printed %s (%v)", out.String(), err)
	}
	done := waitStatus(id, "succeeded")
	if done["id"] != id || done["result"] == nil {
		t.Fatalf("replayed job: %v", done)
	}
	if code, _ := call("POST", "/admin/deadletters/"+id+"/replay", ""); code != 409 {
		t.Fatalf("replay of a succeeded job: %d", code)
	}
	errb.Reset()
	if code := cli.DeadLetters(p); code != 1 || !strings.Contains(errb.String(), "not_dead_letter") {
		t.Fatalf("api deadletters replay of a succeeded job: exit %d, %s", code, errb.String())
	}
	if _, page := call("GET", "/admin/deadletters", ""); page["count"] != 0.0 {
		t.Fatalf("after the replay: %v", page)
	}
}

// knowSeedReady waits until the API sees a live worker for the seed model.
func (f *inprocFarm) knowSeedReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if v, err := f.srv.Catalog().Resolve(seedRoute.Model, seedRoute.Version); err == nil && v.Ready() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the API never saw a seed worker")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
