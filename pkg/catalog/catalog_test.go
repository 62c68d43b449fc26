package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

// memStore is a MetaStore in memory (the real stores pass pkg/jobs' contract suite).
type memStore struct {
	mu sync.Mutex
	kv map[string][]byte
}

func (m *memStore) PutMeta(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kv[k] = append([]byte(nil), v...)
	return nil
}

func (m *memStore) ListMeta(_ context.Context, prefix string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.kv {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}

func announce(worker string, versions ...string) queue.Announcement {
	md, _ := json.Marshal(model.SeedMetadata())
	an := queue.Announcement{Worker: worker, State: queue.StateReady, IntervalMs: 10000}
	for _, v := range versions {
		an.Models = append(an.Models, queue.ModelAnnouncement{Name: "seed", Version: v, Metadata: md, Concurrency: 4})
	}
	return an
}

func TestResolveAndDefaultVersion(t *testing.T) {
	live := map[string]int{}
	var mu sync.Mutex
	var seen []string
	c, err := New(Config{Workers: func(r queue.Route) int { mu.Lock(); defer mu.Unlock(); return live[r.String()] },
		OnNew: func(r queue.Route) { seen = append(seen, r.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve("seed", ""); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("empty catalog: %v", err)
	}
	c.Apply(announce("w1", "1", "2", "10"))
	c.Apply(announce("w2", "2"))
	if strings.Join(seen, ",") != "seed/1,seed/2,seed/10" {
		t.Fatalf("OnNew saw %v", seen)
	}
	// No live version: the highest (numerically) known.
	v, err := c.Resolve("seed", "")
	if err != nil || v.Route.Version != "10" || v.Ready() {
		t.Fatalf("%+v %v", v, err)
	}
	mu.Lock()
	live["seed/2"] = 3
	mu.Unlock()
	v, _ = c.Resolve("seed", "")
	if v.Route.Version != "2" || v.Live != 3 || strings.Join(v.Workers, ",") != "w1,w2" {
		t.Fatalf("with live consumers on 2 only: %+v", v)
	}
	if v.Metadata.Name != "seed" || v.Metadata.Versions[0] != "2" || v.Concurrency != 4 {
		t.Fatalf("metadata %+v", v.Metadata)
	}
	if _, err := c.Resolve("seed", "3"); !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "known: 1, 2, 10") {
		t.Fatalf("unknown version: %v", err)
	}
	c.Apply(queue.Announcement{Worker: "w2", State: queue.StateLeaving})
	if v, _ := c.Resolve("seed", "2"); strings.Join(v.Workers, ",") != "w1" {
		t.Fatalf("after w2 left: %v", v.Workers)
	}
}

func TestPersistedAcrossRestarts(t *testing.T) {
	st := &memStore{kv: map[string][]byte{}}
	none := func(queue.Route) int { return 0 }
	c, _ := New(Config{Workers: none, Store: st})
	c.Apply(announce("w1", "1"))
	c.Apply(announce("w1", "1")) // unchanged: not written again
	if len(st.kv) != 1 {
		t.Fatalf("stored %v", st.kv)
	}
	// A new API: the model is known before any worker announces it.
	c2, _ := New(Config{Workers: none, Store: st})
	if err := c2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := c2.Resolve("seed", "")
	if err != nil || v.Route.Version != "1" || len(v.Metadata.Inputs) != 1 || len(v.Workers) != 0 {
		t.Fatalf("%+v %v", v, err)
	}
}

func TestBadAnnouncementsAndBound(t *testing.T) {
	c, _ := New(Config{Workers: func(queue.Route) int { return 0 }, MaxRoutes: 2})
	c.Apply(queue.Announcement{Worker: "w", Models: []queue.ModelAnnouncement{
		{Name: "bad.name", Version: "1", Metadata: []byte("{}")},
		{Name: "m", Version: "01", Metadata: []byte("{}")},
		{Name: "m", Version: "1", Metadata: []byte("not json")},
	}})
	if len(c.Routes()) != 0 {
		t.Fatalf("accepted %v", c.Routes())
	}
	c.Apply(announce("w", "1", "2", "3"))
	if n := len(c.Routes()); n != 2 {
		t.Fatalf("%d routes kept, want the bound 2", n)
	}
}
