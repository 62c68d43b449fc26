package deploycheck

// docker-compose.yml, loaded with compose-go (the loader of the Docker Compose CLI:
// schema validation, interpolation with its ${VAR:-default}s, YAML anchors and merge
// keys, normalisation, paths resolved against the project directory) and checked
// against pkg/config, the Dockerfile, the model repository (pkg/repository) and the
// Prometheus and Grafana files it mounts.
//
// A worker pool is a service that runs the worker binary (built from the
// Dockerfile's worker target); its MODELS are the models it serves, from the model
// repository at its MODEL_REPOSITORY (the image's copy of models/, or a bind mount).

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"go.yaml.in/yaml/v4"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/repository"
)

// composeDefaultStopGrace is what Compose waits after SIGTERM when a service sets no
// stop_grace_period.
const composeDefaultStopGrace = 10 * time.Second

// composeImagePorts lists what the third-party images listen on, by repository.
var composeImagePorts = map[string][]int{
	"library/rabbitmq": {5672, 15672, 15692}, // AMQP, management, prometheus plugin
	"library/redis":    {6379},
	"prom/prometheus":  {9090},
	"grafana/grafana":  {3000},
}

// composeDataVolumes: where a stateful image keeps its data, by repository; the
// check wants a named volume there.
var composeDataVolumes = map[string]string{
	"library/rabbitmq": "/var/lib/rabbitmq",
	"library/redis":    "/data",
}

func TestCompose(t *testing.T) {
	root := repoRoot(t)
	p := composeLoadFile(t, root)
	for _, prob := range composeCheck(p, root) {
		t.Error(prob)
	}
	for _, name := range []string{"rabbitmq", "redis", config.API, "prometheus", "grafana"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("no service %s", name)
		}
	}
	if s, err := p.GetService(config.API); err == nil && (s.Build == nil || s.Build.Target != config.API) {
		t.Errorf("service %s is not built from the Dockerfile's %s target", config.API, config.API)
	}
	if api, err := p.GetService(config.API); err == nil {
		// Several API replicas need the Redis job store (DATA_DIR is one replica's).
		if u := composeEnv(api, "REDIS_URL"); u == "" {
			t.Error("service api: REDIS_URL is not set")
		}
	}

	// The file shows per-model pools: at least two worker services, each built from
	// the worker target, naming its models, and together serving every model of the
	// repository (a model no pool serves would only ever answer no_workers).
	pools := composePools(p)
	if len(pools) < 2 {
		t.Errorf("worker pools %v, want at least two (one model each, each scaled on its own)", pools)
	}
	served := map[string]bool{}
	for _, name := range pools {
		s := p.Services[name]
		if s.Build == nil || s.Build.Target != config.Worker {
			t.Errorf("service %s is not built from the Dockerfile's %s target", name, config.Worker)
		}
		models := composeModels(s)
		if len(models) == 0 {
			t.Errorf("service %s: no MODELS: with several pools each names the models it serves", name)
		}
		for _, m := range models {
			served[m] = true
		}
	}
	all, err := repository.Scan(filepath.Join(root, dockerfileModelsDir), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if !served[m.Name] {
			t.Errorf("model %s of %s/ is served by no worker pool", m.Name, dockerfileModelsDir)
		}
	}
}

// TestComposePoolsMount: a pool may serve a repository bind-mounted over (or
// beside) the image's; the check reads the mounted directory.
func TestComposePoolsMount(t *testing.T) {
	root := repoRoot(t)
	const mounted = `
services:
  rabbitmq:
    image: rabbitmq:3.10.8-management
    hostname: rabbitmq
    volumes: [rabbitmq-data:/var/lib/rabbitmq]
    healthcheck: {test: ["CMD", "rabbitmq-diagnostics", "-q", "ping"]}
  worker-mine:
    build: {context: ., target: worker}
    environment:
      AMQP_URL: amqp://guest:guest@rabbitmq:5672/
      MODEL_REPOSITORY: /srv/models
      MODELS: digits
      DRAIN_TIMEOUT: 5s
    volumes:
      - ./models:/srv/models:ro
    depends_on: {rabbitmq: {condition: service_healthy}}
    healthcheck: {test: ["CMD", "/worker", "healthcheck"]}
  worker-over:
    build: {context: ., target: worker}
    environment:
      AMQP_URL: amqp://guest:guest@rabbitmq:5672/
      MODELS: seed
      DRAIN_TIMEOUT: 5s
    volumes:
      - ./models:/models:ro
    depends_on: {rabbitmq: {condition: service_healthy}}
    healthcheck: {test: ["CMD", "/worker", "healthcheck"]}
volumes:
  rabbitmq-data:
`
	p, err := composeLoad(context.Background(), root, []byte(mounted), "mounted")
	if err != nil {
		t.Fatal(err)
	}
	if probs := composeCheckPools(p); len(probs) > 0 {
		t.Fatalf("pools with mounted repositories refused:\n%s", strings.Join(probs, "\n"))
	}
	// The same pool with its mount pointing at a model's directory, not a repository.
	p, err = composeLoad(context.Background(), root, []byte(strings.Replace(mounted, "./models:/srv/models:ro", "./models/digits:/srv/models:ro", 1)), "mounted")
	if err != nil {
		t.Fatal(err)
	}
	probs := composeCheckPools(p)
	if want := `service worker-mine: MODELS=digits: /srv/models (models/digits): model "digits" is not in the repository`; !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, want) }) {
		t.Errorf("want a problem containing %q, got:\n%s", want, strings.Join(probs, "\n"))
	}
}

