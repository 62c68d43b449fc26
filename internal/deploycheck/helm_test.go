package deploycheck

// The Helm chart (deployments/helm/warren) is checked with the real helm, pinned
// and built from source once per machine, and with the Kubernetes API types:
//
//   - helm lint --strict and helm template for every value set in the chart's ci/
//     directory (the chart-testing convention), plus one that sets every variable
//     of pkg/config through api.config / worker.config;
//   - value combinations the chart must refuse (helm template fails, naming why);
//   - every rendered document of a built-in kind decodes strictly into k8s.io/api
//     types (unknown or duplicate fields fail) and passes ObjectMeta validation;
//     custom resources are checked against the CRDs in testdata/crds (crd_test.go);
//     any other kind fails;
//   - what the manifests mean: drain vs grace period, probes, resources, non-root
//     security contexts, every environment variable read by its binary per
//     config.Table, one worker Deployment per pool (workerPools) whose MODELS are
//     models of the repository's models/ (pkg/repository), Services and PDBs
//     selecting exactly their own pods, a ScaledObject per autoscaled pool with one
//     trigger per model of the pool: the API's /capacity?model=<model> (the JSON
//     name of capacity.Snapshot.WorkersNeeded), or the model's queues (pkg/queue's
//     names) with the worker's slots for that model.
//
// `go test -short` skips everything that needs the helm binary.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/warren-farm/warren/pkg/auth"
	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/repository"
)

const (
	// helm, pinned; built with `go install` into the user's cache on first use.
	helmModule  = "helm.sh/helm/v3/cmd/helm"
	helmVersion = "v3.22.0"
	// Rendering inputs: a Kubernetes version the chart's kubeVersion admits (a
	// go-installed helm defaults to v1.20), a namespace and a release name that is
	// not the chart's, so names are <release>-warren-*.
	helmKubeVersion = "1.33.0"
	helmNamespace   = "warren-test"
	helmRelease     = "farm"
	// How long one helm invocation may take; the build has its own bound.
	helmRunTimeout   = 2 * time.Minute
	helmBuildTimeout = 25 * time.Minute
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary returns the pinned helm, building it on first use. A failed build
// fails the test; -short skips it.
func helmBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the helm binary (built from source on first use); skipped with -short")
	}
	helmOnce.Do(func() { helmPath, helmErr = helmBuild() })
	if helmErr != nil {
		t.Fatalf("helm %s: %v", helmVersion, helmErr)
	}
	return helmPath
}

// helmBuild installs helm into ${XDG_CACHE_HOME:-$HOME/.cache}/warren/helm-<v>/helm
// unless it is there: go install into a fresh directory, then rename, so that a
// concurrent or interrupted build never leaves a half-written binary in place.
func helmBuild() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "warren", "helm-"+helmVersion)
	bin := filepath.Join(dir, "helm")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return bin, helmCheckVersion(bin)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	goBin, err := exec.LookPath("go") // go test puts GOROOT/bin first on PATH
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), helmBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", helmModule+"@"+helmVersion)
	cmd.Dir = tmp // outside this module: pkg@version ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s@%s (after %s): %v\n%s", helmModule, helmVersion, time.Since(start).Round(time.Second), err, out.String())
	}
	if err := os.Rename(filepath.Join(tmp, "helm"), bin); err != nil {
		return "", err
	}
	return bin, helmCheckVersion(bin)
}

// helmCheckVersion makes sure the cached binary is the pinned release (a
// go-installed helm reports major.minor only, from its source).
func helmCheckVersion(bin string) error {
	out, err := exec.Command(bin, "version", "--template", "{{.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s version: %v\n%s", bin, err, out)
	}
	want := strings.Join(strings.SplitN(helmVersion, ".", 3)[:2], ".")
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, want) {
		return fmt.Errorf("%s reports %q, want %s", bin, got, helmVersion)
	}
	return nil
}

// helmRun runs helm with args and returns its stdout; on failure the error
// carries stderr.
func helmRun(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := helmBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), helmRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// A private helm home: no user repositories, plugins or registry logins.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func helmChartDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "deployments", "helm", "warren")
}

// helmTemplate renders the chart with the values files and extra helm flags.
func helmTemplate(t testing.TB, files []string, flags ...string) (string, error) {
	args := []string{"template", helmRelease, helmChartDir(t), "--namespace", helmNamespace, "--kube-version", helmKubeVersion}
	for _, f := range files {
		args = append(args, "--values", f)
	}
	return helmRun(t, append(args, flags...)...)
}

// ---- value sets ---------------------------------------------------------------

// helmExpect is what a value set must render.
type helmExpect struct {
	redis             bool   // REDIS_URL set: several API replicas allowed
	apiHPA            bool   // the API's HorizontalPodAutoscaler
	apiReplicas       int32  // without the HPA
	management        bool   // MANAGEMENT_URL set
	existingSecret    string // the user's Secret, else the chart renders one
	pvc               string // claim backing DATA_DIR ("" = emptyDir or Redis)
	pvcRendered       bool   // the chart renders that claim
	pools             []helmPoolExpect
	serviceMonitor    bool
	ingress           bool
	helmTest          bool
	noServiceAccount  bool   // serviceAccount.create=false
	apiService        string // the API Service's name
	workerServiceBase string // the pools' Services are <base>-<pool>
	prefix            string // resource name prefix
}

// helmPoolExpect is one worker pool a value set must render.
type helmPoolExpect struct {
	name        string
	models      []string
	keda        bool
	trigger     string // capacity or rabbitmq (with keda)
	jobsTrigger bool
	minWorkers  int64 // the ScaledObject's minReplicaCount
	replicas    int32 // without KEDA
}

type helmValueSet struct {
	name string // ci/<name>-values.yaml
	want helmExpect
}

// helmPoolsKEDA are the two default pools, autoscaled on the capacity signal.
func helmPoolsKEDA(trigger string, jobs bool, minSeed, minDigits int64) []helmPoolExpect {
	return []helmPoolExpect{
		{name: "seed", models: []string{"seed"}, keda: true, trigger: trigger, jobsTrigger: jobs, minWorkers: minSeed},
		{name: "digits", models: []string{"digits"}, keda: true, trigger: trigger, jobsTrigger: jobs, minWorkers: minDigits},
	}
}

var helmValueSets = []helmValueSet{
	{"default", helmExpect{apiReplicas: 1, management: true, pools: helmPoolsKEDA("capacity", false, 1, 1), helmTest: true,
		apiService: "farm-warren-api", workerServiceBase: "farm-warren-worker", prefix: "farm-warren"}},
	{"redis-hpa", helmExpect{redis: true, apiHPA: true, management: true, pools: helmPoolsKEDA("capacity", false, 1, 1), helmTest: true,
		apiService: "farm-warren-api", workerServiceBase: "farm-warren-worker", prefix: "farm-warren"}},
	{"servicemonitor", helmExpect{apiReplicas: 1, management: true, pools: helmPoolsKEDA("capacity", false, 1, 1), helmTest: true,
		serviceMonitor: true, ingress: true, pvc: "farm-warren-api-data", pvcRendered: true,
		apiService: "api", workerServiceBase: "worker", prefix: "farm-warren"}},
	{"rabbitmq-trigger", helmExpect{apiReplicas: 1, management: true, existingSecret: "warren-connections",
		pools: helmPoolsKEDA("rabbitmq", true, 2, 1), helmTest: true,
		apiService: "farm-warren-api", workerServiceBase: "farm-warren-worker", prefix: "farm-warren"}},
	{"scale-to-zero", helmExpect{redis: true, apiReplicas: 2, management: true, existingSecret: "warren-connections",
		pools: helmPoolsKEDA("capacity", true, 1, 0), helmTest: true,
		apiService: "farm-warren-api", workerServiceBase: "farm-warren-worker", prefix: "farm-warren"}},
	{"keda-off", helmExpect{apiReplicas: 1, pvc: "warren-jobs", noServiceAccount: true,
		pools: []helmPoolExpect{
			{name: "seed", models: []string{"seed"}, replicas: 5},
			{name: "digits", models: []string{"digits"}, replicas: 2},
		},
		apiService: "farm-api", workerServiceBase: "farm-worker", prefix: "farm"}},
	{"shared-pool", helmExpect{apiReplicas: 1, management: true, helmTest: true,
		pools:      []helmPoolExpect{{name: "all", models: []string{"seed", "digits"}, keda: true, trigger: "capacity", minWorkers: 1}},
		apiService: "farm-warren-api", workerServiceBase: "farm-warren-worker", prefix: "farm-warren"}},
}

func (s helmValueSet) file(t testing.TB) string {
	return filepath.Join(helmChartDir(t), "ci", s.name+"-values.yaml")
}

