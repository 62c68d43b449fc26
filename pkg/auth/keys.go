package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// KeyPrefix starts every API key, so that a leaked key is recognisable (secret
// scanners, logs) and told apart from a JWT at a glance.
const KeyPrefix = "wrn_"

// MaxKeysFileSize bounds the keys file: it is read whole on every change.
const MaxKeysFileSize = 1 << 20

// keyBytes is the randomness of a key: 256 bits.
const keyBytes = 32

// hashPrefix is the only hash the keys file knows.
const hashPrefix = "sha256:"

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// KeyEntry is one key of the keys file.
type KeyEntry struct {
	// Name identifies the key in logs, traces, job records and metrics.
	Name string `json:"name"`
	// Hash is "sha256:" and the hex SHA-256 of the secret.
	Hash string `json:"hash"`
	// Models are globs of the models the key may call ("*": all).
	Models []string `json:"models"`
	// Admin: the key may use the admin endpoints.
	Admin  bool   `json:"admin,omitempty"`
	Limits Limits `json:"limits,omitzero"`
}

// RoleEntry is one role of the keys file: the permissions a JWT gets when its
// roles claim names the role.
type RoleEntry struct {
	Name   string   `json:"name"`
	Models []string `json:"models"`
	Admin  bool     `json:"admin,omitempty"`
	Limits Limits   `json:"limits,omitzero"`
}

// File is the keys file (YAML or JSON).
type File struct {
	Keys  []KeyEntry  `json:"keys"`
	Roles []RoleEntry `json:"roles,omitempty"`
}

// Keyring is a parsed keys file.
type Keyring struct {
	keys   []key
	roles  map[string]*RoleEntry
	labels map[string]bool
}

type key struct {
	digest [sha256.Size]byte
	p      *Principal
}

// ParseKeys parses and checks a keys file, naming every problem at once.
func ParseKeys(data []byte) (*Keyring, error) {
	if len(data) > MaxKeysFileSize {
		return nil, fmt.Errorf("keys file: %d bytes, over the limit of %d", len(data), MaxKeysFileSize)
	}
	var f File
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("keys file: empty (want a \"keys:\" list, and \"roles:\" for JWTs)")
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	kr := &Keyring{roles: map[string]*RoleEntry{}, labels: map[string]bool{}}
	var errs []error
	names := map[string]string{}
	checkName := func(what string, i int, name string) {
		switch {
		case !namePattern.MatchString(name):
			errs = append(errs, fmt.Errorf("%s[%d]: name %q: want 1 to 64 of A-Z a-z 0-9 . _ @ - (starting with a letter or digit)", what, i, name))
		case name == Anonymous || name == "other":
			errs = append(errs, fmt.Errorf("%s[%d]: name %q is reserved (a metrics label)", what, i, name))
		case names[name] != "":
			errs = append(errs, fmt.Errorf("%s[%d]: name %q is already used by %s", what, i, name, names[name]))
		default:
			names[name] = fmt.Sprintf("%s[%d]", what, i)
		}
	}
	digests := map[[sha256.Size]byte]string{}
	for i, k := range f.Keys {
		checkName("keys", i, k.Name)
		errs = append(errs, checkGrants(fmt.Sprintf("keys[%d] (%s)", i, k.Name), k.Models, k.Limits)...)
		d, err := parseHash(k.Hash)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d] (%s): hash: %w", i, k.Name, err))
			continue
		}
		if prev, dup := digests[d]; dup {
			errs = append(errs, fmt.Errorf("keys[%d] (%s): the same hash as %s", i, k.Name, prev))
			continue
		}
		digests[d] = k.Name
		kr.keys = append(kr.keys, key{digest: d, p: &Principal{Name: k.Name, Via: ViaKey, Label: k.Name,
			Admin: k.Admin, Models: k.Models, Limits: k.Limits}})
		kr.labels[k.Name] = true
	}
	for i := range f.Roles {
		r := &f.Roles[i]
		checkName("roles", i, r.Name)
		errs = append(errs, checkGrants(fmt.Sprintf("roles[%d] (%s)", i, r.Name), r.Models, r.Limits)...)
		kr.roles[r.Name] = r
		kr.labels[r.Name] = true
	}
	if len(f.Keys) == 0 && len(f.Roles) == 0 {
		errs = append(errs, errors.New("no keys and no roles"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	return kr, nil
}

func checkGrants(what string, models []string, l Limits) []error {
	var errs []error
	for _, g := range models {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			errs = append(errs, fmt.Errorf("%s: models: %q is not a glob (path.Match)", what, g))
		}
	}
	if l.Rate < 0 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0) {
		errs = append(errs, fmt.Errorf("%s: limits.rate %v: want a number of requests per second >= 0", what, l.Rate))
	}
	if l.Burst < 0 || l.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("%s: limits.burst and limits.concurrency must not be negative", what))
	}
	if l.Burst > 0 && l.Rate == 0 {
		errs = append(errs, fmt.Errorf("%s: limits.burst needs limits.rate", what))
	}
	return errs
}

func parseHash(s string) (d [sha256.Size]byte, err error) {
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return d, fmt.Errorf("%q: want %s<64 hex digits> (api keygen prints it)", s, hashPrefix)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != sha256.Size {
		return d, fmt.Errorf("%q: want %s and 64 hex digits", s, hashPrefix)
	}
	copy(d[:], b)
	return d, nil
}

// Len is the number of keys.
func (kr *Keyring) Len() int { return len(kr.keys) }

// Lookup returns the principal of the key whose secret is given. Every key's
// hash is compared, in constant time each, whether or not one matched earlier, so
// the time taken says nothing about which key (or how much of one) matched.
func (kr *Keyring) Lookup(secret string) (*Principal, bool) {
	d := sha256.Sum256([]byte(secret))
	var found *Principal
	for i := range kr.keys {
		if subtle.ConstantTimeCompare(d[:], kr.keys[i].digest[:]) == 1 {
			found = kr.keys[i].p
		}
	}
	return found, found != nil
}

// Role returns the role of that name.
func (kr *Keyring) Role(name string) (*RoleEntry, bool) {
	r, ok := kr.roles[name]
	return r, ok
}

// Label returns name if it is a key's or a role's name, else "other": the values
// of a metrics label stay bounded by the keys file.
func (kr *Keyring) Label(name string) string {
	if kr != nil && kr.labels[name] {
		return name
	}
	return "other"
}

// HashSecret is the keys file's hash of a secret.
func HashSecret(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hashPrefix + hex.EncodeToString(d[:])
}

// NewSecret returns a new key: KeyPrefix and 256 random bits in base64url.
func NewSecret() string {
	b := make([]byte, keyBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics if the OS cannot)
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// NewKey returns a new secret and its entry for the keys file.
func NewKey(name string, models []string, admin bool) (secret string, e KeyEntry, err error) {
	secret = NewSecret()
	e = KeyEntry{Name: name, Hash: HashSecret(secret), Models: models, Admin: admin}
	// The entry must load: check it as the file would.
	b, _ := json.Marshal(File{Keys: []KeyEntry{e}})
	if _, err := ParseKeys(b); err != nil {
		return "", KeyEntry{}, err
	}
	return secret, e, nil
}

// YAML renders the entry as an item of the keys file's "keys:" list.
func (e KeyEntry) YAML() string {
	models, _ := json.Marshal(e.Models) // a JSON list is a YAML flow sequence
	if e.Models == nil {
		models = []byte("[]")
	}
	return fmt.Sprintf("  - name: %s\n    hash: %s\n    models: %s\n    admin: %t\n", e.Name, e.Hash, models, e.Admin)
}