// TestComposePrometheus: every scrape target of the Compose Prometheus configuration
// is a service of the file, on a port that service listens on, and the file and its
// rule files are what the prometheus service mounts.
func TestComposePrometheus(t *testing.T) {
	root := repoRoot(t)
	p := composeLoadFile(t, root)
	prom, err := p.GetService("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	host, ok := composeHostPath(prom, "/etc/prometheus/prometheus.yml")
	if !ok {
		t.Fatal("service prometheus: nothing is mounted at /etc/prometheus/prometheus.yml")
	}
	if want := filepath.Join(root, "deployments", "prometheus", "prometheus.yml"); host != want {
		t.Errorf("service prometheus: /etc/prometheus/prometheus.yml is %s, want %s", host, want)
	}
	src, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	for _, prob := range composeCheckPrometheus(p, src, filepath.Dir(host)) {
		t.Error(prob)
	}
}

// TestComposeGrafana: provisioning and dashboards mounted where Grafana and the
// provisioning files look, the datasource pointing at the prometheus service, the
// home dashboard a mounted file, anonymous viewers.
func TestComposeGrafana(t *testing.T) {
	root := repoRoot(t)
	p := composeLoadFile(t, root)
	g, err := p.GetService("grafana")
	if err != nil {
		t.Fatal(err)
	}
	if composeEnv(g, "GF_AUTH_ANONYMOUS_ENABLED") != "true" || composeEnv(g, "GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer" {
		t.Error("service grafana: anonymous access is not on with the Viewer role")
	}
	// The datasource.
	ds, ok := composeHostPath(g, "/etc/grafana/provisioning/datasources/prometheus.yml")
	if !ok {
		t.Fatal("service grafana: the datasource provisioning file is not mounted")
	}
	var dsFile struct {
		Datasources []struct {
			Name, Type, URL string
		}
	}
	composeReadYAML(t, ds, &dsFile)
	if len(dsFile.Datasources) == 0 {
		t.Fatalf("%s: no datasources", ds)
	}
	for _, d := range dsFile.Datasources {
		u, err := url.Parse(d.URL)
		if err != nil {
			t.Errorf("%s: datasource %s: %v", ds, d.Name, err)
			continue
		}
		if prob := composeCheckHostPort(p, u.Hostname(), u.Port(), "datasource "+d.Name); prob != "" {
			t.Errorf("%s: %s", ds, prob)
		}
	}
	// The dashboards: the provider's path is a mounted directory holding them.
	dp, ok := composeHostPath(g, "/etc/grafana/provisioning/dashboards/warren.yml")
	if !ok {
		t.Fatal("service grafana: the dashboard provisioning file is not mounted")
	}
	var dpFile struct {
		Providers []struct {
			Name    string
			Options struct{ Path string }
		}
	}
	composeReadYAML(t, dp, &dpFile)
	if len(dpFile.Providers) == 0 {
		t.Fatalf("%s: no providers", dp)
	}
	for _, pr := range dpFile.Providers {
		dir, ok := composeHostPath(g, pr.Options.Path)
		if !ok {
			t.Errorf("service grafana: provider %s reads %s, where nothing is mounted", pr.Name, pr.Options.Path)
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(m) == 0 {
			t.Errorf("service grafana: provider %s reads %s (%s), which holds no dashboards", pr.Name, pr.Options.Path, dir)
		}
	}
	home := composeEnv(g, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
	if h, ok := composeHostPath(g, home); !ok {
		t.Errorf("service grafana: the home dashboard %q is not a mounted file", home)
	} else if _, err := os.Stat(h); err != nil {
		t.Errorf("service grafana: the home dashboard: %v", err)
	}
}

// TestComposeRabbitMQ: the plugins the farm needs are enabled by the mounted file and
// warren's rabbitmq.conf is added to conf.d (so the image's own defaults stay).
func TestComposeRabbitMQ(t *testing.T) {
	root := repoRoot(t)
	p := composeLoadFile(t, root)
	r, err := p.GetService("rabbitmq")
	if err != nil {
		t.Fatal(err)
	}
	plugins, ok := composeHostPath(r, "/etc/rabbitmq/enabled_plugins")
	if !ok {
		t.Fatal("service rabbitmq: no enabled_plugins mounted at /etc/rabbitmq/enabled_plugins")
	}
	b, err := os.ReadFile(plugins)
	if err != nil {
		t.Fatal(err)
	}
	// An Erlang list term: [a,b].
	term := strings.TrimSpace(string(b))
	if !strings.HasPrefix(term, "[") || !strings.HasSuffix(term, "].") {
		t.Fatalf("%s: %q is not an Erlang list term like [rabbitmq_management].", plugins, term)
	}
	var enabled []string
	for _, f := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(term, "["), "]."), ",") {
		enabled = append(enabled, strings.TrimSpace(f))
	}
	// management: MANAGEMENT_URL (queue bound, capacity); prometheus: port 15692.
	for _, want := range []string{"rabbitmq_management", "rabbitmq_prometheus"} {
		if !slices.Contains(enabled, want) {
			t.Errorf("%s: %s is not enabled (%v)", plugins, want, enabled)
		}
	}
	conf := filepath.Join(root, "deployments", "rabbitmq", "rabbitmq.conf")
	found := false
	for _, v := range r.Volumes {
		if v.Type == types.VolumeTypeBind && v.Source == conf {
			found = true
			if dir, file := filepath.Split(v.Target); dir != "/etc/rabbitmq/conf.d/" || !strings.HasSuffix(file, ".conf") {
				t.Errorf("service rabbitmq: %s is mounted at %s, want /etc/rabbitmq/conf.d/<name>.conf", conf, v.Target)
			}
		}
	}
	if !found {
		t.Errorf("service rabbitmq: %s is not mounted", conf)
	}
}

// TestComposeChecksFail feeds a small broken compose file through the same checks
// and expects every problem in it to be reported.
func TestComposeChecksFail(t *testing.T) {
	root := repoRoot(t)
	const broken = `
services:
  rabbitmq:
    image: rabbitmq:latest
    environment:
      RABBITMQ_DEFAULT_USER: warren
      RABBITMQ_DEFAULT_PASS: warren
    healthcheck:
      test: ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    volumes:
      - /tmp/rabbitmq:/var/lib/rabbitmq
  redis:
    image: redis
    healthcheck:
      disable: true
  worker:
    container_name: warren-worker
    build:
      context: .
      target: worker
    ports:
      - "8001:8001"
    environment:
      AMQP_URL: amqp://warren:warren@rabbit:5672/
      BOGUS: "1"
      REDIS_URL: redis://redis:6379/0
      DRAIN_TIMEOUT: 20s
    depends_on:
      - rabbitmq
  worker-b:
    build:
      context: .
      target: worker
    environment:
      MODELS: "digits, nosuch"
    healthcheck:
      test: ["CMD", "/worker", "healthcheck"]
  worker-c:
    build:
      context: .
      target: worker
    environment:
      MODELS: seed,bad.name
      MODEL_REPOSITORY: /srv/models
    healthcheck:
      test: ["CMD", "/worker", "healthcheck"]
  worker-d:
    build:
      context: .
      target: worker
    environment:
      MODELS: digits
      MODEL_REPOSITORY: models
    healthcheck:
      test: ["CMD", "/worker", "healthcheck"]
  api:
    build:
      context: .
      target: apiserver
    environment:
      AMQP_URL: amqp://guest:guest@rabbitmq:5673/
      DEFAULT_MODEL: lab
      DRAIN_TIMEOUT: 45s
    stop_grace_period: 30s
    healthcheck:
      test: curl -f http://localhost:8000/ready
    volumes:
      - ./no-such-dir:/config
    depends_on:
      rabbitmq:
        condition: service_started
`
	p, err := composeLoad(context.Background(), root, []byte(broken), "broken")
	if err != nil {
		t.Fatal(err)
	}
	probs := composeCheck(p, root)
	for _, want := range []string{
		"service worker: container_name",
		`service worker: publishes port 8001 on the host`,
		"service worker: no healthcheck",
		"service worker: environment BOGUS is not in pkg/config",
		"service worker: environment REDIS_URL is not read by worker",
		"service worker: depends_on rabbitmq with condition service_started",
		"service worker: stop_grace_period 10s is not longer than DRAIN_TIMEOUT 20s",
		`service worker: AMQP_URL: host "rabbit" is not a service`,
		`service rabbitmq: image "rabbitmq:latest" is not pinned`,
		`service redis: image "redis" is not pinned`,
		"service redis: healthcheck disabled",
		"service rabbitmq: /var/lib/rabbitmq is not a named volume",
		"service redis: /data is not a named volume",
		"service rabbitmq: no hostname",
		"service api: stop_grace_period 30s is not longer than DRAIN_TIMEOUT 45s",
		`service api: healthcheck ["CMD-SHELL" "curl -f http://localhost:8000/ready"] does not run ["/api" "healthcheck"]`,
		"no-such-dir does not exist",
		"service api: build target apiserver is not a stage of",
		"service api: depends_on rabbitmq with condition service_started",
		`service api: AMQP_URL: port 5673 of rabbitmq`,
		`service api: AMQP_URL: user "guest" is not rabbitmq's RABBITMQ_DEFAULT_USER "warren"`,
		`service worker-b: MODELS=digits, nosuch: /models (models): model "nosuch" is not in the repository (it has digits, seed)`,
		`service worker-c: MODELS: "bad.name" is not a valid model name`,
		`service worker-c: MODEL_REPOSITORY /srv/models: neither the image's model repository (/models) nor a bind mount`,
		`service worker-d: MODEL_REPOSITORY "models" is not an absolute path`,
		"model digits is served by several pools (worker, worker-b, worker-d)",
		"model seed is served by several pools (worker, worker-c)",
		`service api: DEFAULT_MODEL lab is served by no worker pool (pools: worker (every model), worker-b [digits nosuch], worker-c [seed bad.name], worker-d [digits])`,
	} {
		if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("want a problem containing %q", want)
		}
	}
	if t.Failed() {
		t.Logf("reported:\n%s", strings.Join(probs, "\n"))
	}

	// One pool left out of the shipped configuration's DNS names.
	good := composeLoadFile(t, root)
	promDir := filepath.Join(root, "deployments", "prometheus")
	shipped, err := os.ReadFile(filepath.Join(promDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(shipped, []byte("names: [worker-seed, worker-digits]")) {
		t.Fatal("test bug: prometheus.yml's worker names are not the ones this test edits")
	}
	probs = composeCheckPrometheus(good, bytes.Replace(shipped, []byte("names: [worker-seed, worker-digits]"), []byte("names: [worker-seed]"), 1), promDir)
	if want := "service worker-digits (worker) is not scraped"; !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, want) }) {
		t.Errorf("prometheus without worker-digits: want a problem containing %q, got:\n%s", want, strings.Join(probs, "\n"))
	}

	// Prometheus targets that are no service, or not on the service's port.
	const promBroken = `
rule_files: [no-such-rules.yml]
scrape_configs:
  - job_name: api
    static_configs:
      - targets: ["api:9000", "localhost:8000"]
  - job_name: workers
    dns_sd_configs:
      - names: [workers]
        type: A
        port: 8001
      - names: [worker]
        type: SRV
`
	probs = composeCheckPrometheus(good, []byte(promBroken), filepath.Join(root, "deployments", "prometheus"))
	for _, want := range []string{
		"rule file no-such-rules.yml",
		"job api: target api:9000: port 9000 of api",
		`job api: target localhost:8000: host "localhost" is not a service`,
		`job workers: dns_sd name "workers": host "workers" is not a service`,
		"job workers: dns_sd type SRV",
		"service worker-seed (worker) is not scraped",
		"service worker-digits (worker) is not scraped",
		"service api (api) is not scraped",
	} {
		if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("prometheus: want a problem containing %q, got:\n%s", want, strings.Join(probs, "\n"))
		}
	}
}

