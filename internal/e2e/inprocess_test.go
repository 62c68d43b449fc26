package e2e

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/worker"
)

// seedRoute is the repository's seed model, the lab's DEFAULT_MODEL.
var seedRoute = queue.Route{Model: "seed", Version: "1"}

// faulty fails or panics on chosen inputs and otherwise defers to the seed model.
type faulty struct{ *model.Seed }

func (f faulty) Predict(ctx context.Context, batch []*model.Request) ([]*model.Response, error) {
	if in := batch[0].Input(model.SeedInput); in != nil {
		switch in.Data.([]string)[0] {
		case "fail":
			return nil, errors.New("weights not loaded")
		case "panic":
			panic("index out of range in the model")
		}
	}
	return f.Seed.Predict(ctx, batch)
}

// serve is a ModelSpec for route answered by p.
func serve(r queue.Route, p model.Predictor, concurrency, jobConcurrency int) worker.ModelSpec {
	return worker.ModelSpec{Route: r, Concurrency: concurrency, JobConcurrency: jobConcurrency,
		Load: func(context.Context) (model.Predictor, error) { return p, nil }}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newAPI builds an API on vh with a bbolt job store of its own.
func newAPI(t *testing.T, vh *testbroker.Vhost, cfg api.Config) *api.Server {
	t.Helper()
	cfg.AMQP.URL = vh.AMQPURL
	if cfg.Jobs.Store == nil {
		st, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Jobs.Store = st
	}
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// newWorker builds a worker on vh.
func newWorker(t *testing.T, vh *testbroker.Vhost, cfg worker.Config) *worker.Worker {
	t.Helper()
	cfg.AMQP.URL = vh.AMQPURL
	if cfg.WorkerID == "" {
		cfg.WorkerID = "w-" + t.Name()
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// inProcess is an API and a worker running in the test's process.
type inProcess struct {
	srv         *api.Server
	w           *worker.Worker
	base, wbase string // the API's and the worker's base URLs
	stop        func() // stops the API, then the worker; returns once both have
}

// runInProcess serves an API from acfg and a worker from wcfg, both on vh, on
// loopback listeners until stop is called, and waits until the API sees the
// worker's models.
func runInProcess(t *testing.T, vh *testbroker.Vhost, acfg api.Config, wcfg worker.Config) *inProcess {
	t.Helper()
	w := newWorker(t, vh, wcfg)
	srv := newAPI(t, vh, acfg)
	wln, aln := listen(t), listen(t)
	wdone, adone := make(chan struct{}), make(chan struct{})
	go func() { defer close(wdone); _ = w.Run(context.Background(), wln) }()
	go func() { defer close(adone); _ = srv.Run(context.Background(), aln) }()
	p := &inProcess{srv: srv, w: w, base: "http://" + aln.Addr().String(), wbase: "http://" + wln.Addr().String(),
		stop: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_ = srv.Stop(ctx)
			<-adone
			_ = w.Stop(ctx)
			<-wdone
			client.CloseIdleConnections()
		}}
	deadline := time.Now().Add(15 * time.Second)
	for _, m := range wcfg.Models {
		for {
			v, err := srv.Catalog().Resolve(m.Route.Model, m.Route.Version)
			if err == nil && v.Ready() {
				break
			}
			if time.Now().After(deadline) {
				p.stop()
				t.Fatalf("the API never saw a worker serving %s", m.Route)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p
}

func TestModelErrorsAre502(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	spec := newFarmSpec(t)

	p := runInProcess(t, vh, api.Config{}, worker.Config{WorkerID: "faulty-1",
		Models: []worker.ModelSpec{serve(seedRoute, faulty{model.NewSeed(model.SeedConfig{})}, 2, 0)}})
	base := p.base

	for _, in := range []string{"fail", "panic"} {
		r := doChecked(t, spec, "POST", base+"/process", `{"data":"`+in+`"}`)
		m := r.json(t)
		if r.Status != 502 || m["reason"] != "model_error" {
			t.Fatalf("%s: %d %s", in, r.Status, r.Body)
		}
		if d, _ := m["detail"].(string); !strings.HasPrefix(d, "Model error: ") {
			t.Errorf("%s: detail %q", in, d)
		}
	}
	// The same through the v2 protocol: {"error"} bodies.
	r := doChecked(t, spec, "POST", base+"/v2/models/seed/infer", `{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["fail"]}]}`)
	if m := r.json(t); r.Status != 502 || m["reason"] != "model_error" || !strings.Contains(m["error"].(string), "weights not loaded") {
		t.Fatalf("v2 model error: %d %s", r.Status, r.Body)
	}
	// The worker survived and still answers.
	r = doChecked(t, spec, "POST", base+"/process", `{"data":"fine"}`)
	checkPrediction(t, r, "fine", r.Header.Get("X-Request-ID"))
	if st := p.w.Consumer().Stats(); st.Failed != 3 || st.OK != 1 {
		t.Errorf("worker stats %+v", st)
	}
	p.stop()
}
