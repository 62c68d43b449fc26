package cli_test

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warren-farm/warren/internal/cli"
	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/queue"
	"github.com/warren-farm/warren/pkg/tlsconfig"
)

// An https MANAGEMENT_URL on a broker with a private CA is verified against
// AMQP_CA_FILE; without it, against the system's roots (which do not know the CA).
func TestManagementClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	withCA := queue.DialConfig{URL: "amqps://127.0.0.1:5671/", TLS: tlsconfig.Client{CAFile: caFile}}

	c, err := cli.ManagementClient(srv.URL, withCA)
	if err != nil || c == nil {
		t.Fatalf("ManagementClient: %v, %v", c, err)
	}
	resp, err := c.Get(srv.URL + "/api/overview")
	if err != nil {
		t.Fatalf("GET with AMQP_CA_FILE: %v", err)
	}
	resp.Body.Close()
	if c.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify {
		t.Error("verification off")
	}

	// Nothing to add: the packages' default client, which does not trust the CA.
	for _, tc := range []struct {
		url string
		d   queue.DialConfig
	}{{srv.URL, queue.DialConfig{URL: "amqps://127.0.0.1:5671/"}}, {strings.Replace(srv.URL, "https", "http", 1), withCA}, {"", withCA}} {
		if c, err := cli.ManagementClient(tc.url, tc.d); c != nil || err != nil {
			t.Errorf("%q with %+v: %v, %v; want the default client", tc.url, tc.d.TLS, c, err)
		}
	}
	if resp, err := http.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("the default client trusts the test CA")
	}

	bad := queue.DialConfig{TLS: tlsconfig.Client{CAFile: filepath.Join(dir, "missing.pem")}}
	if _, err := cli.ManagementClient(srv.URL, bad); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "AMQP_CA_FILE") {
		t.Errorf("missing CA file: %v", err)
	}
}

// TestLoadBrokerURLList: AMQP_URL may list a cluster's nodes; a bad one is
// named at startup.
func TestLoadBrokerURLList(t *testing.T) {
	load := func(v string) (string, error) {
		l, err := config.NewLoader("worker", nil, func(k string) string {
			if k == "AMQP_URL" {
				return v
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		d := cli.LoadBroker(l)
		return d.URL, l.Err()
	}
	good := "amqp://u:p@127.0.0.1:5672/v,amqp://u:p@127.0.0.1:5673/v"
	if u, err := load(good); err != nil || u != good {
		t.Errorf("LoadBroker(%q) = %q, %v", good, u, err)
	}
	if _, err := load("amqp://u:p@127.0.0.1:5672/v,amqp://u:p@127.0.0.1:5673/w"); err == nil ||
		!strings.Contains(err.Error(), "AMQP_URL") || !strings.Contains(err.Error(), "URL 2 of 2") {
		t.Errorf("a list with another vhost: %v, want AMQP_URL and the 2nd URL named", err)
	}
}