// composeLoadFile loads the repository's docker-compose.yml.
func composeLoadFile(t testing.TB, root string) *types.Project {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\nversion:")) || bytes.HasPrefix(b, []byte("version:")) {
		t.Error("docker-compose.yml has a version: key (obsolete)")
	}
	p, err := composeLoad(context.Background(), root, b, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// composeLoad loads content as root/docker-compose.yml the way `docker compose`
// does, with an empty environment, so that the file's own ${VAR:-default}s apply.
// name, when not empty, is the project name (else the file's name: key).
func composeLoad(ctx context.Context, root string, content []byte, name string) (*types.Project, error) {
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml"), Content: content}},
		Environment: types.Mapping{},
	}
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		if name != "" {
			o.SetProjectName(name, true)
		}
	})
}

// composeCheck returns every problem of p that does not depend on the files it
// mounts (those have tests of their own).
func composeCheck(p *types.Project, root string) []string {
	var probs []string
	names := p.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		s := p.Services[name]
		bad := func(format string, args ...any) {
			probs = append(probs, fmt.Sprintf("service %s: ", name)+fmt.Sprintf(format, args...))
		}
		bin := composeBinary(s)

		// Image: built from the Dockerfile's stage, or pulled with a pinned tag.
		if s.Build != nil {
			probs = append(probs, composeCheckBuild(name, s.Build)...)
		} else if ref, err := reference.ParseNormalizedNamed(s.Image); err != nil {
			bad("image %q: %v", s.Image, err)
		} else if why := dockerfileUnpinned(ref); why != "" {
			bad("image %q is not pinned (%s)", s.Image, why)
		}

		// Scalable: Compose refuses --scale with a container_name, and a second
		// replica cannot bind the same host port.
		if bin == config.Worker || s.GetScale() > 1 {
			if s.ContainerName != "" {
				bad("container_name %q: the service cannot be scaled", s.ContainerName)
			}
			for _, port := range s.Ports {
				if port.Published != "" {
					bad("publishes port %d on the host (as %s): the service cannot be scaled", port.Target, port.Published)
				}
			}
		}

		// Health: every service has a check, binaries use their own subcommand.
		switch hc := s.HealthCheck; {
		case hc == nil || len(hc.Test) == 0 && !hc.Disable:
			bad("no healthcheck (depends_on service_healthy needs one)")
		case hc.Disable || hc.Test[0] == "NONE":
			bad("healthcheck disabled")
		case bin != "" && (hc.Test[0] != "CMD" || !dockerfileIsHealthcheck(hc.Test[1:], "/"+bin)):
			bad("healthcheck %q does not run [%q \"healthcheck\"] in exec form", []string(hc.Test), "/"+bin)
		}

		// Start order: on health, not on start.
		deps := make([]string, 0, len(s.DependsOn))
		for d := range s.DependsOn {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if c := s.DependsOn[d].Condition; c != types.ServiceConditionHealthy {
				bad("depends_on %s with condition %s, want %s", d, c, types.ServiceConditionHealthy)
			}
		}

		// Environment of the binaries: only variables the binary reads; a stop grace
		// period that lets DRAIN_TIMEOUT run out.
		if bin != "" {
			keys := make([]string, 0, len(s.Environment))
			for k := range s.Environment {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				switch v, ok := config.Lookup(k); {
				case !ok:
					bad("environment %s is not in pkg/config's table", k)
				case !v.ReadBy(bin):
					bad("environment %s is not read by %s", k, bin)
				}
			}
			drainS := composeEnvOr(s, config.DrainTimeout.Env, config.DrainTimeout.Describe().Default(bin))
			drain, err := time.ParseDuration(drainS)
			if err != nil {
				bad("DRAIN_TIMEOUT %q: %v", drainS, err)
			}
			grace := composeDefaultStopGrace
			if s.StopGracePeriod != nil {
				grace = time.Duration(*s.StopGracePeriod)
			}
			if err == nil && grace <= drain {
				bad("stop_grace_period %s is not longer than DRAIN_TIMEOUT %s: Compose would kill the process mid-drain", grace, drain)
			}
		}

		// URLs in the environment: a service of this file, on a port it listens
		// on; the broker's credentials where they go to the broker.
		keys := make([]string, 0, len(s.Environment))
		for k, v := range s.Environment {
			if v != nil && strings.Contains(*v, "://") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			probs = append(probs, composeCheckURL(p, name, k, *s.Environment[k])...)
		}

		// Volumes: named volumes for data; bind mounts of files in the repository.
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			rel, err := filepath.Rel(root, v.Source)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				bad("bind mount %s is outside the repository", v.Source)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				bad("bind mount source %s does not exist", rel)
			}
		}
		repo := composeImageRepo(s)
		if target, ok := composeDataVolumes[repo]; ok {
			if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
				_, declared := p.Volumes[v.Source]
				return v.Type == types.VolumeTypeVolume && v.Target == target && declared
			}) {
				bad("%s is not a named volume (declared under volumes:)", target)
			}
		}
		// RabbitMQ keeps its data under its node name, rabbit@<hostname>: without a
		// fixed hostname every new container starts an empty node in the volume.
		if repo == "library/rabbitmq" && s.Hostname == "" {
			bad("no hostname: the node name, and with it the data in the volume, changes with every container")
		}
	}
	return append(probs, composeCheckPools(p)...)
}

