package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Every entry each binary reads loads from its default without an error, and a
// binary's loader reads nothing else.
func TestEveryEntryLoadsWithItsDefault(t *testing.T) {
	for _, b := range binaries() {
		l := newLoader(t, b, nil, nil)
		n := 0
		for _, e := range Table {
			if _, r := e.key(); r.Includes(b) {
				e.loadAny(l)
				n++
			}
		}
		if err := l.Err(); err != nil {
			t.Errorf("%s: %v", b, err)
		}
		if u := l.Unread(); len(u) != 0 {
			t.Errorf("%s: unread %v", b, u)
		}
		if n != len(For(b)) || n == 0 {
			t.Errorf("%s: loaded %d, For lists %d", b, n, len(For(b)))
		}
	}
}

// A default written out as text (the tables, compose files and Helm values use the
// text) reads back as the same value.
func TestDefaultTextReadsBack(t *testing.T) {
	for _, b := range binaries() {
		for _, e := range Table {
			v := e.Describe()
			if !v.ReadBy(b) {
				continue
			}
			want := e.loadAny(newLoader(t, b, nil, nil))
			args := []string{"--" + v.Flag() + "=" + v.Default(b)}
			l := newLoader(t, b, args, nil)
			got := e.loadAny(l)
			if err := l.Err(); err != nil {
				t.Errorf("%s %s: %v", b, args[0], err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: %#v, want the default %#v", b, args[0], got, want)
			}
		}
	}
}

func TestTableIsWellFormed(t *testing.T) {
	name := regexp.MustCompile(`^[A-Z][A-Z0-9_]*[A-Z0-9]$`)
	seen := map[string]bool{}
	for _, v := range All() {
		switch {
		case !name.MatchString(v.Env):
			t.Errorf("%q is not an environment variable name", v.Env)
		case seen[v.Env]:
			t.Errorf("%s is in the table twice", v.Env)
		case len(v.Binaries) == 0:
			t.Errorf("%s: read by no binary", v.Env)
		case v.Usage == "" || strings.ContainsAny(v.Usage, "|\n"):
			t.Errorf("%s: usage %q is empty or breaks the Markdown table", v.Env, v.Usage)
		}
		seen[v.Env] = true
	}
	for _, e := range Table {
		switch e := e.(type) {
		case *Int:
			if e.Min > e.Max {
				t.Errorf("%s: Min %d > Max %d", e.Env, e.Min, e.Max)
			}
		case *Enum:
			for _, a := range e.Allowed {
				if a != strings.ToLower(a) {
					t.Errorf("%s: allowed value %q is not lower case", e.Env, a)
				}
			}
		}
	}
}

// Every exported entry of this package is in Table, once: an entry left out would be
// read (with an error) but never listed, documented or checked against deployments.
func TestEveryEntryIsInTable(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var declared []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			for _, elt := range lit.Elts {
				kv, ok := elt.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Env" {
					if s, ok := kv.Value.(*ast.BasicLit); ok && s.Kind == token.STRING {
						v, _ := strconv.Unquote(s.Value)
						declared = append(declared, v)
					}
				}
			}
			return true
		})
	}
	var listed []string
	for _, v := range All() {
		listed = append(listed, v.Env)
	}
	slices.Sort(declared)
	slices.Sort(listed)
	if !slices.Equal(declared, listed) || len(listed) == 0 {
		t.Errorf("entries declared:\n%v\nlisted in Table:\n%v", declared, listed)
	}
}

func TestForAndLookup(t *testing.T) {
	api, worker := For(API), For(Worker)
	has := func(vs []Var, env string) bool {
		return slices.ContainsFunc(vs, func(v Var) bool { return v.Env == env })
	}
	for env, want := range map[string][2]bool{
		"AMQP_URL": {true, true}, "CONCURRENCY": {false, true}, "DEFAULT_MODEL": {true, false},
		"MODELS": {false, true}, "MODEL_REPOSITORY": {false, true}, "REQUEST_TIMEOUT": {true, false},
	} {
		if got := [2]bool{has(api, env), has(worker, env)}; got != want {
			t.Errorf("%s read by (api, worker) = %v, want %v", env, got, want)
		}
	}
	v, ok := Lookup("HTTP_ADDR")
	if !ok || v.Default(API) != ":8000" || v.Default(Worker) != ":8001" || v.Flag() != "http-addr" {
		t.Errorf("Lookup(HTTP_ADDR) = %+v, %v", v, ok)
	}
	if v, _ := Lookup("REQUEST_TIMEOUT"); v.Default(Worker) != "" || v.Default(API) != "10s" {
		t.Errorf("REQUEST_TIMEOUT defaults %v", v.Defaults)
	}
	if _, ok := Lookup("NOPE"); ok {
		t.Error("Lookup(NOPE) found something")
	}
}

func TestPrintTable(t *testing.T) {
	var all, api strings.Builder
	PrintTable(&all, "")
	PrintTable(&api, API)
	for _, want := range []string{
		"| `HTTP_ADDR` | `--http-addr` | api, worker | api: `:8000`; worker: `:8001` | HTTP listen address. |",
		"| `MODELS` | `--models` | worker | (empty) |",
		"| `BODY_LIMIT` | `--body-limit` | api, worker | `1MiB` |",
		"| `JOB_TTL` | `--job-ttl` | api | `24h` |",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(api.String(), "`CONCURRENCY`") || !strings.Contains(api.String(), "DEFAULT_MODEL") {
		t.Errorf("the api's table:\n%s", api.String())
	}
	if got, want := strings.Count(all.String(), "\n"), len(Table)+2; got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
}

// docs/configuration.md's table is the table in code.
func TestDocsListEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	PrintTable(&sb, "")
	if !strings.Contains(string(b), sb.String()) {
		t.Fatalf("docs/configuration.md does not contain the current configuration table; paste the output of `go run ./cmd/api config --all`:\n%s", sb.String())
	}
}
