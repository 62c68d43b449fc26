package api

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/warren-farm/warren/internal/lifecycle"
	"github.com/warren-farm/warren/pkg/jobs"
	"github.com/warren-farm/warren/pkg/jobs/boltstore"
	"github.com/warren-farm/warren/pkg/queue"
)

func openStore(t *testing.T) jobs.Store {
	t.Helper()
	st, err := boltstore.OpenBolt(boltstore.BoltConfig{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// closed reports whether a store was closed (every method then says ErrClosed).
func closed(st jobs.Store) bool {
	_, err := st.Get(context.Background(), "x")
	return errors.Is(err, jobs.ErrClosed)
}

func TestNewReleasesTheStoreWhenItFails(t *testing.T) {
	st := openStore(t)
	if _, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://x/"}, DefaultModel: "no.dots", Jobs: JobsConfig{Store: st}}); err == nil {
		t.Fatal("a bad DEFAULT_MODEL was accepted")
	}
	if !closed(st) {
		t.Fatal("New failed and left the job store open")
	}
}

func TestStopBeforeRunReleasesTheStore(t *testing.T) {
	// cmd/api: New succeeded, then Listen failed.
	st := openStore(t)
	srv, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:1/"}, Jobs: JobsConfig{Store: st}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := srv.Stop(context.Background()); err != nil {
			t.Fatalf("Stop #%d: %v", i, err)
		}
	}
	if !closed(st) || srv.State() != lifecycle.Stopped {
		t.Fatalf("store closed %v, state %s", closed(st), srv.State())
	}
	if err := srv.Run(context.Background(), nil); err == nil {
		t.Fatal("a stopped server ran")
	}
}

func TestRunStopsOnStopAndReleasesEverything(t *testing.T) {
	st := openStore(t)
	srv, err := New(Config{AMQP: queue.DialConfig{URL: "amqp://guest:guest@127.0.0.1:1/"}, Jobs: JobsConfig{Store: st},
		DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background(), ln) }()
	for srv.State() == lifecycle.New { // a Stop before Run would only release (tested above)
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !closed(st) {
		t.Fatal("the job store is still open")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("still listening")
	}
}
