package repository

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/warren-farm/warren/pkg/model"
	"github.com/warren-farm/warren/pkg/queue"
)

// key is one top-level config.yaml key.
type key struct {
	name    string
	backend string // "" when every backend has it
	index   []int  // the field in Config
}

// keys lists Config's keys in declaration order, from its json and backend tags.
var keys = func() []key {
	var out []key
	var walk func(t reflect.Type, backend string, prefix []int)
	walk = func(t reflect.Type, backend string, prefix []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(slices.Clone(prefix), i)
			if f.Anonymous {
				walk(f.Type, f.Tag.Get("backend"), idx)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			out = append(out, key{name: name, backend: backend, index: idx})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}()

// keyNamed returns the key called name, or nil.
func keyNamed(name string) *key {
	for i := range keys {
		if keys[i].name == name {
			return &keys[i]
		}
	}
	return nil
}

// keysOf lists the keys a config of backend may have.
func keysOf(backend string) []string {
	var out []string
	for _, k := range keys {
		if k.backend == "" || k.backend == backend {
			out = append(out, k.name)
		}
	}
	return out
}

// parseConfig decodes a config.yaml strictly: every unknown key, key of another
// backend and ill-typed value is a problem naming the key. It does not validate
// values or apply defaults (see validate and setDefaults). keyed is false when
// the file is not a mapping of keys at all.
func parseConfig(p *problems, data []byte) (c Config, keyed bool) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		p.add("", "not valid YAML: "+yamlMessage(err))
		return c, false
	}
	js = bytes.TrimSpace(js)
	switch {
	case string(js) == "null":
		p.add("", "the file is empty; a config.yaml needs at least a backend (backend: seed, onnx, http or exec)")
		return c, false
	case len(js) == 0 || js[0] != '{':
		p.add("", "want a mapping of keys (such as backend: seed), got "+jsonKind(js))
		return c, false
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		p.add("", "not valid YAML: "+err.Error())
		return c, false
	}

	// backend first: it decides which keys belong.
	backendOK := false
	if b, ok := raw["backend"]; !ok || string(b) == "null" {
		p.add("backend", "required (one of "+strings.Join(backendNames, ", ")+")")
	} else if decodeValue(p, "backend", b, &c.Backend) {
		if slices.Contains(backendNames, c.Backend) {
			backendOK = true
		} else {
			p.add("backend", fmt.Sprintf("%q is not one of %s", c.Backend, strings.Join(backendNames, ", ")))
		}
	}

	v := reflect.ValueOf(&c).Elem()
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if name == "backend" {
			continue
		}
		k := keyNamed(name)
		if k == nil {
			p.add(name, unknownKey(name, c.Backend, backendOK))
			continue
		}
		if k.backend != "" {
			if !backendOK {
				continue // the backend's error says it all
			}
			if k.backend != c.Backend {
				p.add(name, fmt.Sprintf("only for backend %s (this model's backend is %s)", k.backend, c.Backend))
				continue
			}
		}
		dst := v.FieldByIndex(k.index).Addr().Interface()
		switch dst := dst.(type) {
		case *VersionPolicy:
			decodePolicy(p, name, raw[name], dst)
		case *[]model.TensorSpec:
			decodeSpecs(p, name, raw[name], dst)
		case *map[string]string:
			decodeStrings(p, name, raw[name], dst)
		case *string:
			if name == "version" {
				decodeValue(p, name, numberAsString(raw[name]), dst)
			} else {
				decodeValue(p, name, raw[name], dst)
			}
		default:
			decodeValue(p, name, raw[name], dst)
		}
	}
	p.seal()
	return c, true
}

// decodeStrings decodes a mapping of strings (env), naming each value that is
// not a string.
func decodeStrings(p *problems, key string, raw json.RawMessage, dst *map[string]string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		p.add(key, "want a mapping of names to strings, got "+jsonKind(raw))
		return
	}
	if m == nil {
		return
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		var v string
		if err := json.Unmarshal(m[k], &v); err != nil {
			p.add(key+"."+k, "want a string, got "+snippet(m[k])+" (quote it)")
			continue
		}
		out[k] = v
	}
	*dst = out
}

// numberAsString turns a bare integer into a string, so that version: 3 means
// version: "3".
func numberAsString(b json.RawMessage) json.RawMessage {
	var n json.Number
	if json.Unmarshal(b, &n) == nil {
		if _, err := n.Int64(); err == nil {
			q, _ := json.Marshal(n.String())
			return q
		}
	}
	return b
}

