package testbroker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
)

// NodeOptions configures a private node started with StartNodeWith. The zero
// value is StartNode's node.
type NodeOptions struct {
	// ExtraConfig is appended to the node's rabbitmq.conf (new-style sysctl
	// format), e.g. "consumer_timeout = 3000". It must not set the listeners,
	// which the node owns.
	ExtraConfig string
	// AdditionalErlArgs is appended to RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS,
	// e.g. "-rabbit channel_tick_interval 1000" to set an application
	// environment key that rabbitmq.conf does not expose.
	AdditionalErlArgs string
	// TLS, when set, makes the node TLS-only: its one listener (on Port) speaks
	// amqps, the plain listener is off, and AMQPURL is amqps://.
	TLS *NodeTLS
	// Cookie, when set, is written to the node's $HOME/.erlang.cookie (mode
	// 0400) before it starts: nodes that share a cookie can form a cluster
	// (see StartCluster). Otherwise Erlang makes a random one.
	Cookie string
}

// NodeTLS is the TLS listener of a private node. The files are PEM (see
// pkg/tlsconfig/tlstest, which makes them).
type NodeTLS struct {
	// CAFile holds the CAs the node trusts for client certificates (and sends
	// with its own chain).
	CAFile string
	// CertFile and KeyFile are the node's server certificate pair; its names
	// must include 127.0.0.1, the host of AMQPURL.
	CertFile, KeyFile string
	// RequireClientCert refuses clients without a certificate signed by CAFile
	// (ssl_options.fail_if_no_peer_cert); otherwise a client may present none,
	// but one it presents must verify.
	RequireClientCert bool
	// ClientCertFile and ClientKeyFile are the pair the node's own readiness
	// probe presents; required with RequireClientCert.
	ClientCertFile, ClientKeyFile string
}

// listenerConf is the rabbitmq.conf of the node's listener on port.
func (o NodeOptions) listenerConf(port int) string {
	if o.TLS == nil {
		return fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n", port)
	}
	return fmt.Sprintf(`listeners.tcp = none
listeners.ssl.default = 127.0.0.1:%d
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = %t
`, port, o.TLS.CAFile, o.TLS.CertFile, o.TLS.KeyFile, o.TLS.RequireClientCert)
}

// probeTLS is the TLS configuration of the node's readiness probe (nil for a
// plain node).
func (o NodeOptions) probeTLS() (*tls.Config, error) {
	if o.TLS == nil {
		return nil, nil
	}
	pem, err := os.ReadFile(o.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", o.TLS.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if o.TLS.ClientCertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.TLS.ClientCertFile, o.TLS.ClientKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	} else if o.TLS.RequireClientCert {
		return nil, fmt.Errorf("NodeTLS.RequireClientCert needs ClientCertFile and ClientKeyFile for the readiness probe")
	}
	return cfg, nil
}

func (o NodeOptions) confLines() string {
	s := strings.TrimSpace(o.ExtraConfig)
	if s == "" {
		return ""
	}
	return "# NodeOptions.ExtraConfig\n" + s + "\n"
}

func (o NodeOptions) erlArgs() string {
	s := strings.TrimSpace(o.AdditionalErlArgs)
	if s == "" {
		return ""
	}
	return " " + s
}