// composePools returns the names of the services that run the worker binary (the
// worker pools), sorted.
func composePools(p *types.Project) []string {
	var pools []string
	for name, s := range p.Services {
		if composeBinary(s) == config.Worker {
			pools = append(pools, name)
		}
	}
	sort.Strings(pools)
	return pools
}

// composeModels is a worker service's MODELS, split as the worker splits it
// (commas, spaces trimmed, empty items dropped).
func composeModels(s types.ServiceConfig) []string {
	var out []string
	for item := range strings.SplitSeq(composeEnv(s, config.Models.Env), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// composeCheckPools checks the worker pools against the model repositories they
// read: each pool's MODEL_REPOSITORY is the image's copy of models/ or a bind
// mount, its MODELS are valid names of models in that repository (pkg/repository
// reads and validates them as the worker would), no model is served by two pools
// (each model version's queues belong to one pool, scaled on its own), and every
// API's DEFAULT_MODEL is served by a pool.
func composeCheckPools(p *types.Project) []string {
	var probs []string
	pools := composePools(p)
	if len(pools) == 0 {
		return []string{"no worker service (no service runs the worker binary)"}
	}
	servedBy := map[string][]string{} // model → pools
	var listed []string
	for _, name := range pools {
		s := p.Services[name]
		bad := func(format string, args ...any) {
			probs = append(probs, fmt.Sprintf("service %s: ", name)+fmt.Sprintf(format, args...))
		}
		names := composeModels(s)
		if len(names) == 0 {
			listed = append(listed, name+" (every model)")
		} else {
			listed = append(listed, fmt.Sprintf("%s %v", name, names))
		}
		ok := true
		for _, m := range names {
			if !config.Models.Pattern.MatchString(m) {
				bad("MODELS: %q is not a valid model name (%s)", m, config.Models.Pattern)
				ok = false
			}
		}
		dir, host, prob := composeModelRepository(s)
		if prob != "" {
			bad("%s", prob)
			ok = false
		}
		served := names
		if ok {
			models, err := repository.Scan(host, names)
			if err != nil {
				rel := host
				if r, err := filepath.Rel(p.WorkingDir, host); err == nil {
					rel = r
				}
				msg := strings.ReplaceAll(strings.ReplaceAll(err.Error(), host, dir+" ("+rel+")"), "\n", "; ")
				bad("MODELS=%s: %s", composeEnv(s, config.Models.Env), msg)
			} else {
				served = nil
				for _, m := range models {
					if !slices.Contains(served, m.Name) {
						served = append(served, m.Name)
					}
				}
			}
		}
		for _, m := range served {
			servedBy[m] = append(servedBy[m], name)
		}
	}
	models := make([]string, 0, len(servedBy))
	for m := range servedBy {
		models = append(models, m)
	}
	sort.Strings(models)
	for _, m := range models {
		if len(servedBy[m]) > 1 {
			probs = append(probs, fmt.Sprintf("model %s is served by several pools (%s): each model's queues belong to one pool, scaled on its own", m, strings.Join(servedBy[m], ", ")))
		}
	}
	names := p.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		s := p.Services[name]
		if composeBinary(s) != config.API {
			continue
		}
		def := composeEnvOr(s, config.DefaultModel.Env, config.DefaultModel.DefaultFor(config.API))
		if len(servedBy[def]) == 0 {
			probs = append(probs, fmt.Sprintf("service %s: DEFAULT_MODEL %s is served by no worker pool (pools: %s): /process would answer no_workers", name, def, strings.Join(listed, ", ")))
		}
	}
	return probs
}

// composeModelRepository resolves a worker service's MODEL_REPOSITORY: the path
// inside its containers and the host directory that is there (a bind mount, or
// the build-context directory the Dockerfile copies into the image), or a problem.
func composeModelRepository(s types.ServiceConfig) (dir, host, prob string) {
	var imageDir, contextDir string
	if s.Build != nil {
		dockerfile := s.Build.Dockerfile
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		if !filepath.IsAbs(dockerfile) {
			dockerfile = filepath.Join(s.Build.Context, dockerfile)
		}
		if src, err := os.ReadFile(dockerfile); err == nil {
			if st, err := dockerfileStage(src, s.Build.Target); err == nil {
				imageDir = path.Clean(dockerfileStageEnv(st)[config.ModelRepository.Env])
				for _, c := range st.Commands {
					if cp, ok := c.(*instructions.CopyCommand); ok && cp.From == "" && path.Clean(cp.DestPath) == imageDir && len(cp.SourcePaths) == 1 {
						contextDir = filepath.Join(s.Build.Context, filepath.FromSlash(path.Clean(cp.SourcePaths[0])))
					}
				}
			}
		}
	}
	dir = composeEnv(s, config.ModelRepository.Env)
	if dir == "" {
		dir = imageDir
	}
	if dir == "" || dir == "." {
		return "", "", fmt.Sprintf("no %s, neither in the environment nor in the image", config.ModelRepository.Env)
	}
	if !strings.HasPrefix(dir, "/") {
		return dir, "", fmt.Sprintf("%s %q is not an absolute path", config.ModelRepository.Env, dir)
	}
	dir = path.Clean(dir)
	if h, ok := composeHostPath(s, dir); ok {
		return dir, h, ""
	}
	switch {
	case dir == imageDir && contextDir != "":
		return dir, contextDir, ""
	case dir == imageDir:
		return dir, "", fmt.Sprintf("%s %s: the image's, but its Dockerfile copies no build-context directory there, and nothing is bind-mounted there", config.ModelRepository.Env, dir)
	}
	return dir, "", fmt.Sprintf("%s %s: neither the image's model repository (%s) nor a bind mount", config.ModelRepository.Env, dir, imageDir)
}

// composeCheckBuild checks a build: section against the Dockerfile it names.
func composeCheckBuild(name string, b *types.BuildConfig) []string {
	dockerfile := b.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(b.Context, dockerfile)
	}
	src, err := os.ReadFile(dockerfile)
	if err != nil {
		return []string{fmt.Sprintf("service %s: build: %v", name, err)}
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return []string{fmt.Sprintf("service %s: %s: %v", name, dockerfile, err)}
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return []string{fmt.Sprintf("service %s: %s: %v", name, dockerfile, err)}
	}
	if b.Target == "" {
		return []string{fmt.Sprintf("service %s: build without a target (the Dockerfile builds several images)", name)}
	}
	if !slices.ContainsFunc(stages, func(st instructions.Stage) bool { return st.Name == b.Target }) {
		return []string{fmt.Sprintf("service %s: build target %s is not a stage of %s", name, b.Target, dockerfile)}
	}
	return nil
}

