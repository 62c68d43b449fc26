package catalog

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

// FuzzAnnouncement: a model announcement as the API's watcher reads it off the
// broker, where any peer may publish. Whatever it holds, every version the
// catalog then knows has a valid route and resolves; the announcing worker is
// listed under each version it announced as ready (its interval cannot push
// that into the past); and a replica loading the persisted versions knows the
// same ones.
func FuzzAnnouncement(f *testing.F) {
	seed, _ := json.Marshal(announce("w1", "1", "2"))
	f.Add(seed)
	md, _ := json.Marshal(model.SeedMetadata())
	for _, s := range []string{
		`{"worker":"w","state":"ready","interval_ms":9223372036854775807,"models":[{"name":"seed","version":"1","metadata":` + string(md) + `}]}`,
		`{"worker":"w","state":"ready","interval_ms":-5,"models":[{"name":"seed","version":"1","metadata":{}}]}`,
		`{"worker":"w","state":"leaving"}`,
		`{"worker":"w","models":[{"name":"../x","version":"1","metadata":{}},{"name":"a","version":"0","metadata":[]}]}`,
		`{"worker":"w","models":[{"name":"a","version":"1","metadata":{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,64]}]},"max_batch_size":-1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var an queue.Announcement
		if err := json.Unmarshal(body, &an); err != nil || an.Worker == "" {
			return // the watcher drops it
		}
		store := &memStore{kv: map[string][]byte{}}
		c, err := New(Config{Workers: func(queue.Route) int { return 1 }, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		c.Apply(an)
		models := c.Models()
		for _, m := range models {
			for _, v := range m.Versions {
				if err := v.Route.Check(); err != nil {
					t.Fatalf("the catalog knows an invalid route %v: %v", v.Route, err)
				}
				if _, err := c.Resolve(v.Route.Model, v.Route.Version); err != nil {
					t.Fatalf("known version %v does not resolve: %v", v.Route, err)
				}
				if an.State != queue.StateLeaving && !slices.Contains(v.Workers, an.Worker) {
					t.Fatalf("worker %q announced %v (interval %dms) but is not listed: %v", an.Worker, v.Route, an.IntervalMs, v.Workers)
				}
			}
		}
		c2, _ := New(Config{Workers: func(queue.Route) int { return 1 }, Store: store})
		if err := c2.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, want := versionsOf(c2.Models()), versionsOf(models); !reflect.DeepEqual(got, want) {
			t.Fatalf("loaded from the store:\n%+v\nannounced:\n%+v", got, want)
		}
	})
}

// versionsOf lists the versions' settings, without their workers.
func versionsOf(ms []Model) map[string]Version {
	out := map[string]Version{}
	for _, m := range ms {
		for _, v := range m.Versions {
			v.Workers = nil
			out[v.Route.String()] = v
		}
	}
	return out
}