// TestHelmValueSetsCoverCI keeps the table above and the chart's ci/ directory in
// step: every file there is linted and rendered here.
func TestHelmValueSetsCoverCI(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(helmChartDir(t), "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var have, want []string
	for _, f := range files {
		have = append(have, strings.TrimSuffix(filepath.Base(f), "-values.yaml"))
	}
	for _, s := range helmValueSets {
		want = append(want, s.name)
	}
	sort.Strings(have)
	sort.Strings(want)
	if !slices.Equal(have, want) {
		t.Fatalf("ci/ has value sets %v, the test checks %v", have, want)
	}
}

func TestHelmLint(t *testing.T) {
	for _, s := range helmValueSets {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			if out, err := helmRun(t, "lint", helmChartDir(t), "--strict", "--kube-version", helmKubeVersion, "--namespace", helmNamespace, "--values", s.file(t)); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestHelmTemplate(t *testing.T) {
	for _, s := range helmValueSets {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			out, err := helmTemplate(t, []string{s.file(t)})
			if err != nil {
				t.Fatal(err)
			}
			r := helmParse(t, out)
			helmCheck(t, r, s.want)
		})
	}
}

// TestHelmEveryConfigVar sets every variable of pkg/config that the chart does not
// manage itself through api.config / worker.config: the chart must accept each one
// for the binaries that read it (a variable added to the table but not to the
// chart's lists fails here) and render it into that binary's ConfigMap only.
func TestHelmEveryConfigVar(t *testing.T) {
	t.Parallel()
	values := map[string]any{}
	want := map[string]map[string]string{config.API: {}, config.Worker: {}}
	for _, b := range []string{config.API, config.Worker} {
		cfg := map[string]any{}
		for _, v := range config.For(b) {
			if helmManagedVars[v.Env] {
				continue
			}
			val := v.Default(b)
			switch v.Env {
			case "LOG_FORMAT":
				val = "json"
			case config.ModelRepository.Env:
				val, _ = dockerfileImageModels(t, repoRoot(t)) // where the image has them
			}
			cfg[v.Env] = val
			want[b][v.Env] = val
		}
		values[b] = map[string]any{"config": cfg}
	}
	raw, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "every-var-values.yaml")
	if err := os.WriteFile(f, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	defaults := helmValueSets[0]
	out, err := helmTemplate(t, []string{defaults.file(t), f})
	if err != nil {
		t.Fatal(err)
	}
	r := helmParse(t, out)
	helmCheck(t, r, defaults.want)
	cms := map[string]map[string]string{defaults.want.prefix + "-" + config.API: want[config.API]}
	for _, pool := range defaults.want.pools {
		cms[defaults.want.prefix+"-worker-"+pool.name] = want[config.Worker]
	}
	for name, vars := range cms {
		cm := r.configMaps[name]
		if cm == nil {
			t.Fatalf("no ConfigMap %s (have %v)", name, helmKeys(r.configMaps))
		}
		if !reflect.DeepEqual(cm.Data, vars) {
			t.Errorf("ConfigMap %s:\n got %v\nwant %v", name, cm.Data, vars)
		}
	}
}

// helmManagedVars are the variables the chart sets itself (and refuses in
// api.config / worker.config).
var helmManagedVars = map[string]bool{
	"AMQP_URL": true, "MANAGEMENT_URL": true, "REDIS_URL": true, "DRAIN_TIMEOUT": true,
	"HTTP_ADDR": true, "DATA_DIR": true, "WORKER_ID": true, "MODELS": true,
	"AUTH": true, "API_KEYS_FILE": true,
}

// TestHelmVarListsMatchConfig compares the variable lists in _helpers.tpl (which
// the templates check api.config / worker.config against) with config.Table, and the
// chart-managed list with helmManagedVars. Needs no helm.
func TestHelmVarListsMatchConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(helmChartDir(t), "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	define := func(name string) string {
		re := regexp.MustCompile(`(?s)\{\{-? define "` + regexp.QuoteMeta(name) + `" -?\}\}(.*?)\{\{-? end -?\}\}`)
		m := re.FindSubmatch(raw)
		if m == nil {
			t.Fatalf("_helpers.tpl has no define %q", name)
		}
		return string(m[1])
	}
	for _, b := range []string{config.API, config.Worker} {
		got := strings.Fields(define("warren.vars." + b))
		var want []string
		for _, v := range config.For(b) {
			want = append(want, v.Env)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("warren.vars.%s in _helpers.tpl:\n got %v\nwant %v (config.For(%q))", b, got, want, b)
		}
	}
	var managed map[string]string
	if err := yaml.UnmarshalStrict([]byte(define("warren.vars.managed")), &managed); err != nil {
		t.Fatalf("warren.vars.managed: %v", err)
	}
	var got, want []string
	for k := range managed {
		got = append(got, k)
		if _, ok := config.Lookup(k); !ok {
			t.Errorf("warren.vars.managed names %s, which is not in config.Table", k)
		}
	}
	for k := range helmManagedVars {
		want = append(want, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("warren.vars.managed: %v, the test expects %v", got, want)
	}
}

// helmDefine returns the body of a define in _helpers.tpl.
func helmDefine(t testing.TB, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(helmChartDir(t), "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?s)\{\{-? define "` + regexp.QuoteMeta(name) + `" -?\}\}(.*?)\{\{-? end -?\}\}`)
	m := re.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("_helpers.tpl has no define %q", name)
	}
	return strings.TrimSpace(string(m[1]))
}

// TestHelmNamesMatchCode: the model-name pattern the templates check pool models
// with, and the queue prefixes the rabbitmq triggers' regexes start with, are
// pkg/queue's. Needs no helm.
func TestHelmNamesMatchCode(t *testing.T) {
	for _, c := range []struct{ define, want string }{
		{"warren.modelNamePattern", queue.ModelNamePattern.String()},
		{"warren.requestQueuePrefix", queue.RequestQueuePrefix},
		{"warren.jobQueuePrefix", queue.JobQueuePrefix},
	} {
		if got := helmDefine(t, c.define); got != c.want {
			t.Errorf("%s in _helpers.tpl is %q, pkg/queue has %q", c.define, got, c.want)
		}
	}
}

// TestHelmRefuses: combinations the chart must not deploy. helm template has to
// fail, and its message has to say why.
func TestHelmRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		base   string // value set under ci/
		values string // more values (YAML), after the base
		flags  []string
		want   string
	}{
		{"scale to zero with the rabbitmq trigger", "default", "",
			[]string{"--set", "worker.autoscaling.trigger=rabbitmq", "--set", "worker.autoscaling.minReplicaCount=0"},
			"workerPools[0] (seed): autoscaling.minReplicaCount=0 needs trigger: capacity"},
		{"one pool to zero with the rabbitmq trigger", "rabbitmq-trigger", "workerPools:\n  - {name: seed, models: [seed]}\n  - {name: digits, models: [digits], autoscaling: {minReplicaCount: 0}}\n", nil,
			"workerPools[1] (digits): autoscaling.minReplicaCount=0 needs trigger: capacity"},
		{"API replicas > 1 without Redis", "default", "", []string{"--set", "api.replicaCount=2"}, "api.replicaCount=2 needs Redis"},
		{"API HPA without Redis", "default", "", []string{"--set", "api.autoscaling.enabled=true"}, "api.autoscaling.enabled needs Redis"},
		{"API replicas > 1 with an existing Secret without Redis", "rabbitmq-trigger", "", []string{"--set", "api.replicaCount=3"}, "needs Redis"},
		{"API grace equal to preStop + drain", "default", "", []string{"--set", "api.terminationGracePeriodSeconds=25"}, "api.terminationGracePeriodSeconds (25) must be larger"},
		{"API grace below drain", "default", "", []string{"--set", "api.drainTimeoutSeconds=60", "--set", "api.terminationGracePeriodSeconds=30"}, "must be larger than api.drainTimeoutSeconds (60)"},
		{"worker grace equal to drain", "default", "", []string{"--set", "worker.terminationGracePeriodSeconds=20"}, "worker.terminationGracePeriodSeconds (20) must be larger"},
		{"worker grace below drain", "keda-off", "", []string{"--set", "worker.drainTimeoutSeconds=90", "--set", "worker.terminationGracePeriodSeconds=60"}, "worker.terminationGracePeriodSeconds (60) must be larger"},
		{"KEDA without the management API", "keda-off", "", []string{"--set", "worker.autoscaling.enabled=true"}, "needs the RabbitMQ management API"},
		{"no AMQP URL", "", "", []string{"--set", "management.url=http://u:p@rmq:15672"}, "amqp.url is required"},
		{"variable the worker does not read", "default", "", []string{"--set", "worker.config.REQUEST_TIMEOUT=3s"}, "the worker binary does not read REQUEST_TIMEOUT"},
		{"variable a pool's worker does not read", "default", "workerPools:\n  - {name: seed, models: [seed], config: {JOB_TTL: 1h}}\n", nil,
			"workerPools[0] (seed).config.JOB_TTL: the worker binary does not read JOB_TTL"},
		{"chart-managed variable", "default", "", []string{"--set", "api.config.AMQP_URL=amqp://x"}, "api.config.AMQP_URL: set by the chart"},
		{"chart-managed drain", "default", "", []string{"--set", "worker.config.DRAIN_TIMEOUT=5s"}, "worker.drainTimeoutSeconds"},
		{"MODELS in worker.config", "default", "", []string{"--set", "worker.config.MODELS=seed"}, "worker.config.MODELS: set by the chart from workerPools[].models"},
		{"MODELS in a pool's config", "default", "workerPools:\n  - {name: seed, models: [seed], config: {MODELS: digits}}\n", nil,
			"workerPools[0] (seed).config.MODELS: set by the chart from workerPools[].models"},
		{"misspelt value (schema)", "default", "", []string{"--set", "worker.autoscalling.enabled=false"}, "additional properties 'autoscalling' not allowed"},
		{"unknown trigger (schema)", "default", "", []string{"--set", "worker.autoscaling.trigger=prometheus"}, "worker/autoscaling/trigger"},
		{"the old single queue name (schema)", "default", "", []string{"--set", "worker.autoscaling.rabbitmq.queueName=warren.requests"}, "additional properties 'queueName' not allowed"},
		{"jobs trigger with the job path off", "default", "", []string{"--set", "worker.autoscaling.jobs.enabled=true", "--set-string", "worker.config.JOB_CONCURRENCY=0"}, "JOB_CONCURRENCY=0"},
		{"both PDB bounds", "default", "", []string{"--set", "worker.pdb.minAvailable=1"}, "worker.pdb: set either minAvailable or maxUnavailable"},
		{"no pools", "default", "workerPools: []\n", nil, "workerPools is empty"},
		{"a pool without models", "default", "workerPools:\n  - {name: seed, models: [seed]}\n  - {name: digits, models: []}\n", nil,
			"workerPools[1] (digits): models is empty"},
		{"a pool without a models key (schema)", "default", "workerPools:\n  - {name: seed}\n", nil, "at '/workerPools/0': missing property 'models'"},
		{"duplicate pool names", "default", "workerPools:\n  - {name: seed, models: [seed]}\n  - {name: seed, models: [digits]}\n", nil,
			`the pool name "seed" is used twice (workerPools[0] and workerPools[1])`},
		{"an invalid model name", "default", "workerPools:\n  - {name: seed, models: [seed.v2]}\n", nil,
			`workerPools[0] (seed): model "seed.v2" is not a valid model name`},
		{"a model in two pools", "default", "workerPools:\n  - {name: seed, models: [seed]}\n  - {name: all, models: [digits, seed]}\n", nil,
			`workerPools[1] (all): model "seed" is also served by workerPools[0] (seed)`},
		{"an invalid pool name (schema)", "default", "workerPools:\n  - {name: Seed_1, models: [seed]}\n", nil, "at '/workerPools/0/name': 'Seed_1' does not match pattern"},
		{"an unknown pool key (schema)", "default", "workerPools:\n  - {name: seed, models: [seed], replica: 3}\n", nil, "additional properties 'replica' not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tc.base != "" {
				files = []string{filepath.Join(helmChartDir(t), "ci", tc.base+"-values.yaml")}
			}
			if tc.values != "" {
				f := filepath.Join(t.TempDir(), "more-values.yaml")
				if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, f)
			}
			out, err := helmTemplate(t, files, tc.flags...)
			if err == nil {
				t.Fatalf("rendered, want a refusal mentioning %q:\n%.2000s", tc.want, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused, but the message does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestHelmNotes renders NOTES.txt for every value set. helm template skips it and
// helm install has no --kube-version, so a copy of the chart gets a template that
// includes the notes' text.
func TestHelmNotes(t *testing.T) {
	helmBinary(t)
	chart := helmChartCopy(t)
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	define := "{{- define \"warren.testNotes\" -}}\n" + string(notes) + "\n{{- end -}}\n"
	if err := os.WriteFile(filepath.Join(chart, "templates", "_test_notes.tpl"), []byte(define), 0o644); err != nil {
		t.Fatal(err)
	}
	show := "notes: {{ include \"warren.testNotes\" . | toJson }}\n"
	if err := os.WriteFile(filepath.Join(chart, "templates", "test-notes.yaml"), []byte(show), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range helmValueSets {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			out, err := helmRun(t, "template", helmRelease, chart, "--namespace", helmNamespace, "--kube-version", helmKubeVersion,
				"--values", s.file(t), "--show-only", "templates/test-notes.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var doc struct{ Notes string }
			if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []string{"<no value>", "%!", "<nil>"} {
				if strings.Contains(doc.Notes, bad) {
					t.Errorf("NOTES contains %q:\n%s", bad, doc.Notes)
				}
			}
			wants := []string{"svc/" + s.want.apiService}
			for _, p := range s.want.pools {
				wants = append(wants, s.want.workerServiceBase+"-"+p.name+"."+helmNamespace+".svc", "MODELS="+strings.Join(p.models, ","))
			}
			for _, want := range wants {
				if !strings.Contains(doc.Notes, want) {
					t.Errorf("NOTES does not mention %q:\n%s", want, doc.Notes)
				}
			}
		})
	}
}

// TestHelmChecksFail shows that the checks of the rendered manifests can fail: each
// case renders a value set, breaks the output in one way (as a wrong template
// would) and expects helmCheck to report it.
func TestHelmChecksFail(t *testing.T) {
	sets := map[string]helmValueSet{}
	for _, s := range helmValueSets {
		sets[s.name] = s
	}
	rendered := map[string]string{}
	for _, name := range []string{"default", "rabbitmq-trigger", "shared-pool"} {
		out, err := helmTemplate(t, []string{sets[name].file(t)})
		if err != nil {
			t.Fatal(err)
		}
		if probs := helmCheckProblems(t, out, sets[name].want); len(probs) > 0 {
			t.Fatalf("%s: the unbroken output has problems:\n%s", name, strings.Join(probs, "\n"))
		}
		rendered[name] = out
	}
	literal := func(old, new string) func(string) string {
		return func(s string) string { return strings.Replace(s, old, new, 1) }
	}
	pattern := func(re, new string) func(string) string {
		return func(s string) string { return regexp.MustCompile(re).ReplaceAllString(s, new) }
	}
	for _, c := range []struct {
		name, set string
		old       string // must be in the output
		mutate    func(string) string
		want      string
	}{
		{"capacity URL names another pool's model", "default", "/capacity?model=digits", literal("/capacity?model=digits", "/capacity?model=seed"),
			`names model "seed", which pool digits does not serve`},
		{"capacity URL without the model", "default", "/capacity?model=digits", literal("/capacity?model=digits", "/capacity"),
			"want the one query parameter model=<a model of the pool>"},
		{"camelCase valueLocation", "default", "valueLocation: workers_needed", literal("valueLocation: workers_needed", "valueLocation: workersNeeded"),
			`valueLocation "workersNeeded", want "workers_needed" (capacity.Snapshot's JSON name)`},
		{"a model without its trigger", "shared-pool", "/capacity?model=digits", literal("/capacity?model=digits", "/capacity?model=seed"),
			"model digits has 0 capacity, 0 request-queue and 0 job-queue triggers, want 1, 0 and 0"},
		{"MODELS other than the pool's", "default", `value: "digits"`, literal(`value: "digits"`, `value: "digits,seed"`),
			`MODELS="digits,seed", want "digits"`},
		{"a model in two pools", "default", `value: "digits"`, literal(`value: "digits"`, `value: "digits,seed"`),
			"model seed is served by pools seed and digits"},
		{"a model not in the repository", "default", `value: "digits"`, literal(`value: "digits"`, `value: "digitz"`),
			`model "digitz" is not in the repository`},
		{"DEFAULT_MODEL served by no pool", "default", "data:\n  LOG_FORMAT: \"json\"", literal("data:\n  LOG_FORMAT: \"json\"", "data:\n  DEFAULT_MODEL: \"lab\"\n  LOG_FORMAT: \"json\""),
			"API: DEFAULT_MODEL lab is served by no pool"},
		{"a pool's Service selects every worker", "default", "    warren/pool: digits\n  ports:", literal("    warren/pool: digits\n  ports:", "  ports:"),
			"Service farm-warren-worker-digits also selects the pods of pool seed"},
		{"request-queue regex unanchored", "rabbitmq-trigger", `"^warren\\.req\\.seed\\.v[0-9]+$"`, literal(`"^warren\\.req\\.seed\\.v[0-9]+$"`, `"^warren\\.req\\.seed"`),
			"also matches warren.req.seedx.v1"},
		{"request-queue regex of the old queue name", "rabbitmq-trigger", `"^warren\\.req\\.seed\\.v[0-9]+$"`, literal(`"^warren\\.req\\.seed\\.v[0-9]+$"`, `"^warren\\.requests$"`),
			"matches the queues of 0 of the pool's models"},
		{"rabbitmq value other than the model's slots", "rabbitmq-trigger", `"request-queue-digits"`,
			pattern(`("request-queue-digits"(?s:.*?)value: )"2"`, `${1}"8"`),
			`value "8", want "2" (the worker's slots for digits`},
		{"no job trigger for a model", "rabbitmq-trigger", "# The job queues of digits", pattern(`\n +# The job queues of digits(?s:.*?)name: farm-warren-rabbitmq`, ""),
			"model digits has 0 capacity, 1 request-queue and 0 job-queue triggers, want 0, 1 and 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := rendered[c.set]
			if !strings.Contains(out, c.old) {
				t.Fatalf("test bug: %q not in the %s output", c.old, c.set)
			}
			broken := c.mutate(out)
			if broken == out {
				t.Fatal("test bug: the mutation changed nothing")
			}
			probs := helmCheckProblems(t, broken, sets[c.set].want)
			if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("want a problem containing %q, got:\n%s", c.want, strings.Join(probs, "\n"))
			}
		})
	}
}