// composeCheckURL checks one URL-valued environment variable of service name.
func composeCheckURL(p *types.Project, name, key, val string) []string {
	u, err := url.Parse(val)
	if err != nil {
		return []string{fmt.Sprintf("service %s: %s: %v", name, key, err)}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"amqp": "5672", "amqps": "5671", "http": "80", "https": "443", "redis": "6379", "rediss": "6379"}[u.Scheme]
	}
	var probs []string
	if prob := composeCheckHostPort(p, u.Hostname(), port, key); prob != "" {
		probs = append(probs, fmt.Sprintf("service %s: %s", name, prob))
	}
	// amqp:// and the management API to the broker: its configured user.
	broker, err := p.GetService(u.Hostname())
	if err != nil || composeImageRepo(broker) != "library/rabbitmq" {
		return probs
	}
	pass, _ := u.User.Password()
	for _, c := range []struct{ what, got, env string }{
		{"user", u.User.Username(), "RABBITMQ_DEFAULT_USER"},
		{"password", pass, "RABBITMQ_DEFAULT_PASS"},
	} {
		if want := composeEnvOr(broker, c.env, "guest"); c.got != want {
			probs = append(probs, fmt.Sprintf("service %s: %s: %s %q is not %s's %s %q", name, key, c.what, c.got, u.Hostname(), c.env, want))
		}
	}
	return probs
}

