package repository

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/warren-farm/warren/pkg/queue"
)

// Model is one served version of a model of the repository.
type Model struct {
	// Name is the model's directory name (a valid model name, see
	// queue.ValidModelName).
	Name string
	// Version is the version served: a version directory's name, or
	// [ImplicitVersion] for a seed, http or exec model without any.
	Version string
	// Dir is the version directory, or the model's directory when it has none.
	Dir string
	// Config is the model's config.yaml with defaults applied. Every version of a
	// model shares it.
	Config Config
	// ConfigPath is the config.yaml's path, for messages.
	ConfigPath string
}

// String is "name/version".
func (m Model) String() string { return m.Name + "/" + m.Version }

// Route is the model version's queues.
func (m Model) Route() queue.Route { return queue.Route{Model: m.Name, Version: m.Version} }

// ModelFile is an onnx model's file (Dir/File); empty for other backends.
func (m Model) ModelFile() string {
	if m.Config.Backend != BackendONNX {
		return ""
	}
	return filepath.Join(m.Dir, m.Config.File)
}

// Repository is what [Read] found in a repository directory.
type Repository struct {
	// Dir is the repository directory as given.
	Dir string
	// Models holds one Model per served version, sorted by name, then version
	// (numerically).
	Models []Model
	// Ignored lists the subdirectories without a config.yaml (paths), for the
	// caller to log. Entries whose names start with '.' and plain files are
	// skipped silently.
	Ignored []string
}

// Scan reads the repository dir and returns one [Model] per served version,
// sorted by name and version. See [Read].
func Scan(dir string, names []string) ([]Model, error) {
	r, err := Read(dir, names)
	if err != nil {
		return nil, err
	}
	return r.Models, nil
}

// Read reads the repository dir: every subdirectory with a config.yaml is a
// model, named after the directory; the numeric subdirectories of a model are its
// versions, and anything else in it is ignored. names selects models (empty: all
// of them); a name that is not in the repository is an error naming it and
// listing the models there. Only the selected models are read and validated.
//
// Every problem of every selected model is reported, joined (errors.Join), each
// an [*Error] naming the file and key; all of them wrap [ErrInvalid].
func Read(dir string, names []string) (*Repository, error) {
	r := &Repository{Dir: dir}
	found, err := listModels(r, dir)
	if err != nil {
		return nil, err
	}
	selected, err := selectModels(dir, found, names)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range selected {
		ms, err := readModel(filepath.Join(dir, name), name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Models = append(r.Models, ms...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(r.Models, func(a, b Model) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return queue.CompareVersions(a.Version, b.Version)
	})
	return r, nil
}

// listModels returns the names of dir's subdirectories with a config.yaml,
// sorted, and records the others in r.Ignored.
func listModels(r *Repository, dir string) ([]string, error) {
	const what = "the model repository: a directory with one subdirectory per model, each holding a config.yaml (see docs/model-repository.md)"
	entries, err := os.ReadDir(dir)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, &Error{Path: dir, Msg: "no such directory; want " + what, Err: err}
		case isNotDir(dir):
			return nil, &Error{Path: dir, Msg: "not a directory; want " + what, Err: err}
		}
		return nil, &Error{Path: dir, Msg: "cannot read " + what + ": " + pathErrMsg(err), Err: err}
	}
	var found []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
			continue // plain files, broken links
		}
		cfg := filepath.Join(path, ConfigFile)
		fi, err := os.Stat(cfg)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.Ignored = append(r.Ignored, path)
		case err != nil:
			return nil, &Error{Path: cfg, Msg: pathErrMsg(err), Err: err}
		case fi.IsDir():
			return nil, &Error{Path: cfg, Msg: "is a directory; want the model's config file"}
		default:
			found = append(found, name)
		}
	}
	return found, nil
}

