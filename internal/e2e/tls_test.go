package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/testbroker"
	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
	"github.com/warren-farm/warren/pkg/tlsconfig/tlstest"
)

// httpsClient trusts only ca.
func httpsClient(ca *tlstest.CA) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		// A fresh handshake per request: the reload test must see the pair the
		// listener serves now, not a connection kept from before.
		DisableKeepAlives: true,
	}}
}

// startHTTPSProc is startProc for a binary whose listener serves HTTPS (the
// environment sets TLS_CERT_FILE and TLS_KEY_FILE): it waits for /health over
// HTTPS with c. proc.url stays http://; use httpsURL.
func startHTTPSProc(t *testing.T, c *http.Client, name string, env ...string) *proc {
	t.Helper()
	p := launch(t, name, "", "", env)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(httpsURL(p, "/health"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited while starting: %v\n%s", name, p.err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /health over HTTPS not answering 200 within 10s (last: %v)\n%s", name, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpsURL(p *proc, path string) string { return "https://" + p.addr + path }

// servedCN returns the common name of the certificate the listener at addr
// presents now.
func servedCN(t *testing.T, ca *tlstest.CA, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// installPair copies p to the listener's files, key first then certificate, each
// through a rename, as a certificate manager would.
func installPair(t *testing.T, p tlstest.Pair, certFile, keyFile string) {
	t.Helper()
	for _, f := range [][2]string{{p.KeyFile, keyFile}, {p.CertFile, certFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1]+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f[1]+".new", f[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// The farm over encrypted links, through the real binaries: a private RabbitMQ
// node that speaks only amqps and requires client certificates (certificates made
// here), an API and a worker that dial it with the CA and a client certificate,
// both serving HTTPS, the API's job store on a private TLS-only redis-server with
// a password. /process, v2 infer and a job answer; the healthcheck probes HTTPS; a
// new certificate pair is served without a restart; a wrong CA keeps an API from
// becoming ready, with a log line naming the CA file and the host.
func TestEncryptedLinks(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	brokerCA := tlstest.NewCA(t, dir, "broker")
	wrongCA := tlstest.NewCA(t, dir, "wrong")
	httpCA := tlstest.NewCA(t, dir, "http")
	nodePair := brokerCA.Server(t, "rabbit")
	client := brokerCA.Client(t, "warren")
	node := testbroker.StartNodeWith(t, testbroker.NodeOptions{TLS: &testbroker.NodeTLS{
		CAFile: brokerCA.File, CertFile: nodePair.CertFile, KeyFile: nodePair.KeyFile,
		RequireClientCert: true, ClientCertFile: client.CertFile, ClientKeyFile: client.KeyFile,
	}})
	redisPair := brokerCA.Server(t, "redis")
	const redisPassword = "e2e-redis-pw"
	redisAddr := redistest.StartServer(t, redistest.ServerOptions{Password: redisPassword,
		TLS: &redistest.ServerTLS{CAFile: brokerCA.File, CertFile: redisPair.CertFile, KeyFile: redisPair.KeyFile, AuthClients: "yes"}})

	amqpEnv := []string{"AMQP_URL=" + node.AMQPURL, "AMQP_CA_FILE=" + brokerCA.File,
		"AMQP_CERT_FILE=" + client.CertFile, "AMQP_KEY_FILE=" + client.KeyFile}
	apiCert, apiKey := filepath.Join(dir, "api-tls.crt"), filepath.Join(dir, "api-tls.key")
	installPair(t, httpCA.Server(t, "api-1"), apiCert, apiKey)
	workerPair := httpCA.Server(t, "worker-1")
	c := httpsClient(httpCA)
	spec := newFarmSpec(t)

	w := startHTTPSProc(t, c, "worker", append(amqpEnv, "WORKER_ID=tls-w",
		"TLS_CERT_FILE="+workerPair.CertFile, "TLS_KEY_FILE="+workerPair.KeyFile)...)
	api := startHTTPSProc(t, c, "api", append(amqpEnv, "MANAGEMENT_URL=",
		"REDIS_URL="+redistest.URLFor(redisAddr, redisPassword, true), "REDIS_CA_FILE="+brokerCA.File,
		"REDIS_CERT_FILE="+client.CertFile, "REDIS_KEY_FILE="+client.KeyFile,
		"TLS_CERT_FILE="+apiCert, "TLS_KEY_FILE="+apiKey)...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := doWith(t, c, spec, "GET", httpsURL(api, "/ready"), "")
		if r.Status == 200 && r.json(t)["workers"] == float64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API over amqps never saw the worker: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("the farm answers over amqps and HTTPS", func(t *testing.T) {
		r := doWith(t, c, spec, "POST", httpsURL(api, "/process"), `{"data":"over tls"}`, "X-Request-ID", "tls-1")
		checkPrediction(t, r, "over tls", "tls-1")
		r = doWith(t, c, spec, "POST", httpsURL(api, "/v2/models/seed/infer"),
			`{"inputs":[{"name":"data","shape":[1],"datatype":"BYTES","data":["over tls"]}]}`)
		if r.Status != 200 || r.json(t)["model_name"] != "seed" {
			t.Fatalf("v2 infer: %d %s", r.Status, r.Body)
		}
		// A job: stored in the TLS redis-server, published and answered over amqps.
		r = doWith(t, c, spec, "POST", httpsURL(api, "/jobs"), `{"data":"a job over tls"}`)
		if r.Status != 202 || r.Header.Get("Location") == "" {
			t.Fatalf("POST /jobs: %d %s", r.Status, r.Body)
		}
		r = doWith(t, c, spec, "GET", httpsURL(api, r.Header.Get("Location")+"?wait=20"), "")
		if r.Status != 200 || r.json(t)["status"] != "succeeded" {
			t.Fatalf("the job: %d %s", r.Status, r.Body)
		}
		// The worker's own endpoints are HTTPS too.
		if r := doWith(t, c, nil, "GET", httpsURL(w, "/metrics"), ""); r.Status != 200 || !strings.Contains(string(r.Body), "warren_") {
			t.Errorf("worker /metrics over HTTPS: %d", r.Status)
		}
		// Plain HTTP to an HTTPS listener gets no answer from warren.
		if resp, err := http.Get(api.url("/ready")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Errorf("plain HTTP to the HTTPS listener answered 200")
			}
		}
		// A client that does not trust the listener's CA: its failed handshake is
		// in the API's log, in the log's own format, at debug level.
		if conn, err := tls.Dial("tcp", api.addr, &tls.Config{RootCAs: wrongCA.Pool()}); err == nil {
			conn.Close()
			t.Error("a client trusting another CA completed the handshake")
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(api.out.String(), `level=DEBUG msg="http: TLS handshake error from 127.0.0.1:`) {
			if time.Now().After(deadline) {
				t.Fatalf("the failed handshake is not logged at debug level through slog:\n%s", api.out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, line := range []string{"job store: redis", "rediss://:xxxxx@"} {
			if !strings.Contains(api.out.String(), line) {
				t.Errorf("the API's log does not say %q (password redacted)", line)
			}
		}
		if strings.Contains(api.out.String(), redisPassword) {
			t.Error("the API logged the Redis password")
		}
	})

	t.Run("healthcheck over HTTPS", func(t *testing.T) {
		for _, p := range []*proc{api, w} {
			cert, key := apiCert, apiKey
			if p == w {
				cert, key = workerPair.CertFile, workerPair.KeyFile
			}
			cmd := exec.Command(filepath.Join(binaries(t), p.name), "healthcheck")
			cmd.Env = append(os.Environ(), "HTTP_ADDR="+p.addr, "TLS_CERT_FILE="+cert, "TLS_KEY_FILE="+key)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s healthcheck over HTTPS: %v: %s", p.name, err, out)
			}
			// Without the TLS settings the probe speaks plain HTTP and fails.
			if code, out := runHealthcheck(t, p.name, p.addr); code != 1 {
				t.Errorf("%s plain healthcheck of an HTTPS listener: exit %d, want 1: %s", p.name, code, out)
			}
		}
	})

	t.Run("a new certificate pair is served without a restart", func(t *testing.T) {
		if got := servedCN(t, httpCA, api.addr); got != "api-1" {
			t.Fatalf("serves %q before the change", got)
		}
		installPair(t, httpCA.Server(t, "api-2"), apiCert, apiKey)
		changed := time.Now()
		for servedCN(t, httpCA, api.addr) != "api-2" {
			if time.Since(changed) > 10*time.Second {
				t.Fatalf("still serving api-1 10s after the change\n%s", api.out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("new pair served %v after the change", time.Since(changed).Round(time.Millisecond))
		select {
		case <-api.done:
			t.Fatal("the API exited")
		default:
		}
		if r := doWith(t, c, spec, "POST", httpsURL(api, "/process"), `{"data":"after the reload"}`); r.Status != 200 {
			t.Errorf("/process after the reload: %d %s", r.Status, r.Body)
		}
		if !strings.Contains(api.out.String(), "TLS certificate reloaded") {
			t.Error("the reload is not logged")
		}
	})

	// An API that does not trust the broker's certificate, or lacks the client
	// certificate the broker requires, never becomes ready and says why.
	notReady := func(t *testing.T, env []string, want ...string) {
		t.Helper()
		p := startProc(t, "api", append(env, "MANAGEMENT_URL=")...)
		// Every attempt is logged; wait for one line that says all of want (how a
		// refused client certificate surfaces varies between attempts: TLS 1.3
		// refuses it after the client's side of the handshake).
		says := func() bool {
			for _, line := range strings.Split(p.out.String(), "\n") {
				all := strings.Contains(line, "broker connection failed")
				for _, w := range want {
					all = all && strings.Contains(line, w)
				}
				if all {
					return true
				}
			}
			return false
		}
		deadline := time.Now().Add(15 * time.Second)
		for !says() {
			if time.Now().After(deadline) {
				t.Fatalf("no failed connection logged saying %q:\n%s", want, p.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // a few more attempts: still not ready
		if r := doChecked(t, spec, "GET", p.url("/ready"), ""); r.Status != 503 || r.json(t)["status"] != "starting" {
			t.Errorf("/ready: %d %s, want 503 starting", r.Status, r.Body)
		}
		log := p.out.String()
		if strings.Contains(log, "connected to broker") {
			t.Errorf("connected anyway:\n%s", log)
		}
	}
	host := strings.TrimSuffix(strings.TrimPrefix(node.AMQPURL, "amqps://guest:guest@"), "/")
	t.Run("wrong CA", func(t *testing.T) {
		notReady(t, []string{"AMQP_URL=" + node.AMQPURL, "AMQP_CA_FILE=" + wrongCA.File,
			"AMQP_CERT_FILE=" + client.CertFile, "AMQP_KEY_FILE=" + client.KeyFile},
			"TLS to "+host, "not signed by the CA in AMQP_CA_FILE "+wrongCA.File)
	})
	t.Run("no client certificate", func(t *testing.T) {
		notReady(t, []string{"AMQP_URL=" + node.AMQPURL, "AMQP_CA_FILE=" + brokerCA.File},
			"TLS to "+host, "does it require a client certificate? AMQP_CERT_FILE, AMQP_KEY_FILE")
	})
}

// TLS settings that cannot work are configuration errors (exit 2, each named)
// before anything is dialled or served.
func TestTLSConfigErrors(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "ca")
	a, b := ca.Server(t, "a"), ca.Server(t, "b")
	for _, tc := range []struct {
		binary string
		env    []string
		want   []string
	}{
		{"api", []string{"AMQP_URL=amqp://guest:guest@127.0.0.1:1/", "AMQP_CA_FILE=" + ca.File},
			[]string{"AMQP_URL=", "is plain amqp:// but AMQP_CA_FILE"}},
		{"worker", []string{"TLS_CERT_FILE=" + a.CertFile},
			[]string{"TLS_KEY_FILE=", "must be set when TLS_CERT_FILE is"}},
		{"worker", []string{"AMQP_URL=amqps://guest:guest@127.0.0.1:1/", "AMQP_KEY_FILE=" + a.KeyFile},
			[]string{"AMQP_CERT_FILE=", "must be set when AMQP_KEY_FILE is"}},
		{"api", []string{"REDIS_URL=redis://127.0.0.1:1/0", "REDIS_CA_FILE=" + ca.File},
			[]string{"REDIS_CA_FILE=", "REDIS_URL is not rediss://"}},
		{"api", []string{"MANAGEMENT_URL=", "TLS_CERT_FILE=" + a.CertFile, "TLS_KEY_FILE=" + b.KeyFile},
			[]string{"TLS_CERT_FILE, TLS_KEY_FILE", a.CertFile, b.KeyFile}},
		{"worker", []string{"AMQP_URL=amqps://guest:guest@127.0.0.1:1/", "AMQP_CA_FILE=" + filepath.Join(dir, "missing.pem")},
			[]string{"AMQP_CA_FILE", "missing.pem"}},
	} {
		cmd := exec.Command(filepath.Join(binaries(t), tc.binary))
		cmd.Env = append(os.Environ(), append([]string{"HTTP_ADDR=" + freeAddr(t), "DATA_DIR=" + t.TempDir(),
			"MODEL_REPOSITORY=" + modelRepository(t), "MODELS=seed"}, tc.env...)...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s %v: still running after 20s:\n%s", tc.binary, tc.env, out)
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s %v: %v, want exit 2:\n%s", tc.binary, tc.env, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s %v: output does not say %q:\n%s", tc.binary, tc.env, w, out)
			}
		}
	}
}

// make run with TLS_CERT_FILE: every process serves HTTPS, run.sh probes them over
// HTTPS, says so, and the farm answers; Ctrl-C stops it all.
func TestMakeRunHTTPS(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "make-run")
	pair := ca.Server(t, "local")
	m := startMakeRun(t, 1, nil, "TLS_CERT_FILE="+pair.CertFile, "TLS_KEY_FILE="+pair.KeyFile)
	m.waitOutput(time.Minute, "warren is running, ready")
	base := fmt.Sprintf("https://127.0.0.1:%d", m.apiPort)
	m.waitOutput(0, "API on "+base)
	m.waitOutput(0, "--cacert <your CA> "+base+"/ready")
	c := httpsClient(ca)
	r := doWith(t, c, newFarmSpec(t), "POST", base+"/process", `{"data":"make run over https"}`, "X-Request-ID", "mr-1")
	checkPrediction(t, r, "make run over https", "mr-1")
	if resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/health", m.base)); err != nil {
		t.Errorf("the worker over HTTPS: %v", err)
	} else {
		resp.Body.Close()
	}
	m.interrupt(1)
}