// composeCheckHostPort says what is wrong with host:port as an address inside the
// Compose network ("" when it is a service listening on that port).
func composeCheckHostPort(p *types.Project, host, port, what string) string {
	s, err := p.GetService(host)
	if err != nil {
		return fmt.Sprintf("%s: host %q is not a service of the compose file", what, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Sprintf("%s: port %q of %s is not a number", what, port, host)
	}
	listens := composeListens(s)
	if !slices.Contains(listens, n) {
		return fmt.Sprintf("%s: port %d of %s, which listens on %v", what, n, host, listens)
	}
	return ""
}

// composeCheckPrometheus checks a Prometheus configuration (src, in dir) against p:
// rule files exist, static targets and DNS service discovery names are services
// listening on the scraped port.
func composeCheckPrometheus(p *types.Project, src []byte, dir string) []string {
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
			FileSDConfigs []any `yaml:"file_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(src, &cfg); err != nil {
		return []string{"prometheus: " + err.Error()}
	}
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, "prometheus: "+fmt.Sprintf(format, args...)) }
	for _, f := range cfg.RuleFiles {
		if m, _ := filepath.Glob(filepath.Join(dir, f)); len(m) == 0 {
			bad("rule file %s does not exist next to the configuration", f)
		}
	}
	if len(cfg.ScrapeConfigs) == 0 {
		bad("no scrape_configs")
	}
	scraped := map[string]bool{} // services some job scrapes
	for _, sc := range cfg.ScrapeConfigs {
		n := 0
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				n++
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					bad("job %s: target %s: %v", sc.JobName, target, err)
					continue
				}
				if prob := composeCheckHostPort(p, host, port, "target "+target); prob != "" {
					bad("job %s: %s", sc.JobName, prob)
				} else {
					scraped[host] = true
				}
			}
		}
		for _, d := range sc.DNSSDConfigs {
			if d.Type != "A" && d.Type != "AAAA" {
				// Compose's DNS answers A records per replica; SRV finds nothing.
				bad("job %s: dns_sd type %s, want A (Compose's DNS has no SRV records)", sc.JobName, d.Type)
				continue
			}
			for _, name := range d.Names {
				n++
				if prob := composeCheckHostPort(p, name, strconv.Itoa(d.Port), fmt.Sprintf("dns_sd name %q", name)); prob != "" {
					bad("job %s: %s", sc.JobName, prob)
				} else {
					scraped[name] = true
				}
			}
		}
		if len(sc.FileSDConfigs) > 0 {
			bad("job %s: file_sd_configs (that is prometheus-local.yml's way; Compose has DNS)", sc.JobName)
		}
		if n == 0 {
			bad("job %s: no targets", sc.JobName)
		}
	}
	// Every replica of every warren service is scraped: the API and each worker
	// pool (one DNS name per Compose service).
	names := p.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		if bin := composeBinary(p.Services[name]); bin != "" && !scraped[name] {
			bad("service %s (%s) is not scraped: no static target or dns_sd name names it", name, bin)
		}
	}
	return probs
}

// composeBinary is the warren binary a service runs ("" for other images): the
// Dockerfile target it builds, else its name when that is a binary's.
func composeBinary(s types.ServiceConfig) string {
	for _, bin := range []string{config.API, config.Worker} {
		if s.Build != nil && s.Build.Target == bin {
			return bin
		}
	}
	for _, bin := range []string{config.API, config.Worker} {
		if s.Name == bin {
			return bin
		}
	}
	return ""
}

// composeImageRepo is the repository path of a service's image, e.g.
// library/rabbitmq ("" when built or unparsable).
func composeImageRepo(s types.ServiceConfig) string {
	if s.Build != nil || s.Image == "" {
		return ""
	}
	ref, err := reference.ParseNormalizedNamed(s.Image)
	if err != nil {
		return ""
	}
	return reference.Path(ref)
}

// composeListens returns the ports a service listens on inside the network.
func composeListens(s types.ServiceConfig) []int {
	if bin := composeBinary(s); bin != "" {
		_, port, err := net.SplitHostPort(composeEnvOr(s, config.HTTPAddr.Env, config.HTTPAddr.DefaultFor(bin)))
		if n, err2 := strconv.Atoi(port); err == nil && err2 == nil {
			return []int{n}
		}
		return nil
	}
	return composeImagePorts[composeImageRepo(s)]
}

// composeEnv returns a service's environment variable ("" when unset).
func composeEnv(s types.ServiceConfig, key string) string { return composeEnvOr(s, key, "") }

func composeEnvOr(s types.ServiceConfig, key, def string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return def
}

// composeHostPath maps a path inside service s's containers to the repository file
// bind-mounted there (the longest mount target containing it wins).
func composeHostPath(s types.ServiceConfig, containerPath string) (string, bool) {
	best, host := -1, ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		target := strings.TrimSuffix(v.Target, "/")
		switch {
		case containerPath == target:
			if len(target) > best {
				best, host = len(target), v.Source
			}
		case strings.HasPrefix(containerPath, target+"/"):
			if len(target) > best {
				best, host = len(target), filepath.Join(v.Source, filepath.FromSlash(strings.TrimPrefix(containerPath, target+"/")))
			}
		}
	}
	return host, best >= 0
}

func composeReadYAML(t testing.TB, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
