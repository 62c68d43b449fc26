//go:build porting

package e2e

import (
	"io"
	"math"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/api"
	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/worker"
)

// families scrapes a /metrics endpoint and parses the text format.
func families(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// sample returns the value of the series of name whose labels include want: a
// counter's or gauge's value, a histogram's sample count. found is false if no
// series matches.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, sum float64, found bool) {
	f, ok := fams[name]
	if !ok {
		return 0, 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), 0, true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), 0, true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), m.Histogram.GetSampleSum(), true
		}
	}
	return 0, 0, false
}

func mustSample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	v, _, ok := sample(fams, name, want)
	if !ok {
		t.Fatalf("no series %s%v", name, want)
	}
	return v
}

// TestMetricsCountWhatHappened drives a known mix of calls through an in-process
// farm and checks that both /metrics endpoints say exactly that, with the vhost and
// queue labels RabbitMQ's plugin uses and every reason present from the start.
func TestMetricsCountWhatHappened(t *testing.T) {
	integration(t)
	defer goleak.VerifyNone(t, testbroker.LeakOptions()...)
	vh := testbroker.NewVhost(t)
	spec := newFarmSpec(t)

	p := runInProcess(t, vh, api.Config{},
		worker.Config{Queue: queue.ConsumerConfig{WorkerID: "metrics-1", Concurrency: 3}}, faulty{model.NewSeed(model.SeedConfig{})})
	base, wbase, stop := p.base, p.wbase, p.stop
	defer stop()
	lv := map[string]string{"vhost": vh.Name, "queue": queue.DefaultQueue}

	// Before any call: every reason is there, at zero.
	fams := families(t, base+"/metrics")
	for _, r := range []string{"ok", "no_workers", "queue_full", "broker_unavailable", "draining", "timeout", "model_error"} {
		if v := mustSample(t, fams, "warren_rpc_requests_total", map[string]string{"vhost": vh.Name, "queue": queue.DefaultQueue, "reason": r}); v != 0 {
			t.Fatalf("reason %s starts at %v", r, v)
		}
	}

	for _, in := range []string{"a", "b", "c", "fail"} {
		doChecked(t, spec, "POST", base+"/process", `{"data":"`+in+`"}`)
	}
	doChecked(t, spec, "POST", base+"/process", `{"nodata":1}`) // 422, never reaches the farm
	if r := doChecked(t, nil, "GET", base+"/no/such/path/12345", ""); r.Status != 404 {
		t.Fatalf("unknown path: %d", r.Status)
	}

	fams = families(t, base+"/metrics")
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range lv {
			m[k] = v
		}
		return m
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"warren_rpc_requests_total", with("reason", "ok"), 3},
		{"warren_rpc_requests_total", with("reason", "model_error"), 1},
		{"warren_rpc_requests_total", with("reason", "no_workers"), 0},
		{"warren_rpc_duration_seconds", lv, 4},
		{"warren_rpc_stage_duration_seconds", with("stage", "queue_wait"), 3},
		{"warren_rpc_stage_duration_seconds", with("stage", "compute"), 3},
		{"warren_rpc_stage_duration_seconds", with("stage", "reply_transit"), 3},
		{"warren_publish_confirm_duration_seconds", lv, 4},
		{"warren_worker_slots", lv, 3},
		{"warren_queue_consumers", lv, 1},
		{"warren_broker_connected", map[string]string{"vhost": vh.Name}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "200"}, 3},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "502"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "/process", "method": "POST", "code": "422"}, 1},
		{"warren_http_requests_total", map[string]string{"route": "unmatched", "method": "GET", "code": "404"}, 1},
	}
	for _, c := range checks {
		if got := mustSample(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The three stages of each answered call add up to its round trip (which the
	// duration histogram also holds, with the failed call on top).
	var stageSum float64
	for _, st := range []string{"queue_wait", "compute", "reply_transit"} {
		_, s, _ := sample(fams, "warren_rpc_stage_duration_seconds", with("stage", st))
		if s < 0 {
			t.Errorf("stage %s sum %v < 0", st, s)
		}
		stageSum += s
	}
	_, total, _ := sample(fams, "warren_rpc_duration_seconds", lv)
	if stageSum <= 0 || stageSum > total+1e-6 {
		t.Errorf("stage sum %v vs total %v", stageSum, total)
	}
	if _, ok := fams["warren_build_info"]; !ok {
		t.Error("no warren_build_info")
	}

	wf := families(t, wbase+"/metrics")
	wchecks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"warren_worker_messages_consumed_total", lv, 4},
		{"warren_worker_messages_handled_total", with("outcome", "ok"), 3},
		{"warren_worker_messages_handled_total", with("outcome", "error"), 1},
		{"warren_worker_messages_handled_total", with("outcome", "expired"), 0},
		{"warren_worker_processing_duration_seconds", lv, 4},
		{"warren_worker_model_duration_seconds", lv, 4},
		{"warren_worker_concurrency", lv, 3},
		{"warren_worker_in_flight", lv, 0},
		{"warren_worker_draining", map[string]string{"vhost": vh.Name}, 0},
		{"warren_broker_reconnects_total", map[string]string{"vhost": vh.Name}, 0},
	}
	for _, c := range wchecks {
		if got := mustSample(t, wf, c.name, c.labels); got != c.want {
			t.Errorf("worker %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	_, comp, _ := sample(fams, "warren_rpc_stage_duration_seconds", with("stage", "compute"))
	_, proc, _ := sample(wf, "warren_worker_processing_duration_seconds", lv)
	if comp > proc+1e-3 || math.IsNaN(comp) {
		t.Errorf("compute seen by the API (%v s) exceeds the worker's processing time (%v s)", comp, proc)
	}
}
