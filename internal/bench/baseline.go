package bench

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Revision is bin/api and bin/worker built from a git revision of the
// repository, in a temporary directory (-baseline-rev).
type Revision struct {
	Rev    string // as given
	Commit string // the full commit id
	Title  string // the commit's subject line
	Dir    string // the temporary directory (source tree and binaries)
	API    string
	Worker string
	// Commands are the build command lines, for the report.
	Commands []string
}

// Describe is a short description for the report: the short commit id and
// the start of the subject line.
func (r *Revision) Describe() string {
	t := r.Title
	if rs := []rune(t); len(rs) > 60 {
		t = string(rs[:59]) + "…"
	}
	return fmt.Sprintf("%s %q", shortCommit(r.Commit), t)
}

// Models is the revision's models/ directory (its model repository, in the
// extracted tree); it does not exist for revisions from before the model
// repository.
func (r *Revision) Models() string { return filepath.Join(r.Dir, "src", "models") }

// Remove deletes the temporary directory.
func (r *Revision) Remove() { _ = os.RemoveAll(r.Dir) }

func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

// BuildRevision exports rev of the repository at repo with `git archive` into
// a temporary directory and builds ./cmd/api and ./cmd/worker there with the
// Makefile's flags. The repository itself (work tree, index, worktree list) is
// not touched. The caller must call Remove.
func BuildRevision(ctx context.Context, repo, rev string, log io.Writer) (*Revision, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = repo
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	commit, err := git("rev-parse", "--verify", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return nil, err
	}
	title, err := git("log", "-1", "--format=%s", commit)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "warren-bench-baseline-")
	if err != nil {
		return nil, err
	}
	r := &Revision{Rev: rev, Commit: commit, Title: title, Dir: dir,
		API: filepath.Join(dir, "bin", "api"), Worker: filepath.Join(dir, "bin", "worker")}
	src := filepath.Join(dir, "src")
	_, _ = fmt.Fprintf(log, "bench: git archive %s | extract to %s\n", shortCommit(commit), src)
	if err := gitArchive(ctx, repo, commit, src); err != nil {
		r.Remove()
		return nil, err
	}
	for _, x := range []struct{ out, pkg string }{{r.API, "./cmd/api"}, {r.Worker, "./cmd/worker"}} {
		line, err := goBuild(ctx, src, x.out, x.pkg, log)
		if err != nil {
			r.Remove()
			return nil, err
		}
		r.Commands = append(r.Commands, strings.ReplaceAll(line, x.out, "$TMP/bin/"+filepath.Base(x.out)))
	}
	return r, nil
}

// gitArchive extracts the tree of commit into dir.
func gitArchive(ctx context.Context, repo, commit, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", commit)
	cmd.Dir = repo
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	xerr := extractTar(out, dir)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(stderr.String()))
	}
	return xerr
}

// extractTar writes the regular files, directories and symlinks of a tar
// stream under dir, refusing paths that leave it.
func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("archive entry %q leaves the target directory", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777)|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, path); err != nil {
				return err
			}
		default: // pax headers (git's commit comment) and the like
		}
	}
}
