package testbroker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warren-farm/warren/internal/testdocker"
)

// dockerContainerName is the container the Docker fallback runs the broker
// in. It is shared by all test binaries (go test ./... runs packages in
// parallel) and kept between runs to save its ~10s boot; remove it with
// `docker rm -f warren-testbroker-rabbitmq`.
const dockerContainerName = "warren-testbroker-rabbitmq"

// dockerPrometheus is the published address of the container's prometheus
// plugin (port 15692), set by dockerBroker (under resolveOnce).
var dockerPrometheus string

// dockerBroker starts (or reuses) the RabbitMQ container and returns its AMQP
// and management URLs. It fails fast when no Docker engine answers. Its ports
// are published on 127.0.0.1.
func dockerBroker() (amqpURL, mgmtURL string, err error) {
	// The broker logs to a file in a host directory mounted at the same path, so
	// that the log_files the management API names can be read here (WatchLog).
	logDir := filepath.Join(os.TempDir(), dockerContainerName+"-log")
	addrs, err := testdocker.Service{
		Name:  dockerContainerName,
		Image: testdocker.RabbitMQImage,
		Ports: []string{"5672/tcp", "15672/tcp", "15692/tcp"},
		Dirs:  []string{logDir},
		Env: []string{
			"RABBITMQ_LOGS=" + filepath.Join(logDir, "rabbit.log"),
			// The management image turns the metrics collector off; the
			// management API's connection lists and queue counters
			// (Vhost without rabbitmqctl) need it.
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-rabbitmq_management_agent disable_metrics_collector false",
		},
		Ready: func(addrs map[string]string) error {
			if err := probeAMQP("amqp://guest:guest@" + addrs["5672/tcp"] + "/"); err != nil {
				return err
			}
			// The node's stats (its log_files, for WatchLog) come with the
			// collector's first round, a few seconds after boot.
			req, err := http.NewRequest("GET", "http://"+addrs["15672/tcp"]+"/api/nodes", nil)
			if err != nil {
				return err
			}
			req.SetBasicAuth("guest", "guest")
			resp, err := httpClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var nodes []struct {
				LogFiles []string `json:"log_files"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
				return fmt.Errorf("GET /api/nodes: %s: %v", resp.Status, err)
			}
			if len(nodes) == 0 || len(nodes[0].LogFiles) == 0 {
				return errors.New("the node's stats are not collected yet")
			}
			return nil
		},
	}.Start()
	if err != nil {
		return "", "", err
	}
	dockerPrometheus = addrs["15692/tcp"]
	return "amqp://guest:guest@" + addrs["5672/tcp"] + "/", "http://guest:guest@" + addrs["15672/tcp"], nil
}

// PrometheusAddr returns host:port of the shared broker's prometheus plugin:
// the published port 15692 of the Docker fallback's container, else port 15692
// on the management API's host.
func PrometheusAddr(t testing.TB) string {
	t.Helper()
	b := shared(t)
	if strings.HasPrefix(b.source, "Docker") && dockerPrometheus != "" {
		return dockerPrometheus
	}
	return net.JoinHostPort(b.mgmtURL.Hostname(), "15692")
}

// dockerCtl runs rabbitmqctl -q in the Docker fallback's container.
func dockerCtl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := testdocker.Exec(dockerContainerName, "", cliTimeout, append([]string{"rabbitmqctl", "-q"}, args...)...)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	return out
}