// decodeValue decodes raw into dst, reporting a type error under key.
func decodeValue(p *problems, key string, raw json.RawMessage, dst any) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		return true
	}
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		p.add(key, err.Error())
		return false
	}
	want := reflect.TypeOf(dst).Elem()
	var msg string
	switch {
	case te.Field != "":
		msg = "want " + typeName(te.Type, false) + ", got " + jsonKindName(te.Value)
		key += "." + te.Field
	case te.Type != want && te.Type != reflect.PointerTo(want) && !(want.Kind() == reflect.Pointer && te.Type == want.Elem()):
		// An element of a list.
		msg = "want " + typeName(want, false) + ", got " + jsonKindName(te.Value) + " in it"
	default:
		msg = "want " + typeName(te.Type, false) + ", got " + snippet(raw)
	}
	if te.Value == "bool" && te.Type.Kind() == reflect.String {
		msg += " (YAML reads y, n, yes, no, on, off, true and false as booleans: quote the value)"
	}
	p.add(key, msg)
	return false
}

// decodeFields decodes the mapping raw field by field: fields maps each allowed
// key to its destination. Unknown keys and type errors are reported under
// prefix. It returns the keys present.
func decodeFields(p *problems, prefix string, raw json.RawMessage, fields map[string]any) []string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		p.add(prefix, "want a mapping, got "+snippet(raw))
		return nil
	}
	allowed := slices.Sorted(maps.Keys(fields))
	var present []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		dst, ok := fields[k]
		if !ok {
			p.add(prefix+"."+k, "unknown key (the keys are "+strings.Join(allowed, ", ")+")")
			continue
		}
		present = append(present, k)
		decodeValue(p, prefix+"."+k, m[k], dst)
	}
	return present
}

// decodePolicy decodes and checks version_policy: a mapping with exactly one of
// latest (at least 1), specific (a list of versions) and all (true).
func decodePolicy(p *problems, key string, raw json.RawMessage, dst *VersionPolicy) {
	if string(raw) == "null" {
		return
	}
	var (
		latest   *int
		specific []int64
		all      *bool
	)
	n := len(p.errs)
	present := decodeFields(p, key, raw, map[string]any{"latest": &latest, "specific": &specific, "all": &all})
	if len(p.errs) > n {
		return
	}
	if len(present) != 1 {
		if len(present) == 0 {
			p.add(key, "want one of latest, specific or all (e.g. {latest: 1})")
		} else {
			p.add(key, strings.Join(present, ", ")+": give only one")
		}
		return
	}
	switch {
	case latest != nil:
		if *latest < 1 {
			p.add(key+".latest", fmt.Sprintf("must be at least 1, got %d", *latest))
			return
		}
		*dst = VersionPolicy{Latest: *latest}
	case all != nil:
		if !*all {
			p.add(key+".all", "must be true (to serve some versions, use latest or specific)")
			return
		}
		*dst = VersionPolicy{All: true}
	default:
		if len(specific) == 0 {
			p.add(key+".specific", "want a list of versions, e.g. [1, 3]")
			return
		}
		seen := make(map[int64]bool, len(specific))
		for _, v := range specific {
			switch {
			case !queue.ValidVersion(fmt.Sprint(v)):
				p.add(key+".specific", fmt.Sprintf("%d is not a version (want positive integers)", v))
			case seen[v]:
				p.add(key+".specific", fmt.Sprintf("version %d is listed twice", v))
			}
			seen[v] = true
		}
		if len(p.errs) == n {
			*dst = VersionPolicy{Specific: specific}
		}
	}
}

// decodeSpecs decodes inputs or outputs: a list of {name, datatype, shape}.
func decodeSpecs(p *problems, key string, raw json.RawMessage, dst *[]model.TensorSpec) {
	if string(raw) == "null" {
		return
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		p.add(key, "want a list of tensors ({name, datatype, shape}), got "+snippet(raw))
		return
	}
	specs := make([]model.TensorSpec, len(items))
	for i, item := range items {
		s := &specs[i]
		decodeFields(p, fmt.Sprintf("%s[%d]", key, i), item, map[string]any{"name": &s.Name, "datatype": &s.Datatype, "shape": &s.Shape})
	}
	*dst = specs
}
