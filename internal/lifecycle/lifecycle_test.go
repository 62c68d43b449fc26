package lifecycle

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStateNeverLeavesDrainingForReady(t *testing.T) {
	var l Lifecycle
	l.Init(nil)
	l.Set(Starting)
	select {
	case <-l.Ready():
		t.Fatal("ready while starting")
	default:
	}
	l.Set(Ready)
	<-l.Ready()
	l.Set(Draining)
	l.Set(Ready) // a late "ready" after a stop began
	if l.State() != Draining {
		t.Fatalf("state %s", l.State())
	}
}

func TestStopIsIdempotentAndReturnsRunsResult(t *testing.T) {
	var l Lifecycle
	l.Init(nil)
	l.Set(Starting)
	boom := errors.New("boom")
	go func() {
		<-l.Stopping()
		l.Finish(boom)
	}()
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.Stop(ctx); !errors.Is(err, boom) {
			t.Fatalf("Stop #%d = %v", i, err)
		}
		cancel()
	}
	if l.State() != Stopped {
		t.Fatalf("state %s", l.State())
	}
}

func TestStopOfANeverRunComponentReleasesWhatItsConstructorOpened(t *testing.T) {
	var l Lifecycle
	l.Init(nil)
	closed := false
	l.OnStop("store", func(context.Context) error { closed = true; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.Stop(ctx); err != nil || l.State() != Stopped || !closed {
		t.Fatalf("%v %s closed=%v", err, l.State(), closed)
	}
	if l.Start() {
		t.Fatal("a stopped component started")
	}
}

func TestStopGivesUpWithItsContext(t *testing.T) {
	var l Lifecycle
	l.Init(nil)
	l.Set(Ready)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v", err)
	}
}

func TestTeardownIsLIFOAndNamesFailures(t *testing.T) {
	var l Lifecycle
	l.Init(nil)
	var order []string
	for _, n := range []string{"store", "broker", "http"} {
		l.OnStop(n, func(context.Context) error {
			order = append(order, n)
			if n == "broker" {
				return errors.New("already closed")
			}
			return nil
		})
	}
	err := l.Teardown(context.Background())
	if strings.Join(order, ",") != "http,broker,store" {
		t.Fatalf("order %v", order)
	}
	if err == nil || err.Error() != "broker: already closed" {
		t.Fatalf("err %v", err)
	}
	if err := l.Teardown(context.Background()); err != nil || len(order) != 3 {
		t.Fatal("cleanups ran twice")
	}
}
