package e2e

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/worker"
)

// faulty fails or panics on chosen inputs and otherwise defers to the seed model.
type faulty struct{ *model.Seed }

func (f faulty) Predict(ctx context.Context, in []model.Input) ([]model.Output, error) {
	switch in[0].Data {
	case "fail":
		return nil, errors.New("weights not loaded")
	case "panic":
		panic("index out of range in the model")
	}
	return f.Seed.Predict(ctx, in)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// inProcess is an API and a worker running in the test's process.
type inProcess struct {
	srv         *api.Server
	w           *worker.Worker
	base, wbase string // the API's and the worker's base URLs
	stop        func() // stops the API, then the worker; returns once both have
}

// runInProcess builds an API from acfg and a worker from wcfg around m, both on
// vh (the AMQP URLs are filled in), serves them on loopback listeners until stop is
// called, and waits until the API sees the worker.
func runInProcess(t *testing.T, vh *testbroker.Vhost, acfg api.Config, wcfg worker.Config, m model.Predictor) *inProcess {
	t.Helper()
	wcfg.Queue.URL, acfg.Queue.URL = vh.AMQPURL, vh.AMQPURL
	w, err := worker.New(wcfg, m)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wstop := context.WithCancel(context.Background())
	actx, astop := context.WithCancel(context.Background())
	wdone, adone := make(chan struct{}), make(chan struct{})
	wln, aln := listen(t), listen(t)
	go func() { defer close(wdone); _ = w.Run(wctx, wln) }()
	go func() { defer close(adone); _ = srv.Run(actx, aln) }()
	p := &inProcess{srv: srv, w: w, base: "http://" + aln.Addr().String(), wbase: "http://" + wln.Addr().String(),
		stop: func() { astop(); <-adone; wstop(); <-wdone; client.CloseIdleConnections() }}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Client().State().Workers != 1 {
		if time.Now().After(deadline) {
			p.stop()
			t.Fatal("worker never seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

func TestModelErrorsAre502(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	spec := newFarmSpec(t)

	p := runInProcess(t, vh, api.Config{},
		worker.Config{Queue: queue.ConsumerConfig{WorkerID: "faulty-1"}}, faulty{model.NewSeed(model.SeedConfig{})})
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
	// The worker survived both and still answers.
	r := doChecked(t, spec, "POST", base+"/process", `{"data":"fine"}`)
	checkPrediction(t, r, "fine", r.Header.Get("X-Request-ID"))
	if st := p.w.Consumer().Stats(); st.Failed != 2 || st.OK != 1 {
		t.Errorf("worker stats %+v", st)
	}

	p.stop()
}