// selectModels returns the models of found that names selects (all when names
// is empty), sorted and without duplicates.
func selectModels(dir string, found, names []string) ([]string, error) {
	if len(names) == 0 {
		if len(found) == 0 {
			return nil, &Error{Path: dir, Msg: "no models: want one subdirectory per model, each holding a config.yaml (e.g. " +
				filepath.Join(dir, "seed", ConfigFile) + " with \"backend: seed\")"}
		}
		return found, nil
	}
	var errs []error
	var out []string
	for _, n := range names {
		switch {
		case slices.Contains(out, n):
		case slices.Contains(found, n):
			out = append(out, n)
		default:
			list := "it has none"
			if len(found) > 0 {
				list = "it has " + strings.Join(found, ", ")
			}
			errs = append(errs, &Error{Path: dir, Msg: fmt.Sprintf("model %q is not in the repository (%s)", n, list)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(out)
	return out, nil
}

// readModel reads the model in dir: its config and its served versions.
func readModel(dir, name string) ([]Model, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	if !queue.ValidModelName(name) {
		return nil, &Error{Path: dir, Msg: fmt.Sprintf("%q is not a valid model name: want 1-64 letters, digits, '_' or '-', starting with a letter or digit", name)}
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, &Error{Path: cfgPath, Msg: pathErrMsg(err), Err: err}
	}
	p := &problems{path: cfgPath}
	c, keyed := parseConfig(p, data)
	if keyed {
		c.validate(p)
	}
	vp := &problems{path: dir}
	versions := listVersions(vp, dir)
	if errs := append(p.errs, vp.errs...); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c.setDefaults(name)
	implicit := len(versions) == 0
	if implicit {
		if c.Backend == BackendONNX {
			return nil, &Error{Path: dir, Msg: fmt.Sprintf("no version directory: an onnx model needs at least one, e.g. %s",
				filepath.Join(dir, "1", c.File))}
		}
		versions = []int64{1}
	}
	served := resolve(p, c.VersionPolicy, versions, implicit)
	var ms []Model
	for _, v := range served {
		ver := strconv.FormatInt(v, 10)
		m := Model{Name: name, Version: ver, Dir: dir, Config: c, ConfigPath: cfgPath}
		if !implicit {
			m.Dir = filepath.Join(dir, ver)
		}
		if c.Backend == BackendONNX {
			checkFile(p, m)
		}
		ms = append(ms, m)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return ms, nil
}

// listVersions returns the versions of the model in dir, ascending: its
// subdirectories named by digits. A digits-only name that is not a valid
// version (0, 01) is a problem; other entries are ignored.
func listVersions(p *problems, dir string) []int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		p.errs = append(p.errs, &Error{Path: dir, Msg: pathErrMsg(err), Err: err})
		return nil
	}
	var out []int64
	for _, e := range entries {
		name := e.Name()
		if strings.Trim(name, "0123456789") != "" {
			continue
		}
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
			continue
		}
		if !queue.ValidVersion(name) {
			p.errs = append(p.errs, &Error{Path: path, Msg: "not a valid version directory: want a positive integer without leading zeros (1, 2, …), at most 10 digits"})
			continue
		}
		v, _ := strconv.ParseInt(name, 10, 64)
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// resolve returns the versions policy serves out of versions (ascending).
// implicit says versions is the implicit version 1 of a model without version
// directories.
func resolve(p *problems, policy VersionPolicy, versions []int64, implicit bool) []int64 {
	switch {
	case policy.All:
		return versions
	case len(policy.Specific) > 0:
		var out []int64
		for _, v := range policy.Specific {
			if !slices.Contains(versions, v) {
				have := "versions: " + joinInts(versions)
				if implicit {
					have = "the model has no version directory, so it serves version 1 only"
				}
				p.add("version_policy.specific", fmt.Sprintf("version %d does not exist (%s)", v, have))
				continue
			}
			out = append(out, v)
		}
		slices.Sort(out)
		return out
	default:
		return versions[max(0, len(versions)-policy.Latest):]
	}
}

// checkFile reports an onnx model version without its file.
func checkFile(p *problems, m Model) {
	path := m.ModelFile()
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.add("file", fmt.Sprintf("%q is missing from version %s (%s)", m.Config.File, m.Version, path))
	case err != nil:
		p.errs = append(p.errs, &Error{Path: path, Msg: pathErrMsg(err), Err: err})
	case fi.IsDir():
		p.add("file", fmt.Sprintf("%s is a directory, not a model file", path))
	}
}

func joinInts(vs []int64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(s, ", ")
}

// pathErrMsg is a file system error without the path (the Error has it).
func pathErrMsg(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// isNotDir reports whether path exists and is not a directory.
func isNotDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
