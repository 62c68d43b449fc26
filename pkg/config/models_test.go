package config

import (
	"slices"
	"strings"
	"testing"
)

func TestModelsList(t *testing.T) {
	long := strings.Repeat("m", 64)
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " , ,", want: nil},
		{in: "seed", want: []string{"seed"}},
		{in: " seed, digits ,,mnist_v2,", want: []string{"seed", "digits", "mnist_v2"}},
		{in: "a-b,9c," + long, want: []string{"a-b", "9c", long}},
		{in: "seed,digits,seed", wantErr: `"seed" is listed more than once`},
		{in: "x,x,x", wantErr: `MODELS="x,x,x": "x" is listed more than once`},
		{in: "digits,my model", wantErr: `"my model" does not match`},
		{in: "-seed", wantErr: `"-seed" does not match`},
		{in: "seed/1", wantErr: `"seed/1" does not match`},
		{in: long + "m", wantErr: "does not match"},
	} {
		l := newLoader(t, Worker, nil, map[string]string{"MODELS": tc.in})
		got := Models.Load(l)
		err := l.Err()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("MODELS=%q: %v", tc.in, err)
		case tc.wantErr == "" && !slices.Equal(got, tc.want):
			t.Errorf("MODELS=%q: %q, want %q", tc.in, got, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("MODELS=%q: err %v, want %q", tc.in, err, tc.wantErr)
		case tc.wantErr != "" && strings.Count(err.Error(), "more than once") > 1:
			t.Errorf("MODELS=%q: a repeated name reported more than once: %v", tc.in, err)
		}
	}
}

func TestModelsDefaultIsNotShared(t *testing.T) {
	l := newLoader(t, Worker, nil, nil)
	ModelRepository.Load(l)
	if got := ModelRepository.Load(l); got != "models" {
		t.Errorf("MODEL_REPOSITORY default %q", got)
	}
	a := Models.Load(l)
	a = append(a, "mutated")
	if b := Models.Load(l); len(b) != 0 {
		t.Errorf("the default list changed: %q (after %q)", b, a)
	}
}

func TestDefaultModel(t *testing.T) {
	l := newLoader(t, API, nil, nil)
	if got := DefaultModel.Load(l); got != "seed" {
		t.Errorf("DEFAULT_MODEL default %q", got)
	}
	for in, ok := range map[string]bool{"digits": true, "bad name": false, "../etc": false} {
		l := newLoader(t, API, []string{"--default-model", in}, nil)
		DefaultModel.Load(l)
		if got := l.Err() == nil; got != ok {
			t.Errorf("DEFAULT_MODEL=%q accepted %v, want %v (%v)", in, got, ok, l.Err())
		}
	}
	// An empty flag value is a value, and not a model name.
	l = newLoader(t, API, []string{"--default-model="}, nil)
	DefaultModel.Load(l)
	if l.Err() == nil {
		t.Error("an empty DEFAULT_MODEL accepted")
	}
}
