package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-farm/warren/pkg/queue"
)

// liveSet is a Workers function whose live versions a test sets.
type liveSet struct {
	mu   sync.Mutex
	live map[string]int // "model/version" → consumers
}

func (l *liveSet) workers(r queue.Route) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live[r.String()]
}

func (l *liveSet) set(route string, n int) {
	l.mu.Lock()
	l.live[route] = n
	l.mu.Unlock()
}

// seedCatalog is a catalog knowing seed versions 1, 2 and 3, with 1 and 2 live.
func seedCatalog(t *testing.T, st MetaStore) (*Catalog, *liveSet) {
	t.Helper()
	l := &liveSet{live: map[string]int{"seed/1": 1, "seed/2": 1}}
	c, err := New(Config{Workers: l.workers, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(announce("w1", "1", "2", "3"))
	return c, l
}

// shares picks n times (with header, may be nil) and returns each version's count.
func shares(t *testing.T, c *Catalog, n int, header func(string) string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		v, err := c.Pick("seed", header)
		if err != nil {
			t.Fatal(err)
		}
		out[v.Route.Version]++
	}
	return out
}

func TestPickSplitsAmongLiveWeightedVersions(t *testing.T) {
	ctx := context.Background()
	c, live := seedCatalog(t, nil)
	// No settings: the default rule, the highest live version.
	if got := shares(t, c, 100, nil); got["2"] != 100 {
		t.Fatalf("default rule: %v", got)
	}
	if err := c.SetTraffic(ctx, "seed", Traffic{Weights: map[string]int{"1": 90, "2": 10}}); err != nil {
		t.Fatal(err)
	}
	got := shares(t, c, 20000, nil)
	if got["1"]+got["2"] != 20000 || got["2"] < 1700 || got["2"] > 2300 {
		t.Fatalf("90/10 split over 20000 picks: %v", got)
	}
	if s, _ := c.Split("seed"); s["1"] != 0.9 || s["2"] != 0.1 || len(s) != 2 {
		t.Fatalf("split %v", s)
	}
	// A weighted version nobody serves gets nothing: the others are renormalized.
	if err := c.SetTraffic(ctx, "seed", Traffic{Weights: map[string]int{"1": 50, "2": 30, "3": 20}}); err != nil {
		t.Fatal(err)
	}
	got = shares(t, c, 20000, nil)
	if got["3"] != 0 || got["2"] < 7000 || got["2"] > 8000 {
		t.Fatalf("50/30/20 with 3 not live: %v (want 3 never, 2 about 37.5%%)", got)
	}
	if s, _ := c.Split("seed"); s["1"] != 0.625 || s["2"] != 0.375 || len(s) != 2 {
		t.Fatalf("split with 3 not live %v", s)
	}
	// None of the weighted versions live: the default rule.
	if err := c.SetTraffic(ctx, "seed", Traffic{Weights: map[string]int{"3": 100}}); err != nil {
		t.Fatal(err)
	}
	if got := shares(t, c, 100, nil); got["2"] != 100 {
		t.Fatalf("only 3 weighted, not live: %v", got)
	}
	live.set("seed/3", 2)
	if got := shares(t, c, 100, nil); got["3"] != 100 {
		t.Fatalf("only 3 weighted, live: %v", got)
	}
	// Pinned versions are not affected.
	if v, _ := c.Resolve("seed", "1"); v.Route.Version != "1" {
		t.Fatalf("pinned: %v", v.Route)
	}
	if _, err := c.Pick("nope", nil); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestDefaultVersion(t *testing.T) {
	ctx := context.Background()
	c, live := seedCatalog(t, nil)
	if err := c.SetTraffic(ctx, "seed", Traffic{DefaultVersion: "1"}); err != nil {
		t.Fatal(err)
	}
	for _, pick := range []func() (Version, error){
		func() (Version, error) { return c.Resolve("seed", "") },
		func() (Version, error) { return c.Pick("seed", nil) },
	} {
		if v, err := pick(); err != nil || v.Route.Version != "1" || !v.Ready() {
			t.Fatalf("default_version 1, live: %+v %v", v, err)
		}
	}
	// The default version not live: the highest live one, never a version nobody
	// serves while another is served.
	live.set("seed/1", 0)
	if v, _ := c.Pick("seed", nil); v.Route.Version != "2" {
		t.Fatalf("default_version 1, not live: %v", v.Route)
	}
	// Nothing live: the default version (which answers 503).
	live.set("seed/2", 0)
	if v, _ := c.Resolve("seed", ""); v.Route.Version != "1" || v.Ready() {
		t.Fatalf("nothing live: %+v", v)
	}
	if s, _ := c.Split("seed"); s["1"] != 1 || len(s) != 1 {
		t.Fatalf("split %v", s)
	}
	// Weights win over the default version while a weighted version is live.
	live.set("seed/2", 1)
	if err := c.SetTraffic(ctx, "seed", Traffic{Weights: map[string]int{"2": 1}, DefaultVersion: "1"}); err != nil {
		t.Fatal(err)
	}
	live.set("seed/1", 1)
	if v, _ := c.Pick("seed", nil); v.Route.Version != "2" {
		t.Fatalf("weights and default: %v", v.Route)
	}
	if v, _ := c.Resolve("seed", ""); v.Route.Version != "1" {
		t.Fatalf("Resolve applies the default rule only: %v", v.Route)
	}
	if err := c.ResetTraffic(ctx, "seed"); err != nil {
		t.Fatal(err)
	}
	if tr, set, _ := c.Traffic("seed"); set || !tr.IsZero() {
		t.Fatalf("after reset: %+v %v", tr, set)
	}
	if v, _ := c.Pick("seed", nil); v.Route.Version != "2" {
		t.Fatalf("after reset: %v", v.Route)
	}
}

func TestStickyHeader(t *testing.T) {
	ctx := context.Background()
	c, _ := seedCatalog(t, nil)
	set := func(w1, w2 int) {
		t.Helper()
		if err := c.SetTraffic(ctx, "seed", Traffic{Weights: map[string]int{"1": w1, "2": w2}, StickyHeader: "x-user-id"}); err != nil {
			t.Fatal(err)
		}
	}
	assign := func() map[string]string {
		out := map[string]string{}
		for i := 0; i < 2000; i++ {
			user := fmt.Sprint("user-", i)
			var first string
			for j := 0; j < 3; j++ {
				v, err := c.Pick("seed", func(h string) string {
					if h != "X-User-Id" {
						t.Fatalf("asked for header %q", h)
					}
					return user
				})
				if err != nil {
					t.Fatal(err)
				}
				if j == 0 {
					first = v.Route.Version
				} else if v.Route.Version != first {
					t.Fatalf("%s got %s, then %s", user, first, v.Route.Version)
				}
			}
			out[user] = first
		}
		return out
	}
	count := func(a map[string]string, v string) int {
		n := 0
		for _, got := range a {
			if got == v {
				n++
			}
		}
		return n
	}
	set(90, 10)
	at10 := assign()
	if n := count(at10, "2"); n < 140 || n > 260 {
		t.Fatalf("%d of 2000 users on version 2 at 10%%", n)
	}
	// The same split at another scale assigns every user alike.
	set(9, 1)
	if again := assign(); fmt.Sprint(again) != fmt.Sprint(at10) {
		t.Error("9:1 assigns users differently from 90:10")
	}
	// Moving weight to version 2 moves users to it, never away from it.
	set(50, 50)
	at50 := assign()
	if n := count(at50, "2"); n < 900 || n > 1100 {
		t.Fatalf("%d of 2000 users on version 2 at 50%%", n)
	}
	for u, v := range at10 {
		if v == "2" && at50[u] != "2" {
			t.Fatalf("%s was on version 2 at 10%% and left it at 50%%", u)
		}
	}
	// Without the header, chance.
	if got := shares(t, c, 2000, func(string) string { return "" }); got["1"] < 800 || got["2"] < 800 {
		t.Fatalf("no header value: %v", got)
	}
	if got := shares(t, c, 2000, nil); got["1"] < 800 || got["2"] < 800 {
		t.Fatalf("no header: %v", got)
	}
	if tr, _, _ := c.Traffic("seed"); tr.StickyHeader != "X-User-Id" {
		t.Fatalf("the header name is kept canonical: %q", tr.StickyHeader)
	}
}

func TestSetTrafficValidates(t *testing.T) {
	ctx := context.Background()
	c, _ := seedCatalog(t, nil)
	if err := c.SetTraffic(ctx, "nope", Traffic{DefaultVersion: "1"}); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("unknown model: %v", err)
	}
	if err := c.ResetTraffic(ctx, "nope"); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("reset of an unknown model: %v", err)
	}
	if _, _, err := c.Traffic("nope"); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("traffic of an unknown model: %v", err)
	}
	for _, tc := range []struct {
		t    Traffic
		want string
	}{
		{Traffic{}, "set weights or default_version"},
		{Traffic{Weights: map[string]int{}}, "set weights or default_version"},
		{Traffic{Weights: map[string]int{"1": 90, "7": 10, "9": 1}}, `seed has no version "7", "9" (known: 1, 2, 3)`},
		{Traffic{Weights: map[string]int{"01": 1}}, `seed has no version "01"`},
		{Traffic{Weights: map[string]int{"1": 1}, DefaultVersion: "4"}, `seed has no version "4"`},
		{Traffic{Weights: map[string]int{"10": 1, "9": 1}, DefaultVersion: "10"}, `seed has no version "9", "10" (known`},
		{Traffic{Weights: map[string]int{"1": -1, "2": 5}}, `the weight of version "1" is negative (-1)`},
		{Traffic{Weights: map[string]int{"1": MaxWeight + 1}}, `is over 1000000`},
		{Traffic{Weights: map[string]int{"1": 0, "2": 0}}, "the weights sum to 0"},
		{Traffic{Weights: map[string]int{"1": 1}, StickyHeader: "X User"}, `sticky_header "X User" is not a header name`},
		{Traffic{Weights: map[string]int{"1": 1}, StickyHeader: strings.Repeat("x", MaxHeaderName+1)}, `is not a header name`},
		{Traffic{DefaultVersion: "1", StickyHeader: "X-User"}, "sticky_header needs weights"},
	} {
		err := c.SetTraffic(ctx, "seed", tc.t)
		if !errors.Is(err, ErrInvalidTraffic) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want …%s…", tc.t, err, tc.want)
		}
	}
	if _, set, _ := c.Traffic("seed"); set {
		t.Error("a refused setting was applied")
	}
	// Zero weights are kept as given, next to a positive one.
	if err := c.SetTraffic(ctx, "seed", Traffic{Weights: map[string]int{"1": 0, "2": 3}}); err != nil {
		t.Fatal(err)
	}
	if tr, set, _ := c.Traffic("seed"); !set || tr.Weights["1"] != 0 || tr.Weights["2"] != 3 || len(tr.Weights) != 2 {
		t.Fatalf("%+v %v", tr, set)
	}
}

