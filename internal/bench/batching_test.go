package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseBatchMetrics(t *testing.T) {
	text := `# HELP warren_worker_batch_size x
warren_worker_batch_size_sum{model="sim",queue="warren.req.sim.v1",version="1",vhost="v"} 200
warren_worker_batch_size_count{model="sim",queue="warren.req.sim.v1",version="1",vhost="v"} 10
warren_worker_batch_size_sum{model="sim",queue="warren.job.sim.v1",version="1",vhost="v"} 50
warren_worker_batch_size_sum{model="sim1",queue="warren.req.sim1.v1",version="1",vhost="v"} 7
warren_worker_model_duration_seconds_sum{model="sim",version="1",vhost="v"} 0.25
warren_worker_model_duration_seconds_count{model="sim",version="1",vhost="v"} 10
`
	var c batchCounters
	if err := parseBatchMetrics(strings.NewReader(text), "sim", &c); err != nil {
		t.Fatal(err)
	}
	if c != (batchCounters{batchSum: 200, batchCount: 10, computeSum: 0.25, computeCount: 10}) {
		t.Fatalf("%+v", c)
	}
}

func TestComputeStageShare(t *testing.T) {
	text := `warren_rpc_stage_duration_seconds_bucket{model="sim",queue="q",stage="compute",version="1",vhost="v",le="0.025"} 10
warren_rpc_stage_duration_seconds_bucket{model="sim",queue="q",stage="compute",version="1",vhost="v",le="0.05"} 99
warren_rpc_stage_duration_seconds_bucket{model="sim",queue="q",stage="compute",version="1",vhost="v",le="0.1"} 100
warren_rpc_stage_duration_seconds_bucket{model="sim",queue="q",stage="compute",version="1",vhost="v",le="+Inf"} 100
warren_rpc_stage_duration_seconds_bucket{model="sim",queue="q",stage="queue_wait",version="1",vhost="v",le="+Inf"} 5
warren_rpc_stage_duration_seconds_bucket{model="sim1",queue="q",stage="compute",version="1",vhost="v",le="+Inf"} 7
`
	m, err := parseComputeStage(strings.NewReader(text), "sim")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 4 || m[math.Inf(1)] != 100 || m[0.05] != 99 {
		t.Fatalf("%v", m)
	}
	row := &BatchRow{InWorker: m}
	if le, share := row.inWorkerShare(55 * time.Millisecond); le != 0.05 || share != 0.99 {
		t.Fatalf("le %v share %v, want 0.05 and 0.99", le, share)
	}
	if le, _ := row.inWorkerShare(10 * time.Millisecond); le != 0 {
		t.Fatalf("no bound under 10ms, got %v", le)
	}
}
