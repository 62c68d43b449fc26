// Package tlsconfig builds the TLS settings of warren's encrypted links from PEM
// files: the client side of the broker (amqps://) and Redis (rediss://)
// connections ([Client]), and the server side of the HTTP listeners ([Reloader]),
// whose certificate pair is read again when its files change.
//
// Verification is never turned off: a client without a CA file trusts the system's
// roots, and an error of a handshake that failed verification is rewritten by
// [Client.Explain] to name the CA it was checked against and the host.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Client is the TLS of a client link, as files.
type Client struct {
	// CAFile is a PEM bundle of the CAs the server's certificate must chain to;
	// empty trusts the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's certificate pair (PEM), for servers
	// that ask for one; both or neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry; empty means the
	// host of the URL.
	ServerName string
	// Setting is the prefix of the variables the files come from ("AMQP", "REDIS"),
	// so that errors can say which variable to change; empty names no variable.
	Setting string
}

// IsZero reports whether nothing is set: the link uses TLS only if its URL says
// so, with the system's roots.
func (c Client) IsZero() bool { return c == Client{Setting: c.Setting} }

// Config reads the files and returns the client's TLS configuration. Errors name
// the file and what is wrong with it.
func (c Client) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := readPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.varName("CA_FILE"), err)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: client certificate pair %s, %s: %w",
				c.varName("CERT_FILE"), c.varName("KEY_FILE"), c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case c.CertFile != "":
		return nil, fmt.Errorf("%s is set but %s is empty: a client certificate needs its key", c.varName("CERT_FILE"), c.varName("KEY_FILE"))
	case c.KeyFile != "":
		return nil, fmt.Errorf("%s is set but %s is empty: a client key needs its certificate", c.varName("KEY_FILE"), c.varName("CERT_FILE"))
	}
	return cfg, nil
}

// varName returns the variable that holds a setting ("AMQP_CA_FILE"), or a
// description when Setting is empty.
func (c Client) varName(suffix string) string {
	if c.Setting == "" {
		return strings.ToLower(strings.ReplaceAll(suffix, "_", " "))
	}
	return c.Setting + "_" + suffix
}

// readPool reads a PEM bundle of CA certificates; a file without any is an error
// (an empty pool would trust nothing, and say so only at the first handshake).
func readPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return pool, nil
}

// Explain rewrites the error of a connection to addr (host:port) that failed in
// its TLS handshake so that it says what to check: the CA the server's certificate
// was verified against, the name it was checked for, or the client certificate.
// Other errors are returned as they are.
func (c Client) Explain(err error, addr string) error {
	if err == nil {
		return nil
	}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		alert    tls.AlertError
		recAlert tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("TLS to %s: the server's certificate is not signed by %s: %w", addr, c.trusted(), err)
	case errors.As(err, &hostname):
		return fmt.Errorf("TLS to %s: the server's certificate is not valid for the name %q (%s names the server to expect): %w",
			addr, hostname.Host, c.varName("SERVER_NAME"), err)
	case errors.As(err, &invalid):
		return fmt.Errorf("TLS to %s: the server's certificate (checked against %s) is not valid: %w", addr, c.trusted(), err)
	case errors.As(err, &recAlert):
		return fmt.Errorf("TLS to %s: the server did not answer TLS (is it a plain listener? then use a plain URL): %w", addr, err)
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls:"):
		return fmt.Errorf("TLS to %s: the server refused the handshake (%s): %w", addr, c.refusedHint(), err)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		closedText(err.Error()):
		// With TLS 1.3 the client finishes its handshake before the server has
		// checked the client certificate: a refusal then arrives as an alert or,
		// when the client is writing at that moment, as a reset.
		return fmt.Errorf("TLS to %s: the server closed the connection as it opened (%s): %w", addr, c.refusedHint(), err)
	}
	return err
}

// closedText recognises a hang-up in an error that a client library flattened
// to text (amqp091-go reports a failed read as Exception (501) Reason: "EOF").
func closedText(msg string) bool {
	return strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "broken pipe") ||
		strings.HasSuffix(strings.TrimRight(msg, `"`), "EOF")
}

// refusedHint is what to check when the server ends a TLS connection at its start.
func (c Client) refusedHint() string {
	if c.CertFile == "" {
		return fmt.Sprintf("does it require a client certificate? %s, %s", c.varName("CERT_FILE"), c.varName("KEY_FILE"))
	}
	return fmt.Sprintf("is the client certificate %s signed by a CA the server trusts?", c.CertFile)
}

// trusted describes the CAs a server's certificate is checked against.
func (c Client) trusted() string {
	if c.CAFile != "" {
		return fmt.Sprintf("the CA in %s %s", c.varName("CA_FILE"), c.CAFile)
	}
	return fmt.Sprintf("a CA of the system's roots (%s is empty)", c.varName("CA_FILE"))
}
