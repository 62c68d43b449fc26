package repository

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

// FuzzParseConfig: a model's config.yaml, parsed and validated as Scan does.
// Whatever the bytes: every problem is an *Error naming the file; a config with
// no problem names a known backend and keeps every bound; parsing is
// deterministic.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"backend: seed\n", "backend: seed\nlatency: 5ms\nseed: 3\nconcurrency: 2\nmax_batch_size: 8\n",
		"backend: onnx\nfile: m.onnx\nversion_policy: {latest: 2}\n",
		"backend: http\nprotocol: v2\nurl: http://127.0.0.1:8090\nmodel: lab\ntimeout: 2s\nmax_conns: 4\n" +
			"inputs:\n  - {name: data, datatype: BYTES, shape: [-1]}\noutputs:\n  - {name: class, datatype: BYTES, shape: [-1]}\n",
		"backend: seed\nversion_policy: {specific: {versions: [1, 3]}}\n", "backend: seed\nversion_policy: all\n",
		"", "- a\n", "backend: [seed]\n", "a: &a [*a, *a]\n", "backend: seed\nbackend: http\n",
		"x: &x [1,1,1,1,1]\ny: &y [*x,*x,*x,*x,*x]\nz: [*y,*y,*y,*y,*y]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, errs := parse(data)
		for _, err := range errs {
			var e *Error
			if !errors.As(err, &e) || e.Path != cfg || e.Msg == "" {
				t.Fatalf("problem %v (%T) does not name the file", err, err)
			}
		}
		c2, errs2 := parse(data)
		if !reflect.DeepEqual(c, c2) || len(errs) != len(errs2) {
			t.Fatalf("parsing is not deterministic: %+v %v / %+v %v", c, errs, c2, errs2)
		}
		if len(errs) > 0 {
			return
		}
		if !slices.Contains(backendNames, c.Backend) || c.MaxBatchSize < 0 || c.MaxBatchSize > MaxBatchSizeLimit ||
			c.Concurrency < 0 || c.Concurrency > MaxConcurrency {
			t.Fatalf("accepted a config beyond its bounds: %+v", c)
		}
	})
}

func parse(data []byte) (Config, []error) {
	p := &problems{path: cfg}
	c, keyed := parseConfig(p, data)
	if keyed {
		c.validate(p)
	}
	if len(p.errs) == 0 {
		c.setDefaults("m")
	}
	return c, p.errs
}
