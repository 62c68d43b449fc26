package capacity_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/warren-farm/warren/pkg/capacity"
	"github.com/warren-farm/warren/pkg/queue"
)

// Routes used across the tests.
var (
	digits1 = queue.Route{Model: "digits", Version: "1"}
	digits2 = queue.Route{Model: "digits", Version: "2"}
	resnet7 = queue.Route{Model: "resnet", Version: "7"}
)

func newFarm(t testing.TB, cfg capacity.Config) *capacity.Farm {
	t.Helper()
	f, err := capacity.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// track tracks routes in f or fails t.
func track(t testing.TB, f *capacity.Farm, routes ...queue.Route) {
	t.Helper()
	for _, r := range routes {
		if err := f.Track(r); err != nil {
			t.Fatalf("Track(%v): %v", r, err)
		}
	}
}

// snap returns r's snapshot or fails t.
func snap(t testing.TB, f *capacity.Farm, r queue.Route) capacity.Snapshot {
	t.Helper()
	s, ok := f.Snapshot(r)
	if !ok {
		t.Fatalf("Snapshot(%v): not tracked", r)
	}
	return s
}

// list is a GET /api/queues/{vhost} answer made of the given JSON objects.
func list(queues ...string) string { return "[" + strings.Join(queues, ",") + "]" }

// fakeMgmt is a management API answering the queue list from memory: no
// network, so it also works inside a synctest bubble.
type fakeMgmt struct {
	mu     sync.Mutex
	status int
	body   string
	err    error
	reqs   []*http.Request
}

func (f *fakeMgmt) set(status int, body string, err error) {
	f.mu.Lock()
	f.status, f.body, f.err = status, body, err
	f.mu.Unlock()
}

func (f *fakeMgmt) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeMgmt) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
	if f.err != nil {
		return nil, f.err
	}
	return &http.Response{StatusCode: f.status, Status: strconv.Itoa(f.status) + " " + http.StatusText(f.status),
		Body: io.NopCloser(strings.NewReader(f.body)), Request: r}, nil
}

var _ http.RoundTripper = (*fakeMgmt)(nil)

// fakeFarm is a farm reading fm, with cfg changed by mutate.
func fakeFarm(t testing.TB, fm *fakeMgmt, mutate func(*capacity.Config)) *capacity.Farm {
	t.Helper()
	cfg := capacity.Config{ManagementURL: "http://guest:secret@rabbit:15672/",
		HTTPClient: &http.Client{Transport: fm}}
	if mutate != nil {
		mutate(&cfg)
	}
	return newFarm(t, cfg)
}

// checkBroker compares the fields that come from the management API.
func checkBroker(t *testing.T, what string, got, want capacity.Snapshot) {
	t.Helper()
	type broker struct {
		Ready, Unacked, Consumers int
		PublishRate               float64
		Stale                     bool
	}
	g := broker{got.Ready, got.Unacked, got.Consumers, got.PublishRate, got.Stale}
	w := broker{want.Ready, want.Unacked, want.Consumers, want.PublishRate, want.Stale}
	if g != w {
		t.Errorf("%s: broker inputs %+v, want %+v", what, g, w)
	}
}
