package testbroker

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// dockerContainerName is the container the Docker fallback runs the broker
// in. It is shared by all test binaries (go test ./... runs packages in
// parallel) and kept between runs to save its ~10s boot; remove it with
// `docker rm -f warren-testbroker-rabbitmq`.
const dockerContainerName = "warren-testbroker-rabbitmq"

const (
	dockerRepository = "rabbitmq"
	dockerTag        = "3.10-management"
)

// dockerBroker starts (or reuses) the RabbitMQ container and returns its AMQP
// and management URLs. It fails fast when no Docker engine answers.
func dockerBroker() (amqpURL, mgmtURL string, err error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return "", "", fmt.Errorf("no Docker client: %v", err)
	}
	// Never leave an idle connection goroutine behind (goleak).
	defer pool.Client.HTTPClient.CloseIdleConnections()

	pool.Client.SetTimeout(5 * time.Second)
	if err := pool.Client.Ping(); err != nil {
		return "", "", fmt.Errorf("no Docker engine answers: %v", err)
	}
	pool.Client.SetTimeout(0) // image pulls take long

	res, found := pool.ContainerByName(dockerContainerName)
	if found && (!res.Container.State.Running || res.GetPort("5672/tcp") == "" || res.GetPort("15672/tcp") == "") {
		_ = pool.RemoveContainerByName(dockerContainerName)
		found = false
	}
	if !found {
		res, err = pool.RunWithOptions(&dockertest.RunOptions{
			Name:         dockerContainerName,
			Repository:   dockerRepository,
			Tag:          dockerTag,
			ExposedPorts: []string{"5672/tcp", "15672/tcp"},
			Labels:       map[string]string{"warren-testbroker": "1"},
		}, func(hc *dc.HostConfig) {
			hc.AutoRemove = true
			hc.RestartPolicy = dc.NeverRestart()
		})
		if err != nil {
			// Another test binary may have created it concurrently.
			var again bool
			if res, again = pool.ContainerByName(dockerContainerName); !again {
				return "", "", fmt.Errorf("starting %s:%s: %v", dockerRepository, dockerTag, err)
			}
		}
	}

	host := dockerHost()
	hostPort := func(id string) string {
		if host != "" {
			return net.JoinHostPort(host, res.GetPort(id))
		}
		return res.GetHostPort(id)
	}
	amqpURL = "amqp://guest:guest@" + hostPort("5672/tcp") + "/"
	mgmtURL = "http://guest:guest@" + hostPort("15672/tcp")

	pool.MaxWait = 2 * time.Minute
	if err := pool.Retry(func() error { return probeAMQP(amqpURL) }); err != nil {
		return "", "", fmt.Errorf("container %s started but AMQP at %s never answered: %v", dockerContainerName, amqpURL, err)
	}
	return amqpURL, mgmtURL, nil
}

// dockerHost returns the host of a tcp:// DOCKER_HOST (ports are published
// there, not on localhost), else "".
func dockerHost() string {
	h := os.Getenv("DOCKER_HOST")
	if !strings.HasPrefix(h, "tcp://") {
		return ""
	}
	u, err := url.Parse(h)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
