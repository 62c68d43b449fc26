package redisstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/jobstest"
	"github.com/warren-farm/warren/pkg/jobs/redisstore/redistest"
	"github.com/warren-farm/warren/pkg/tlsconfig"
	"github.com/warren-farm/warren/pkg/tlsconfig/tlstest"
)

// A private redis-server that speaks only TLS, wants a client certificate and a
// password: the store passes the whole Store contract over rediss:// with the
// CA, the client certificate and the password; a wrong CA, a wrong password, a
// missing client certificate and a plain URL are refused with errors that say so.
func TestRedisOverTLSWithPassword(t *testing.T) {
	redistest.URL(t) // skip once under -short, fail once without Redis
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "redis")
	other := tlstest.NewCA(t, dir, "other")
	server := ca.Server(t, "redis-server")
	client := ca.Client(t, "warren-api")
	const password = "s3cret-for-tests"
	addr := redistest.StartServer(t, redistest.ServerOptions{Password: password,
		TLS: &redistest.ServerTLS{CAFile: ca.File, CertFile: server.CertFile, KeyFile: server.KeyFile, AuthClients: "yes"}})
	url := redistest.URLFor(addr, password, true)
	good := tlsconfig.Client{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, Setting: "REDIS"}

	t.Run("contract", func(t *testing.T) {
		n := 0 // a prefix per store: the server is the test's own and dies with it
		jobstest.Run(t, func(t *testing.T, ttl time.Duration, now func() time.Time) jobs.Store {
			n++
			s, err := OpenRedis(context.Background(), RedisConfig{URL: url, TLS: good, Prefix: fmt.Sprintf("tls-%d:", n), TTL: ttl, Now: now})
			if err != nil {
				t.Fatalf("OpenRedis over TLS: %v", err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			return s
		})
	})

	refused := func(t *testing.T, url string, c tlsconfig.Client, want ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := OpenRedis(ctx, RedisConfig{URL: url, TLS: c})
		if err == nil {
			s.Close()
			t.Fatal("opened")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
	}
	t.Run("wrong CA", func(t *testing.T) {
		bad := good
		bad.CAFile = other.File
		refused(t, url, bad, "TLS to "+addr, "not signed by the CA in REDIS_CA_FILE "+other.File)
	})
	t.Run("wrong password", func(t *testing.T) {
		refused(t, redistest.URLFor(addr, "wrong", true), good, "WRONGPASS")
	})
	t.Run("no password", func(t *testing.T) {
		refused(t, redistest.URLFor(addr, "", true), good, "NOAUTH")
	})
	t.Run("no client certificate", func(t *testing.T) {
		refused(t, url, tlsconfig.Client{CAFile: ca.File, Setting: "REDIS"}, "TLS to "+addr, "REDIS_CERT_FILE, REDIS_KEY_FILE")
	})
	t.Run("plain URL with TLS files", func(t *testing.T) {
		refused(t, redistest.URLFor(addr, password, false), good, "REDIS_URL is redis:// (plain): use rediss://")
	})
	t.Run("skip_verify", func(t *testing.T) {
		refused(t, url+"?skip_verify=true", good, "skip_verify")
	})
	t.Run("plain URL on the TLS port", func(t *testing.T) {
		refused(t, redistest.URLFor(addr, password, false), tlsconfig.Client{})
	})
}

// The password path without TLS: redis:// with a password works, a wrong one is
// refused.
func TestRedisPassword(t *testing.T) {
	redistest.URL(t)
	addr := redistest.StartServer(t, redistest.ServerOptions{Password: "pw-plain"})
	s, err := OpenRedis(context.Background(), RedisConfig{URL: redistest.URLFor(addr, "pw-plain", false)})
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	if err := s.PutMeta(context.Background(), "k", []byte("v")); err != nil {
		t.Errorf("PutMeta: %v", err)
	}
	s.Close()
	if s, err := OpenRedis(context.Background(), RedisConfig{URL: redistest.URLFor(addr, "nope", false)}); err == nil {
		s.Close()
		t.Error("a wrong password opened the store")
	} else if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v", err)
	}
}