// TestTrafficSharedThroughTheStore: two API replicas' catalogs on one store; what
// one sets, the other applies once it refreshes, and a new replica at Load.
func TestTrafficSharedThroughTheStore(t *testing.T) {
	ctx := context.Background()
	st := &memStore{kv: map[string][]byte{}}
	a, _ := seedCatalog(t, st)
	b, _ := seedCatalog(t, st)
	want := Traffic{Weights: map[string]int{"1": 9, "2": 1}, StickyHeader: "X-User-Id", DefaultVersion: "1"}
	if err := a.SetTraffic(ctx, "seed", want); err != nil {
		t.Fatal(err)
	}
	if _, set, _ := b.Traffic("seed"); set {
		t.Fatal("b applied a's settings before refreshing")
	}
	if err := b.RefreshTraffic(ctx); err != nil {
		t.Fatal(err)
	}
	if got, set, _ := b.Traffic("seed"); !set || !got.equal(want) {
		t.Fatalf("b after refresh: %+v %v", got, set)
	}
	// A new replica knows them from the start.
	c, _ := New(Config{Workers: func(queue.Route) int { return 0 }, Store: st})
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, set, _ := c.Traffic("seed"); !set || !got.equal(want) {
		t.Fatalf("a new replica: %+v %v", got, set)
	}
	// A reset is stored too (as an empty value: the store never deletes).
	if err := b.ResetTraffic(ctx, "seed"); err != nil {
		t.Fatal(err)
	}
	if v, ok := st.kv["traffic/seed"]; !ok || len(v) != 0 {
		t.Fatalf("stored reset %q %v", v, ok)
	}
	if err := a.RefreshTraffic(ctx); err != nil {
		t.Fatal(err)
	}
	if _, set, _ := a.Traffic("seed"); set {
		t.Fatal("a kept settings b reset")
	}
	// Unreadable stored settings are ignored, the others applied.
	st.kv["traffic/bad"] = []byte("{not json")
	st.kv["traffic/seed"] = []byte(`{"weights":{"2":1}}`)
	if err := a.RefreshTraffic(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := a.Traffic("seed"); got.Weights["2"] != 1 {
		t.Fatalf("after a refresh with an unreadable entry: %+v", got)
	}
}

// TestFollowTraffic: the refresh loop applies another replica's write by itself.
func TestFollowTraffic(t *testing.T) {
	st := &memStore{kv: map[string][]byte{}}
	a, _ := seedCatalog(t, st)
	b, _ := seedCatalog(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.FollowTraffic(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	if err := a.SetTraffic(context.Background(), "seed", Traffic{Weights: map[string]int{"1": 1}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, _ := b.Pick("seed", nil); v.Route.Version == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never applied a's weights")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStoreFailureKeepsSettings(t *testing.T) {
	st := &failingStore{memStore: memStore{kv: map[string][]byte{}}}
	c, _ := seedCatalog(t, st)
	ctx := context.Background()
	if err := c.SetTraffic(ctx, "seed", Traffic{DefaultVersion: "1"}); err != nil {
		t.Fatal(err)
	}
	st.fail = errors.New("store down")
	if err := c.SetTraffic(ctx, "seed", Traffic{DefaultVersion: "2"}); !errors.Is(err, st.fail) {
		t.Fatalf("a failed write: %v", err)
	}
	if err := c.RefreshTraffic(ctx); !errors.Is(err, st.fail) {
		t.Fatalf("a failed refresh: %v", err)
	}
	if got, _, _ := c.Traffic("seed"); got.DefaultVersion != "1" {
		t.Fatalf("after failures: %+v", got)
	}
}

type failingStore struct {
	memStore
	fail error
}

func (f *failingStore) PutMeta(ctx context.Context, k string, v []byte) error {
	if f.fail != nil {
		return f.fail
	}
	return f.memStore.PutMeta(ctx, k, v)
}

func (f *failingStore) ListMeta(ctx context.Context, prefix string) (map[string][]byte, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	return f.memStore.ListMeta(ctx, prefix)
}
