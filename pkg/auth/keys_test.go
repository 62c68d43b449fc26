package auth

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestParseKeysGood(t *testing.T) {
	s1, s2 := NewSecret(), NewSecret()
	file := "keys:\n" +
		"  - name: ci\n    hash: " + HashSecret(s1) + "\n    models: [digits, 'seed*']\n    limits: {rate: 5.5, burst: 10, concurrency: 2}\n" +
		"  - name: ops\n    hash: " + HashSecret(s2) + "\n    models: ['*']\n    admin: true\n" +
		"roles:\n  - name: team-a\n    models: [digits]\n"
	kr, err := ParseKeys([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if kr.Len() != 2 {
		t.Fatalf("Len = %d, want 2", kr.Len())
	}
	p, ok := kr.Lookup(s1)
	if !ok || p.Name != "ci" || p.Admin || p.Limits != (Limits{Rate: 5.5, Burst: 10, Concurrency: 2}) {
		t.Fatalf("Lookup(s1) = %+v, %v", p, ok)
	}
	if !p.MayCall("digits") || !p.MayCall("seed2") || p.MayCall("other") {
		t.Fatalf("ci's models: %v", p.Models)
	}
	if p, ok := kr.Lookup(s2); !ok || p.Name != "ops" || !p.Admin || !p.MayCall("anything") {
		t.Fatalf("Lookup(s2) = %+v, %v", p, ok)
	}
	if _, ok := kr.Lookup(NewSecret()); ok {
		t.Fatal("an unknown secret was found")
	}
	if _, ok := kr.Lookup(HashSecret(s1)); ok {
		t.Fatal("the hash itself was accepted as the secret")
	}
	if r, ok := kr.Role("team-a"); !ok || r.Models[0] != "digits" {
		t.Fatalf("Role = %+v, %v", r, ok)
	}
	for name, want := range map[string]string{"ci": "ci", "team-a": "team-a", "mallory": "other"} {
		if got := kr.Label(name); got != want {
			t.Errorf("Label(%q) = %q, want %q", name, got, want)
		}
	}
	// The same file as JSON.
	js, err := yaml.YAMLToJSON([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if kr, err := ParseKeys(js); err != nil || kr.Len() != 2 {
		t.Fatalf("JSON: %v", err)
	}
}

func TestParseKeysBad(t *testing.T) {
	h := HashSecret(NewSecret())
	cases := map[string]struct{ file, want string }{
		"empty":          {"", "empty"},
		"nothing":        {"keys: []\n", "no keys and no roles"},
		"unknown field":  {"keys:\n  - name: a\n    hash: " + h + "\n    modles: ['*']\n", "modles"},
		"bad hash":       {"keys:\n  - name: a\n    hash: md5:abc\n    models: ['*']\n", "hash"},
		"short hash":     {"keys:\n  - name: a\n    hash: sha256:abcd\n    models: ['*']\n", "64 hex"},
		"secret as hash": {"keys:\n  - name: a\n    hash: " + NewSecret() + "\n    models: ['*']\n", "hash"},
		"bad name":       {"keys:\n  - name: 'a b'\n    hash: " + h + "\n    models: ['*']\n", "name"},
		"reserved":       {"keys:\n  - name: anonymous\n    hash: " + h + "\n    models: ['*']\n", "reserved"},
		"dup name":       {"keys:\n  - name: a\n    hash: " + h + "\n    models: ['*']\nroles:\n  - name: a\n    models: ['*']\n", "already used"},
		"dup hash":       {"keys:\n  - name: a\n    hash: " + h + "\n    models: ['*']\n  - name: b\n    hash: " + h + "\n    models: ['*']\n", "same hash"},
		"bad glob":       {"keys:\n  - name: a\n    hash: " + h + "\n    models: ['[']\n", "glob"},
		"negative rate":  {"keys:\n  - name: a\n    hash: " + h + "\n    models: ['*']\n    limits: {rate: -1}\n", "limits.rate"},
		"burst alone":    {"keys:\n  - name: a\n    hash: " + h + "\n    models: ['*']\n    limits: {burst: 3}\n", "needs limits.rate"},
		"not yaml":       {"keys: [\n", "keys file"},
		"too large":      {"keys:\n" + strings.Repeat("#", MaxKeysFileSize), "over the limit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKeys([]byte(c.file))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b || !strings.HasPrefix(a, KeyPrefix) || len(a) != len(KeyPrefix)+43 {
		t.Fatalf("secrets %q %q", a, b)
	}
}

func TestKeygen(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Keygen([]string{"--name", "ci", "--models", "digits, seed*", "--admin"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var secret string
	var entry strings.Builder
	for line := range strings.SplitSeq(out.String(), "\n") {
		if s, ok := strings.CutPrefix(line, "#"); ok && strings.HasPrefix(strings.TrimSpace(s), KeyPrefix) {
			secret = strings.TrimSpace(s)
		} else if !strings.HasPrefix(line, "#") {
			entry.WriteString(line + "\n")
		}
	}
	if secret == "" {
		t.Fatalf("no secret printed:\n%s", out.String())
	}
	if strings.Contains(entry.String(), secret) {
		t.Fatal("the entry contains the secret")
	}
	kr, err := ParseKeys([]byte("keys:\n" + entry.String()))
	if err != nil {
		t.Fatalf("the printed entry does not load: %v\n%s", err, entry.String())
	}
	p, ok := kr.Lookup(secret)
	if !ok || p.Name != "ci" || !p.Admin || !p.MayCall("digits") || !p.MayCall("seed7") || p.MayCall("x") {
		t.Fatalf("Lookup = %+v, %v", p, ok)
	}
	for _, args := range [][]string{{}, {"--name", "bad name"}, {"--name", "a", "--models", "["}, {"--name", "a", "extra"}, {"--bogus"}} {
		out.Reset()
		if code := Keygen(args, &out, &errOut); code != 2 || out.Len() != 0 {
			t.Errorf("Keygen(%q) = %d, printed %q; want 2 and nothing", args, code, out.String())
		}
	}
}