// helmRecorder is a testing.TB that records what the checks report instead of
// failing the test; Fatal stops the check with a panic helmCheckProblems recovers.
type helmRecorder struct {
	testing.TB
	msgs []string
}

type helmFatal struct{}

func (r *helmRecorder) Helper()                   {}
func (r *helmRecorder) Error(args ...any)         { r.msgs = append(r.msgs, fmt.Sprint(args...)) }
func (r *helmRecorder) Errorf(f string, a ...any) { r.msgs = append(r.msgs, fmt.Sprintf(f, a...)) }
func (r *helmRecorder) Fatal(args ...any)         { r.Error(args...); panic(helmFatal{}) }
func (r *helmRecorder) Fatalf(f string, a ...any) { r.Errorf(f, a...); panic(helmFatal{}) }
func (r *helmRecorder) Failed() bool              { return len(r.msgs) > 0 }

// helmCheckProblems parses and checks a rendered output, returning the problems
// instead of failing t.
func helmCheckProblems(t *testing.T, out string, want helmExpect) []string {
	t.Helper()
	rec := &helmRecorder{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(helmFatal); !ok {
					panic(r)
				}
			}
		}()
		helmCheck(rec, helmParse(rec, out), want)
	}()
	return rec.msgs
}

// helmChartCopy copies the chart into a temporary directory.
func helmChartCopy(t testing.TB) string {
	t.Helper()
	src := helmChartDir(t)
	dst := filepath.Join(t.TempDir(), "warren")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestHelmPackage packages the chart: the archive has the chart's files and leaves
// out what .helmignore excludes (the ci/ value sets).
func TestHelmPackage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := helmRun(t, "package", helmChartDir(t), "--destination", dir); err != nil {
		t.Fatal(err)
	}
	chart := helmChartMeta(t)
	f, err := os.Open(filepath.Join(dir, "warren-"+chart.Version+".tgz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	have := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		have[h.Name] = true
		if strings.HasPrefix(h.Name, "warren/ci/") {
			t.Errorf("the package contains %s (.helmignore should leave ci/ out)", h.Name)
		}
	}
	for _, want := range []string{"Chart.yaml", "values.yaml", "values.schema.json", "README.md", "templates/NOTES.txt", "templates/_helpers.tpl"} {
		if !have["warren/"+want] {
			t.Errorf("the package lacks %s (has %v)", want, helmKeys(have))
		}
	}
}

// ---- decoding -------------------------------------------------------------------

// helmScheme has the built-in kinds the chart may render; anything else must be a
// custom resource with a CRD in testdata/crds.
var helmScheme = func() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{
		appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// helmDecoder decodes YAML strictly: unknown fields, duplicate fields and fields in
// the wrong case are errors (runtime.IsStrictDecodingError).
var helmDecoder = k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, helmScheme, helmScheme,
	k8sjson.SerializerOptions{Yaml: true, Strict: true})

// helmDecodeBuiltin decodes one document into its k8s.io/api type. ok is false when
// the kind is not a built-in one the scheme knows.
func helmDecodeBuiltin(doc []byte) (obj k8sruntime.Object, ok bool, err error) {
	obj, _, err = helmDecoder.Decode(doc, nil, nil)
	if err != nil && k8sruntime.IsNotRegisteredError(err) {
		return nil, false, nil
	}
	return obj, true, err
}

// helmSourceLine is the comment helm template puts above each document.
var helmSourceLine = regexp.MustCompile(`(?m)^# Source: (\S+)`)

type helmDoc struct {
	source     string // template file, from helm's "# Source:" line
	raw        []byte
	apiVersion string
	kind       string
	name       string
}

// helmRendered is one helm template output, decoded.
type helmRendered struct {
	docs            []helmDoc
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	pods            map[string]*corev1.Pod
	pvcs            map[string]*corev1.PersistentVolumeClaim
	serviceAccounts map[string]*corev1.ServiceAccount
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	ingresses       map[string]*networkingv1.Ingress
	custom          map[string][]map[string]any // by kind, as rendered (before pruning)
}

// helmParse splits helm's output into documents, decodes each strictly and
// validates it: built-in kinds into k8s.io/api types plus ObjectMeta validation,
// custom resources against their CRDs. Any failure fails the test.
func helmParse(t testing.TB, out string) *helmRendered {
	t.Helper()
	r := &helmRendered{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pods: map[string]*corev1.Pod{}, pvcs: map[string]*corev1.PersistentVolumeClaim{},
		serviceAccounts: map[string]*corev1.ServiceAccount{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, ingresses: map[string]*networkingv1.Ingress{},
		custom: map[string][]map[string]any{},
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("splitting helm's output: %v", err)
		}
		source := ""
		if m := helmSourceLine.FindSubmatch(raw); m != nil {
			source = string(m[1])
		}
		var probe map[string]any
		if err := yaml.Unmarshal(raw, &probe); err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if len(probe) == 0 {
			continue // only comments: a template that rendered nothing
		}
		doc := helmDoc{source: source, raw: raw}
		doc.apiVersion, _ = probe["apiVersion"].(string)
		doc.kind, _ = probe["kind"].(string)
		if md, ok := probe["metadata"].(map[string]any); ok {
			doc.name, _ = md["name"].(string)
		}
		if doc.apiVersion == "" || doc.kind == "" || doc.name == "" {
			t.Errorf("%s: a document without apiVersion, kind or metadata.name", source)
			continue
		}
		r.docs = append(r.docs, doc)
		where := fmt.Sprintf("%s (%s %s)", source, doc.kind, doc.name)

		obj, builtin, err := helmDecodeBuiltin(raw)
		if !builtin {
			cr, err := crdDecode(raw)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			rendered, err := crdDecode(raw) // crdValidate prunes and defaults its copy
			if err != nil {
				t.Fatal(err)
			}
			if problems := crdValidate(t, cr, helmNamespace); len(problems) > 0 {
				t.Errorf("%s is not valid against its CRD:\n  %s", where, strings.Join(problems, "\n  "))
			}
			r.custom[doc.kind] = append(r.custom[doc.kind], rendered)
			continue
		}
		if err != nil {
			t.Errorf("%s: strict decoding: %v", where, err)
			continue
		}
		acc, err := meta.Accessor(obj.DeepCopyObject())
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if acc.GetNamespace() == "" {
			acc.SetNamespace(helmNamespace) // what the API server takes from the request
		}
		nameFn := apimachineryvalidation.NameIsDNSSubdomain
		if doc.kind == "Service" {
			nameFn = apimachineryvalidation.NameIsDNS1035Label
		}
		for _, e := range apimachineryvalidation.ValidateObjectMetaAccessor(acc, true, nameFn, field.NewPath("metadata")) {
			t.Errorf("%s: %v", where, e)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments[o.Name] = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *corev1.Pod:
			r.pods[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			r.pvcs[o.Name] = o
		case *corev1.ServiceAccount:
			r.serviceAccounts[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdbs[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas[o.Name] = o
		case *networkingv1.Ingress:
			r.ingresses[o.Name] = o
		default:
			t.Errorf("%s: the chart renders a %T, which this test does not check", where, obj)
		}
	}
	if len(r.docs) == 0 {
		t.Fatal("helm template rendered nothing")
	}
	return r
}

// TestHelmDecoderIsStrict shows that the decoder the chart's output goes through
// refuses unknown and duplicate fields and unknown kinds. Needs no helm.
func TestHelmDecoderIsStrict(t *testing.T) {
	const good = `apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {app: warren}
  ports:
    - name: http
      port: 8000
`
	if _, ok, err := helmDecodeBuiltin([]byte(good)); !ok || err != nil {
		t.Fatalf("a valid Service: builtin %v, %v", ok, err)
	}
	for name, doc := range map[string]string{
		"unknown field":     strings.Replace(good, "  selector:", "  selectors: {app: x}\n  selector:", 1),
		"duplicate field":   strings.Replace(good, "      port: 8000\n", "      port: 8000\n      port: 8001\n", 1),
		"wrong case":        strings.Replace(good, "  ports:", "  Ports:", 1),
		"unknown in a list": strings.Replace(good, "      port: 8000\n", "      port: 8000\n      portName: x\n", 1),
	} {
		if _, _, err := helmDecodeBuiltin([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		} else if !k8sruntime.IsStrictDecodingError(err) {
			t.Errorf("%s: %v, want a strict decoding error", name, err)
		}
	}
	if _, ok, _ := helmDecodeBuiltin([]byte("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\n")); ok {
		t.Error("a kind outside the scheme was decoded as built-in")
	}
}

// ---- what the manifests mean ----------------------------------------------------

// helmEnvVar is one variable of a container's environment; helmResolveEnv builds
// the environment as the kubelet would: envFrom first, then env (which wins).
type helmEnvVar struct {
	value  string // literal, or from a rendered ConfigMap
	secret *corev1.SecretKeySelector
	field  string // fieldRef path
}

func helmResolveEnv(t testing.TB, r *helmRendered, where string, c corev1.Container) map[string]helmEnvVar {
	t.Helper()
	env := map[string]helmEnvVar{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := r.configMaps[from.ConfigMapRef.Name]
			if cm == nil {
				t.Errorf("%s: envFrom ConfigMap %q is not rendered", where, from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = helmEnvVar{value: v}
			}
		default:
			t.Errorf("%s: envFrom other than a ConfigMap: the variables could not be checked", where)
		}
	}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s: %s is set by env and by envFrom", where, e.Name)
		}
		v := helmEnvVar{value: e.Value}
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.SecretKeyRef != nil:
				v.secret = e.ValueFrom.SecretKeyRef
			case e.ValueFrom.FieldRef != nil:
				v.field = e.ValueFrom.FieldRef.FieldPath
			default:
				t.Errorf("%s: %s comes from an unexpected source", where, e.Name)
			}
		}
		env[e.Name] = v
	}
	return env
}

// helmCheckBinaryConfig: every variable set in the container is read by the binary
// (config.Lookup(name).Binaries), every --flag in args is one of its flags.
func helmCheckBinaryConfig(t testing.TB, where, binary string, env map[string]helmEnvVar, c corev1.Container) {
	t.Helper()
	for name := range env {
		v, ok := config.Lookup(name)
		switch {
		case !ok:
			t.Errorf("%s: sets %s, which is not in pkg/config's table", where, name)
		case !v.ReadBy(binary):
			t.Errorf("%s: sets %s, which the %s binary does not read (only %v)", where, name, binary, v.Binaries)
		}
	}
	flags := map[string]bool{}
	for _, v := range config.For(binary) {
		flags[v.Flag()] = true
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !flags[name] {
			t.Errorf("%s: argument %q is not a flag of the %s binary", where, a, binary)
		}
	}
}

func helmSelects(t testing.TB, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	if s.Empty() {
		t.Fatalf("empty selector selects everything")
	}
	return s.Matches(labels.Set(podLabels))
}

// helmWorkload is one Deployment (the API's or a worker pool's) with what the
// checks need.
type helmWorkload struct {
	binary    string
	pool      *helmPoolExpect // nil for the API
	deploy    *appsv1.Deployment
	container corev1.Container
	env       map[string]helmEnvVar
	port      int32
	drain     time.Duration
}

func (w helmWorkload) podLabels() map[string]string { return w.deploy.Spec.Template.Labels }

func (w helmWorkload) where() string { return "Deployment " + w.deploy.Name }

// what names the workload in messages: "api" or "pool seed".
func (w helmWorkload) what() string {
	if w.pool != nil {
		return "pool " + w.pool.name
	}
	return w.binary
}

// models is the workload's MODELS as the worker splits it.
func (w helmWorkload) models(t testing.TB) []string {
	var out []string
	for item := range strings.SplitSeq(w.configValue(t, config.Models.Env), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// configValue is the variable as the binary sees it: set, or its default.
func (w helmWorkload) configValue(t testing.TB, name string) string {
	t.Helper()
	if v, ok := w.env[name]; ok {
		if v.secret != nil || v.field != "" {
			t.Fatalf("%s: %s is not a literal", w.where(), name)
		}
		return v.value
	}
	v, ok := config.Lookup(name)
	if !ok {
		t.Fatalf("%s not in config.Table", name)
	}
	return v.Default(w.binary)
}

// helmRepoModels reads the repository's models/ (every model, every served
// version) with pkg/repository, by name.
func helmRepoModels(t testing.TB) map[string][]repository.Model {
	t.Helper()
	ms, err := repository.Scan(filepath.Join(repoRoot(t), dockerfileModelsDir), nil)
	if err != nil {
		t.Fatalf("%s/: %v", dockerfileModelsDir, err)
	}
	out := map[string][]repository.Model{}
	for _, m := range ms {
		out[m.Name] = append(out[m.Name], m)
	}
	return out
}

func helmCheck(t testing.TB, r *helmRendered, want helmExpect) {
	t.Helper()
	chart := helmChartMeta(t)
	ports := map[string]int32{config.API: 8000, config.Worker: 8001}
	repo := helmRepoModels(t)

	// Every object carries the standard labels.
	for _, d := range r.docs {
		var probe struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(d.raw, &probe); err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			"app.kubernetes.io/name": "warren", "app.kubernetes.io/instance": helmRelease,
			"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/version": chart.AppVersion,
			"helm.sh/chart": "warren-" + chart.Version,
		} {
			if got := probe.Metadata.Labels[k]; got != v {
				t.Errorf("%s %s: label %s=%q, want %q", d.kind, d.name, k, got, v)
			}
		}
	}

	// The Deployments: the API's and one per worker pool.
	if len(want.pools) == 0 {
		t.Fatal("test bug: a value set without pools")
	}
	var workloads []*helmWorkload
	api := &helmWorkload{binary: config.API, port: ports[config.API]}
	workloads = append(workloads, api)
	var pools []*helmWorkload
	for i := range want.pools {
		w := &helmWorkload{binary: config.Worker, pool: &want.pools[i], port: ports[config.Worker]}
		pools = append(pools, w)
		workloads = append(workloads, w)
	}
	if len(r.deployments) != len(workloads) {
		t.Errorf("Deployments %v, want the API's and one per pool (%d)", helmKeys(r.deployments), len(want.pools))
	}
	for _, w := range workloads {
		b := w.binary
		name := want.prefix + "-" + b
		if w.pool != nil {
			name = want.prefix + "-worker-" + w.pool.name
		}
		d := r.deployments[name]
		if d == nil {
			t.Fatalf("no Deployment %s (have %v)", name, helmKeys(r.deployments))
		}
		w.deploy = d
		where := w.where()
		if !helmSelects(t, d.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("%s: selector does not match its pod template", where)
		}
		if got := d.Spec.Template.Labels["app.kubernetes.io/component"]; got != b {
			t.Errorf("%s: component label %q", where, got)
		}
		pod := d.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", where, len(pod.Containers))
		}
		c := pod.Containers[0]
		w.container = c
		if wantImg := "warren-" + b + ":" + chart.AppVersion; c.Image != wantImg {
			t.Errorf("%s: image %q, want %q (tag = appVersion)", where, c.Image, wantImg)
		}
		if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != w.port {
			t.Errorf("%s: ports %+v, want http %d", where, c.Ports, w.port)
		}

		// Environment: names and values.
		w.env = helmResolveEnv(t, r, where, c)
		helmCheckBinaryConfig(t, where, b, w.env, c)
		if got := w.configValue(t, "LOG_FORMAT"); got != "json" {
			t.Errorf("%s: LOG_FORMAT=%q, want json", where, got)
		}
		if got, wantAddr := w.configValue(t, "HTTP_ADDR"), fmt.Sprintf(":%d", w.port); got != wantAddr {
			t.Errorf("%s: HTTP_ADDR=%q, want %q (the container port)", where, got, wantAddr)
		}
		drain, err := time.ParseDuration(w.configValue(t, "DRAIN_TIMEOUT"))
		if err != nil || drain <= 0 {
			t.Errorf("%s: DRAIN_TIMEOUT: %v", where, err)
		}
		w.drain = drain
		amqp, ok := w.env["AMQP_URL"]
		if !ok || amqp.secret == nil {
			t.Errorf("%s: AMQP_URL must come from a Secret", where)
		}
		for name, v := range w.env {
			if v.secret != nil {
				helmCheckSecretRef(t, r, want, where+" "+name, v.secret)
			}
		}

		// A pool's workers serve its models, all of them models of the repository
		// the image carries, and read that repository (the image's MODEL_REPOSITORY).
		if w.pool != nil {
			if got, wantModels := w.configValue(t, config.Models.Env), strings.Join(w.pool.models, ","); got != wantModels {
				t.Errorf("%s: MODELS=%q, want %q (the pool's models)", where, got, wantModels)
			}
			if len(w.models(t)) == 0 {
				t.Errorf("%s: MODELS is empty: the pool would serve every model of the image, overlapping the others", where)
			} else if _, err := repository.Scan(filepath.Join(repoRoot(t), dockerfileModelsDir), w.models(t)); err != nil {
				t.Errorf("%s: MODELS=%s: %s", where, w.configValue(t, config.Models.Env), strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			if dir, ok := w.env[config.ModelRepository.Env]; ok {
				if imageDir, _ := dockerfileImageModels(t, repoRoot(t)); dir.value != imageDir {
					t.Errorf("%s: MODEL_REPOSITORY=%q, but the image's models are at %s and the chart mounts none", where, dir.value, imageDir)
				}
			}
		}

		// Drain vs grace: SIGKILL must not cut the drain short.
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			if c.Lifecycle.PreStop.Sleep == nil {
				t.Errorf("%s: preStop hook other than sleep (the image has no shell)", where)
			} else {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
		}
		if pod.TerminationGracePeriodSeconds == nil {
			t.Errorf("%s: no terminationGracePeriodSeconds", where)
		} else if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= preStop+drain {
			t.Errorf("%s: terminationGracePeriodSeconds %s is not longer than preStop %s + DRAIN_TIMEOUT %s", where, grace, preStop, drain)
		}

		// Probes on the binaries' endpoints and port.
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			path  string
		}{{"liveness", c.LivenessProbe, "/health"}, {"readiness", c.ReadinessProbe, "/ready"}} {
			switch {
			case p.probe == nil || p.probe.HTTPGet == nil:
				t.Errorf("%s: no HTTP %s probe", where, p.kind)
			case p.probe.HTTPGet.Path != p.path:
				t.Errorf("%s: %s probe on %q, want %q", where, p.kind, p.probe.HTTPGet.Path, p.path)
			case helmContainerPort(c, p.probe.HTTPGet.Port) != w.port:
				t.Errorf("%s: %s probe on port %s, want %d", where, p.kind, p.probe.HTTPGet.Port.String(), w.port)
			}
		}

		// Resources.
		res := c.Resources
		for _, rn := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, ok := res.Requests[rn]
			if !ok || req.IsZero() {
				t.Errorf("%s: no %s request", where, rn)
			}
			if lim, ok := res.Limits[rn]; ok && lim.Cmp(req) < 0 {
				t.Errorf("%s: %s limit %s below the request %s", where, rn, lim.String(), req.String())
			}
		}
		if _, ok := res.Limits[corev1.ResourceMemory]; !ok {
			t.Errorf("%s: no memory limit", where)
		}

		// Non-root, read-only, no capabilities, RuntimeDefault seccomp.
		helmCheckSecurity(t, where, pod.SecurityContext, c.SecurityContext)
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: the service account token is mounted (neither binary calls the Kubernetes API)", where)
		}
		if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks is not false: the kubelet would add a *_SERVICE_HOST/*_PORT variable per Service", where)
		}
		if sa := pod.ServiceAccountName; want.noServiceAccount {
			if sa != "default" || len(r.serviceAccounts) > 0 {
				t.Errorf("%s: serviceAccount.create=false, but ServiceAccount %q used, %v rendered", where, sa, helmKeys(r.serviceAccounts))
			}
		} else if r.serviceAccounts[sa] == nil {
			t.Errorf("%s: ServiceAccount %q is not rendered", where, sa)
		}
	}

	// Each workload's pods are its own: no selector of one matches another's pods.
	for _, w := range workloads {
		for _, o := range workloads {
			if o != w && helmSelects(t, w.deploy.Spec.Selector, o.podLabels()) {
				t.Errorf("%s's selector also matches the pods of %s", w.where(), o.where())
			}
		}
	}

	// The pools: each model in one pool only; the API's DEFAULT_MODEL served.
	servedBy := map[string]string{}
	for _, w := range pools {
		for _, m := range w.models(t) {
			if other, dup := servedBy[m]; dup {
				t.Errorf("model %s is served by pools %s and %s", m, other, w.pool.name)
			}
			servedBy[m] = w.pool.name
		}
	}
	if def := api.configValue(t, config.DefaultModel.Env); servedBy[def] == "" {
		t.Errorf("API: DEFAULT_MODEL %s is served by no pool (%v): /process would answer no_workers", def, helmKeys(servedBy))
	}

	apiPod := api.deploy.Spec.Template.Spec

	// The API: job store, replicas, HPA, management API.
	_, hasRedis := api.env["REDIS_URL"]
	dataDir, hasDataDir := api.env["DATA_DIR"]
	if hasRedis != want.redis {
		t.Errorf("API: REDIS_URL set %v, want %v", hasRedis, want.redis)
	}
	if hasRedis == hasDataDir {
		t.Errorf("API: REDIS_URL set %v and DATA_DIR set %v: exactly one job store", hasRedis, hasDataDir)
	}
	if hasDataDir {
		mounted := false
		for _, m := range api.container.VolumeMounts {
			if m.MountPath != dataDir.value {
				continue
			}
			mounted = !m.ReadOnly
			for _, v := range apiPod.Volumes {
				if v.Name != m.Name {
					continue
				}
				switch {
				case want.pvc != "":
					if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != want.pvc {
						t.Errorf("API: DATA_DIR volume %+v, want the claim %s", v.VolumeSource, want.pvc)
					}
				case v.EmptyDir == nil:
					t.Errorf("API: DATA_DIR volume %+v, want an emptyDir", v.VolumeSource)
				}
			}
		}
		if !mounted {
			t.Errorf("API: DATA_DIR=%s is not a writable volume mount (the root filesystem is read-only)", dataDir.value)
		}
		if api.deploy.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("API without Redis: strategy %q, want Recreate (never two bbolt job stores side by side)", api.deploy.Spec.Strategy.Type)
		}
	}
	if want.pvcRendered != (r.pvcs[want.pvc] != nil) || len(r.pvcs) > 1 || (!want.pvcRendered && len(r.pvcs) > 0) {
		t.Errorf("PersistentVolumeClaims %v, want %q rendered: %v", helmKeys(r.pvcs), want.pvc, want.pvcRendered)
	}
	hpa := r.hpas[want.prefix+"-api"]
	if (hpa != nil) != want.apiHPA || len(r.hpas) > 1 {
		t.Errorf("HPAs %v, want the API's: %v", helmKeys(r.hpas), want.apiHPA)
	}
	if hpa != nil {
		if !hasRedis {
			t.Error("API HPA without Redis: several API replicas would each open their own bbolt job store")
		}
		if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != api.deploy.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("API HPA targets %+v", ref)
		}
		if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("API HPA metrics %+v, want CPU", hpa.Spec.Metrics)
		}
		if api.deploy.Spec.Replicas != nil {
			t.Error("API Deployment sets replicas although the HPA owns them")
		}
	} else {
		if api.deploy.Spec.Replicas == nil || *api.deploy.Spec.Replicas != want.apiReplicas {
			t.Errorf("API replicas %v, want %d", api.deploy.Spec.Replicas, want.apiReplicas)
		}
		if !hasRedis && (api.deploy.Spec.Replicas == nil || *api.deploy.Spec.Replicas != 1) {
			t.Error("API without Redis must run exactly one replica (bbolt job store)")
		}
	}
	mgmt, hasMgmt := api.env["MANAGEMENT_URL"]
	if hasMgmt != want.management {
		t.Errorf("API: MANAGEMENT_URL set %v, want %v", hasMgmt, want.management)
	}
	if !hasMgmt && !slices.Contains(api.container.Args, "--management-url=") {
		t.Error("API without a management URL must run with --management-url= (empty MANAGEMENT_URL means the default, guest@localhost)")
	}

	// Services: the API's and a headless one per pool, each selecting exactly its
	// own pods, on the container's port.
	apiSvc := r.services[want.apiService]
	if apiSvc == nil || len(r.services) != len(workloads) {
		t.Fatalf("Services %v, want %s and %s-<pool> for each pool", helmKeys(r.services), want.apiService, want.workerServiceBase)
	}
	svcOf := map[*helmWorkload]*corev1.Service{api: apiSvc}
	for _, w := range pools {
		name := want.workerServiceBase + "-" + w.pool.name
		if svcOf[w] = r.services[name]; svcOf[w] == nil {
			t.Fatalf("no Service %s for pool %s (have %v)", name, w.pool.name, helmKeys(r.services))
		}
	}
	for _, w := range workloads {
		svc := svcOf[w]
		where := "Service " + svc.Name
		sel := &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}
		if !helmSelects(t, sel, w.podLabels()) {
			t.Errorf("%s does not select the pods of %s", where, w.what())
		}
		for _, o := range workloads {
			if o != w && helmSelects(t, sel, o.podLabels()) {
				t.Errorf("%s also selects the pods of %s", where, o.what())
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" {
			t.Fatalf("%s: ports %+v, want one named http", where, svc.Spec.Ports)
		}
		if p := svc.Spec.Ports[0]; helmContainerPort(w.container, p.TargetPort) != w.port {
			t.Errorf("%s: targetPort %s is not the %s's port %d", where, p.TargetPort.String(), w.binary, w.port)
		}
		if headless, wantHeadless := svc.Spec.ClusterIP == corev1.ClusterIPNone, w.pool != nil; headless != wantHeadless {
			t.Errorf("%s: headless %v, want %v", where, headless, wantHeadless)
		}
		if w.pool != nil {
			if svc.Spec.Ports[0].Port != 8001 {
				t.Errorf("%s: port %d, want 8001 (deployments/prometheus/prometheus.yml)", where, svc.Spec.Ports[0].Port)
			}
			if !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("%s: not-ready workers must keep their DNS records (still scraped, alerted on)", where)
			}
		}
	}

	// PodDisruptionBudgets: one per Deployment, selecting exactly its pods.
	if len(r.pdbs) != len(workloads) {
		t.Errorf("PodDisruptionBudgets %v, want one per Deployment", helmKeys(r.pdbs))
	}
	for _, w := range workloads {
		pdb := r.pdbs[w.deploy.Name]
		if pdb == nil {
			t.Errorf("no PodDisruptionBudget for %s", w.where())
			continue
		}
		if !helmSelects(t, pdb.Spec.Selector, w.podLabels()) {
			t.Errorf("PDB %s does not select the pods of %s", pdb.Name, w.what())
		}
		for _, o := range workloads {
			if o != w && helmSelects(t, pdb.Spec.Selector, o.podLabels()) {
				t.Errorf("PDB %s also selects the pods of %s", pdb.Name, o.what())
			}
		}
	}

	// Worker pools: a ScaledObject each, or a fixed count.
	sos := map[string]map[string]any{} // by the Deployment they target
	for _, raw := range r.custom["ScaledObject"] {
		var so struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				ScaleTargetRef struct {
					Name string `json:"name"`
				} `json:"scaleTargetRef"`
			} `json:"spec"`
		}
		helmRecode(t, raw, &so)
		if _, dup := sos[so.Spec.ScaleTargetRef.Name]; dup {
			t.Errorf("several ScaledObjects target %s", so.Spec.ScaleTargetRef.Name)
		}
		sos[so.Spec.ScaleTargetRef.Name] = raw
	}
	var authRefs []string
	keda := 0
	for _, w := range pools {
		so := sos[w.deploy.Name]
		if !w.pool.keda {
			if so != nil {
				t.Errorf("pool %s: autoscaling off, but a ScaledObject targets %s", w.pool.name, w.deploy.Name)
			}
			if w.deploy.Spec.Replicas == nil || *w.deploy.Spec.Replicas != w.pool.replicas {
				t.Errorf("pool %s: replicas %v, want %d", w.pool.name, w.deploy.Spec.Replicas, w.pool.replicas)
			}
			continue
		}
		keda++
		if so == nil {
			t.Errorf("pool %s: no ScaledObject targets %s", w.pool.name, w.deploy.Name)
			continue
		}
		if w.deploy.Spec.Replicas != nil {
			t.Errorf("pool %s: the Deployment sets replicas although KEDA's HPA owns them", w.pool.name)
		}
		authRefs = append(authRefs, helmCheckScaledObject(t, so, w, apiSvc, repo)...)
	}
	if len(sos) != keda {
		t.Errorf("%d ScaledObjects (targeting %v), want one per autoscaled pool (%d)", len(sos), helmKeys(sos), keda)
	}
	helmCheckTriggerAuth(t, r, authRefs, mgmt)

	// ServiceMonitors: one per Service, selecting it alone.
	sms := r.custom["ServiceMonitor"]
	if !want.serviceMonitor {
		if len(sms) > 0 {
			t.Errorf("%d ServiceMonitors rendered, want none", len(sms))
		}
	} else {
		if len(sms) != len(workloads) {
			t.Fatalf("%d ServiceMonitors, want %d (the API and each pool)", len(sms), len(workloads))
		}
		seen := map[string]bool{}
		for _, sm := range sms {
			var m struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
				Spec     struct {
					Selector  metav1.LabelSelector `json:"selector"`
					Endpoints []struct {
						Port        string `json:"port"`
						Path        string `json:"path"`
						Relabelings []struct {
							Action      string `json:"action"`
							TargetLabel string `json:"targetLabel"`
							Replacement string `json:"replacement"`
						} `json:"relabelings"`
					} `json:"endpoints"`
				} `json:"spec"`
			}
			helmRecode(t, sm, &m)
			var matched []*corev1.Service
			for _, s := range r.services {
				if helmSelects(t, &m.Spec.Selector, s.Labels) {
					matched = append(matched, s)
				}
			}
			if len(matched) != 1 {
				t.Errorf("ServiceMonitor %s selects %d Services, want 1", m.Metadata.Name, len(matched))
				continue
			}
			seen[matched[0].Name] = true
			if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != matched[0].Spec.Ports[0].Name || m.Spec.Endpoints[0].Path != "/metrics" {
				t.Errorf("ServiceMonitor %s endpoints %+v, want port %s path /metrics", m.Metadata.Name, m.Spec.Endpoints, matched[0].Spec.Ports[0].Name)
				continue
			}
			// The job label the shipped rules and alerts select on.
			wantJob := "warren-worker"
			if matched[0] == apiSvc {
				wantJob = "warren-api"
			}
			if rl := m.Spec.Endpoints[0].Relabelings; len(rl) != 1 || rl[0].TargetLabel != "job" || rl[0].Replacement != wantJob {
				t.Errorf("ServiceMonitor %s relabelings %+v, want job=%s", m.Metadata.Name, rl, wantJob)
			}
		}
		for _, w := range workloads {
			if !seen[svcOf[w].Name] {
				t.Errorf("no ServiceMonitor selects the Service %s", svcOf[w].Name)
			}
		}
	}

	// Ingress.
	if (len(r.ingresses) > 0) != want.ingress {
		t.Errorf("Ingresses %v, want one: %v", helmKeys(r.ingresses), want.ingress)
	}
	for _, ing := range r.ingresses {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if b := p.Backend.Service; b == nil || b.Name != apiSvc.Name || b.Port.Name != apiSvc.Spec.Ports[0].Name {
					t.Errorf("Ingress %s: backend %+v, want the API Service's http port", ing.Name, p.Backend)
				}
			}
		}
	}

	// helm test pod: the API image probing /ready through the Service.
	if (len(r.pods) > 0) != want.helmTest {
		t.Errorf("test pods %v, want one: %v", helmKeys(r.pods), want.helmTest)
	}
	for _, p := range r.pods {
		where := "Pod " + p.Name
		if p.Annotations["helm.sh/hook"] != "test" {
			t.Errorf("%s is not a helm test hook", where)
		}
		for _, svc := range r.services {
			if helmSelects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, p.Labels) {
				t.Errorf("%s is selected by the Service %s", where, svc.Name)
			}
		}
		helmCheckSecurity(t, where, p.Spec.SecurityContext, p.Spec.Containers[0].SecurityContext)
		c := p.Spec.Containers[0]
		env := helmResolveEnv(t, r, where, c)
		helmCheckBinaryConfig(t, where, config.API, env, c)
		if c.Image != api.container.Image || !slices.Equal(c.Args, []string{"healthcheck", "/ready"}) {
			t.Errorf("%s: %s %v, want the API image with healthcheck /ready", where, c.Image, c.Args)
		}
		if got, wantAddr := env["HTTP_ADDR"].value, net.JoinHostPort(apiSvc.Name, strconv.Itoa(int(apiSvc.Spec.Ports[0].Port))); got != wantAddr {
			t.Errorf("%s: HTTP_ADDR=%q, want the API Service %q", where, got, wantAddr)
		}
	}

	// Authentication (auth.mode generate, the default): a Secret of the chart's
	// own holds an admin key and a keys file that pkg/auth loads and in which that
	// key is an admin; the API reads the file from that Secret, mounted read-only.
	keySecrets := map[string]*corev1.Secret{}
	for name, sec := range r.secrets {
		if strings.HasSuffix(name, "-api-keys") {
			keySecrets[name] = sec
		}
	}
	helmCheckAPIKeys(t, api, keySecrets)

	// The chart's own Secret (unless the user brings one) holds the URLs it refers to.
	urlSecrets := len(r.secrets) - len(keySecrets)
	if want.existingSecret != "" && urlSecrets > 0 {
		t.Errorf("existingSecret %s, but the chart renders Secrets %v", want.existingSecret, helmKeys(r.secrets))
	}
	if want.existingSecret == "" && urlSecrets != 1 {
		t.Errorf("Secrets %v, want one for the URLs (and one of API keys)", helmKeys(r.secrets))
	}
}

// helmCheckAPIKeys checks the API's keys: with a keys Secret of the chart's, the
// API's API_KEYS_FILE is a file of it, mounted read-only, that loads, and the
// Secret's admin-key is an admin key of it; without, AUTH=none or a keys file.
func helmCheckAPIKeys(t testing.TB, api *helmWorkload, secrets map[string]*corev1.Secret) {
	t.Helper()
	where := api.where()
	file := api.env["API_KEYS_FILE"].value
	if len(secrets) == 0 {
		if file == "" && api.env["AUTH"].value != "none" {
			t.Errorf("%s: neither API_KEYS_FILE nor AUTH=none: the API refuses to start on :8000", where)
		}
		return
	}
	if len(secrets) != 1 {
		t.Fatalf("API key Secrets %v, want one", helmKeys(secrets))
	}
	var sec *corev1.Secret
	for _, s := range secrets {
		sec = s
	}
	kr, err := auth.ParseKeys(sec.Data["api-keys.yaml"])
	if err != nil {
		t.Fatalf("Secret %s: api-keys.yaml: %v", sec.Name, err)
	}
	if p, ok := kr.Lookup(string(sec.Data["admin-key"])); !ok || !p.Admin || !strings.HasPrefix(string(sec.Data["admin-key"]), auth.KeyPrefix) {
		t.Errorf("Secret %s: admin-key is not an admin key of api-keys.yaml", sec.Name)
	}
	if strings.Contains(string(sec.Data["api-keys.yaml"]), string(sec.Data["admin-key"])) {
		t.Errorf("Secret %s: api-keys.yaml holds the secret itself", sec.Name)
	}
	mounted := false
	for _, m := range api.container.VolumeMounts {
		for _, v := range api.deploy.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == sec.Name && m.ReadOnly &&
				file == path.Join(m.MountPath, "api-keys.yaml") {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("%s: API_KEYS_FILE=%q is not api-keys.yaml of Secret %s mounted read-only", where, file, sec.Name)
	}
}

// helmScaledObject is the part of a ScaledObject the checks read.
type helmScaledObject struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int64 `json:"minReplicaCount"`
		MaxReplicaCount *int64 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name"`
			MetricType        string            `json:"metricType"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// helmCheckScaledObject: target, bounds and triggers of a pool's ScaledObject.
// Every model of the pool has its triggers (capacity: the API's
// /capacity?model=<model>; rabbitmq: a regex matching exactly that model's request
// queues, one per version, with the worker's slots for the model; jobs: the same
// for its job queues), and no trigger names a model the pool does not serve. It
// returns the TriggerAuthentications the triggers refer to.
func helmCheckScaledObject(t testing.TB, raw map[string]any, w *helmWorkload, apiSvc *corev1.Service, repo map[string][]repository.Model) []string {
	t.Helper()
	want := w.pool
	var so helmScaledObject
	helmRecode(t, raw, &so)
	where := "ScaledObject " + so.Metadata.Name
	if ref := so.Spec.ScaleTargetRef; ref.Name != w.deploy.Name || (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
		t.Errorf("%s targets %+v, want Deployment %s", where, ref, w.deploy.Name)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != want.minWorkers {
		t.Errorf("%s: minReplicaCount %v, want %d", where, so.Spec.MinReplicaCount, want.minWorkers)
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 1 {
		t.Errorf("%s: maxReplicaCount %v", where, so.Spec.MaxReplicaCount)
	}

	// The worker's slots per model version: the model's config.yaml, else the
	// pool's CONCURRENCY / JOB_CONCURRENCY (cmd/worker applies them so).
	slots := func(model string, jobs bool) string {
		ms := repo[model]
		if len(ms) == 0 {
			return "?"
		}
		c := ms[0].Config
		switch {
		case !jobs && c.Concurrency > 0:
			return strconv.Itoa(c.Concurrency)
		case !jobs:
			return w.configValue(t, config.Concurrency.Env)
		case c.JobConcurrency != nil:
			return strconv.Itoa(*c.JobConcurrency)
		}
		return w.configValue(t, config.JobConcurrency.Env)
	}
	// modelOfRegex returns the pool model whose queues (built with route) the
	// regex matches exactly, or "" with a reason.
	modelOfRegex := func(re *regexp.Regexp, route func(queue.Route) string, other func(queue.Route) string) (string, string) {
		var found []string
		for _, m := range want.models {
			if re.MatchString(route(queue.Route{Model: m, Version: "1"})) {
				found = append(found, m)
			}
		}
		if len(found) != 1 {
			return "", fmt.Sprintf("matches the queues of %d of the pool's models %v", len(found), want.models)
		}
		m := found[0]
		for _, v := range []string{"1", "2", "10", "4294967295"} {
			if q := route(queue.Route{Model: m, Version: v}); !re.MatchString(q) {
				return "", fmt.Sprintf("misses %s", q)
			}
		}
		for _, q := range []string{
			other(queue.Route{Model: m, Version: "1"}),
			route(queue.Route{Model: m + "x", Version: "1"}),
			route(queue.Route{Model: "x" + m, Version: "1"}),
			route(queue.Route{Model: m, Version: "1"}) + ".x",
			route(queue.Route{Model: m, Version: "1"})[:len(route(queue.Route{Model: m, Version: "1"}))-3],
		} {
			if re.MatchString(q) {
				return "", fmt.Sprintf("also matches %s", q)
			}
		}
		return m, ""
	}

	capacityFor, requestFor, jobFor := map[string]int{}, map[string]int{}, map[string]int{}
	names := map[string]bool{}
	var authRefs []string
	for i, tr := range so.Spec.Triggers {
		tw := fmt.Sprintf("%s trigger %d (%s %s)", where, i, tr.Type, tr.Name)
		if tr.Name == "" || names[tr.Name] {
			t.Errorf("%s: trigger names must be present and unique", tw)
		}
		names[tr.Name] = true
		if tr.MetricType != "AverageValue" {
			t.Errorf("%s: metricType %q, want AverageValue", tw, tr.MetricType)
		}
		switch tr.Type {
		case "metrics-api":
			u, err := url.Parse(tr.Metadata["url"])
			if err != nil {
				t.Errorf("%s: url: %v", tw, err)
				continue
			}
			// KEDA runs in its own namespace: the Service's namespaced DNS name.
			wantHost := apiSvc.Name + "." + helmNamespace + ".svc"
			if u.Scheme != "http" || u.Hostname() != wantHost || u.Port() != strconv.Itoa(int(apiSvc.Spec.Ports[0].Port)) || u.Path != "/capacity" {
				t.Errorf("%s: url %q, want http://%s:%d/capacity?model=… (the API Service)", tw, u, wantHost, apiSvc.Spec.Ports[0].Port)
			}
			// The query names one model the pool serves, and nothing else.
			q := u.Query()
			model := q.Get("model")
			switch {
			case len(q) != 1 || len(q["model"]) != 1:
				t.Errorf("%s: url %q, want the one query parameter model=<a model of the pool>", tw, u)
			case !slices.Contains(want.models, model):
				t.Errorf("%s: url %q names model %q, which pool %s does not serve (%v)", tw, u, model, want.name, want.models)
			default:
				capacityFor[model]++
			}
			if got, wantLoc := tr.Metadata["valueLocation"], helmJSONName(t, capacity.Snapshot{}, "WorkersNeeded"); got != wantLoc {
				t.Errorf("%s: valueLocation %q, want %q (capacity.Snapshot's JSON name)", tw, got, wantLoc)
			}
			if tr.Metadata["targetValue"] != "1" {
				t.Errorf("%s: targetValue %q, want \"1\" (replicas = workers_needed)", tw, tr.Metadata["targetValue"])
			}
			if f := tr.Metadata["format"]; f != "" && f != "json" {
				t.Errorf("%s: format %q", tw, f)
			}
		case "rabbitmq":
			md := tr.Metadata
			if md["protocol"] != "http" || md["mode"] != "QueueLength" {
				t.Errorf("%s: protocol %q mode %q, want http (ready + unacked) and QueueLength", tw, md["protocol"], md["mode"])
			}
			if md["useRegex"] != "true" || (md["operation"] != "" && md["operation"] != "sum") {
				t.Errorf("%s: useRegex %q operation %q, want true and sum (every version's queue of the model, as /capacity?model= sums them)", tw, md["useRegex"], md["operation"])
			}
			re, err := regexp.Compile(md["queueName"])
			if err != nil {
				t.Errorf("%s: queueName %q: %v", tw, md["queueName"], err)
				continue
			}
			model, jobs, why := "", false, ""
			if strings.Contains(md["queueName"], regexp.QuoteMeta(queue.JobQueuePrefix)) {
				jobs = true
				model, why = modelOfRegex(re, queue.Route.JobQueue, queue.Route.RequestQueue)
			} else {
				model, why = modelOfRegex(re, queue.Route.RequestQueue, queue.Route.JobQueue)
			}
			if model == "" {
				t.Errorf("%s: queueName %q %s", tw, md["queueName"], why)
				continue
			}
			if jobs {
				jobFor[model]++
			} else {
				requestFor[model]++
			}
			if s := slots(model, jobs); md["value"] != s {
				t.Errorf("%s: value %q, want %q (the worker's slots for %s, jobs %v: its config.yaml, else the pool's setting)", tw, md["value"], s, model, jobs)
			}
			if _, ok := md["host"]; ok {
				t.Errorf("%s: host in metadata (it carries credentials: use the TriggerAuthentication)", tw)
			}
			if tr.AuthenticationRef == nil {
				t.Errorf("%s: no authenticationRef", tw)
			} else {
				authRefs = append(authRefs, tr.AuthenticationRef.Name)
			}
		default:
			t.Errorf("%s: unexpected trigger type", tw)
		}
	}
	for _, m := range want.models {
		wantCap, wantReq, wantJob := 0, 0, 0
		if want.trigger == "capacity" {
			wantCap = 1
		} else {
			wantReq = 1
		}
		if want.jobsTrigger {
			wantJob = 1
		}
		if capacityFor[m] != wantCap || requestFor[m] != wantReq || jobFor[m] != wantJob {
			t.Errorf("%s: model %s has %d capacity, %d request-queue and %d job-queue triggers, want %d, %d and %d",
				where, m, capacityFor[m], requestFor[m], jobFor[m], wantCap, wantReq, wantJob)
		}
	}
	if so.Spec.MinReplicaCount != nil && *so.Spec.MinReplicaCount == 0 && len(capacityFor) < len(want.models) {
		t.Errorf("%s: scales to zero without a capacity trigger for every model: nothing is queued while no worker runs, so it would never wake", where)
	}
	return authRefs
}

// helmCheckTriggerAuth: the TriggerAuthentication the rabbitmq triggers use reads
// the management URL from the API's own Secret key; none is rendered unused.
func helmCheckTriggerAuth(t testing.TB, r *helmRendered, authRefs []string, mgmt helmEnvVar) {
	t.Helper()
	tas := r.custom["TriggerAuthentication"]
	if len(authRefs) == 0 {
		if len(tas) > 0 {
			t.Errorf("%d TriggerAuthentications rendered but none used", len(tas))
		}
		return
	}
	if len(tas) != 1 {
		t.Fatalf("%d TriggerAuthentications, want 1", len(tas))
	}
	var ta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			SecretTargetRef []struct {
				Parameter string `json:"parameter"`
				Name      string `json:"name"`
				Key       string `json:"key"`
			} `json:"secretTargetRef"`
		} `json:"spec"`
	}
	helmRecode(t, tas[0], &ta)
	for _, ref := range authRefs {
		if ref != ta.Metadata.Name {
			t.Errorf("authenticationRef %q, rendered TriggerAuthentication %q", ref, ta.Metadata.Name)
		}
	}
	if len(ta.Spec.SecretTargetRef) != 1 || mgmt.secret == nil {
		t.Fatalf("TriggerAuthentication %s: %+v; API MANAGEMENT_URL from a Secret: %v", ta.Metadata.Name, ta.Spec.SecretTargetRef, mgmt.secret != nil)
	}
	if s := ta.Spec.SecretTargetRef[0]; s.Parameter != "host" || s.Name != mgmt.secret.Name || s.Key != mgmt.secret.Key {
		t.Errorf("TriggerAuthentication %s: %+v, want host from %s/%s (the API's MANAGEMENT_URL)", ta.Metadata.Name, s, mgmt.secret.Name, mgmt.secret.Key)
	}
}

// helmCheckSecretRef: a secretKeyRef names the user's Secret or a key the chart's
// Secret really has.
func helmCheckSecretRef(t testing.TB, r *helmRendered, want helmExpect, where string, ref *corev1.SecretKeySelector) {
	t.Helper()
	if want.existingSecret != "" {
		if ref.Name != want.existingSecret {
			t.Errorf("%s: Secret %q, want existingSecret %q", where, ref.Name, want.existingSecret)
		}
		return
	}
	s := r.secrets[ref.Name]
	if s == nil {
		t.Errorf("%s: Secret %q is not rendered", where, ref.Name)
		return
	}
	if v, ok := s.Data[ref.Key]; !ok || len(v) == 0 {
		t.Errorf("%s: Secret %s has no (or an empty) key %q", where, ref.Name, ref.Key)
	}
}

func helmCheckSecurity(t testing.TB, where string, pod *corev1.PodSecurityContext, c *corev1.SecurityContext) {
	t.Helper()
	if pod == nil || c == nil {
		t.Errorf("%s: pod securityContext %v, container securityContext %v", where, pod != nil, c != nil)
		return
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(pod.RunAsNonRoot) || pod.RunAsUser == nil || *pod.RunAsUser != 65532 {
		t.Errorf("%s: pod must run as non-root uid 65532 (runAsNonRoot %v, runAsUser %v)", where, pod.RunAsNonRoot, pod.RunAsUser)
	}
	if pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile %+v, want RuntimeDefault", where, pod.SeccompProfile)
	}
	if c.RunAsNonRoot != nil && !*c.RunAsNonRoot {
		t.Errorf("%s: container runAsNonRoot false", where)
	}
	if c.RunAsUser != nil && *c.RunAsUser == 0 {
		t.Errorf("%s: container runs as root", where)
	}
	if !isTrue(c.ReadOnlyRootFilesystem) {
		t.Errorf("%s: root filesystem not read-only", where)
	}
	if c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation not false", where)
	}
	if isTrue(c.Privileged) {
		t.Errorf("%s: privileged", where)
	}
	if c.Capabilities == nil || !slices.Contains(c.Capabilities.Drop, "ALL") || len(c.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities %+v, want drop ALL and add none", where, c.Capabilities)
	}
	if c.SeccompProfile != nil && c.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: container seccompProfile %+v", where, c.SeccompProfile)
	}
}

// helmContainerPort resolves a probe's or Service's target port (a name or a
// number) against the container; 0 when it names no port of it.
func helmContainerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && p.StrVal == cp.Name) || (p.Type == intstr.Int && p.IntVal == cp.ContainerPort) {
			return cp.ContainerPort
		}
	}
	return 0
}

// helmJSONName is the JSON name of a struct field (its json tag).
func helmJSONName(t testing.TB, v any, field string) string {
	t.Helper()
	f, ok := reflect.TypeOf(v).FieldByName(field)
	if !ok {
		t.Fatalf("%T has no field %s", v, field)
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		t.Fatalf("%T.%s has no json name", v, field)
	}
	return name
}

// helmRecode converts an unstructured object into a typed view of it.
func helmRecode(t testing.TB, in map[string]any, out any) {
	t.Helper()
	raw, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
}

func helmKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type helmChartYAML struct {
	APIVersion string `json:"apiVersion"`
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

func helmChartMeta(t testing.TB) helmChartYAML {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(helmChartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c helmChartYAML
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.APIVersion != "v2" || c.Version == "" || c.AppVersion == "" {
		t.Fatalf("Chart.yaml: apiVersion %q version %q appVersion %q", c.APIVersion, c.Version, c.AppVersion)
	}
	return c
}
