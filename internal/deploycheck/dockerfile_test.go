package deploycheck

// The Dockerfile and .dockerignore, read with BuildKit's own parser
// (frontend/dockerfile/parser + instructions) and Docker's .dockerignore matcher
// (moby/patternmatcher), and checked against the Makefile's build line, go.mod's go
// version, pkg/config's table and the model repository (pkg/repository) the worker
// image carries.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/warren-farm/warren/pkg/config"
	"github.com/warren-farm/warren/pkg/repository"
)

// dockerfileBinaries are the images the Dockerfile builds: stage name = binary name,
// the binary at /<name>.
var dockerfileBinaries = []string{config.API, config.Worker}

// dockerfileSpec is what a Dockerfile is checked against.
type dockerfileSpec struct {
	// BuildLines maps a binary to the pattern its build command must match (from
	// the Makefile's build recipe).
	BuildLines map[string]*regexp.Regexp
	// GoVersion is go.mod's go line; a golang base image must carry it.
	GoVersion string
	// ModelsDir is the model repository in the build context ("models"): the
	// image of a binary that reads MODEL_REPOSITORY must COPY it there.
	ModelsDir string
}

// dockerfileModelsDir is the repository's model repository, relative to its root
// (and so to the build context).
const dockerfileModelsDir = "models"

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	spec := dockerfileSpec{
		BuildLines: dockerfileMakefileBuildLines(t, filepath.Join(root, "Makefile")),
		GoVersion:  dockerfileGoVersion(t, filepath.Join(root, "go.mod")),
		ModelsDir:  dockerfileModelsDir,
	}
	for _, p := range dockerfileCheck(src, spec) {
		t.Error(p)
	}
}

// TestDockerfileMakefileBuildLine pins the reading of the Makefile: the expanded
// recipe is the literal build line, not an accidental match-anything pattern.
func TestDockerfileMakefileBuildLine(t *testing.T) {
	lines := dockerfileMakefileBuildLines(t, filepath.Join(repoRoot(t), "Makefile"))
	for _, bin := range dockerfileBinaries {
		re := lines[bin]
		if re == nil {
			t.Fatalf("no build line for %s", bin)
		}
		good := `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/` + bin + ` ./cmd/` + bin
		if !re.MatchString(good) {
			t.Errorf("%s: %q does not match %s", bin, good, re)
		}
		for _, bad := range []string{
			`CGO_ENABLED=0 go build -ldflags="-s -w" -o /out/` + bin + ` ./cmd/` + bin, // no -trimpath
			`go build -trimpath -ldflags="-s -w" -o /out/` + bin + ` ./cmd/` + bin,     // cgo on
			`CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w" -o /out/` + bin + ` ./cmd/` + bin,
		} {
			if re.MatchString(bad) {
				t.Errorf("%s: %q matches %s", bin, bad, re)
			}
		}
	}
}

// TestDockerfileChecksFail feeds small broken Dockerfiles through dockerfileCheck and
// expects each problem to be reported: the checks can fail.
func TestDockerfileChecksFail(t *testing.T) {
	spec := dockerfileSpec{
		BuildLines: map[string]*regexp.Regexp{
			config.API:    regexp.MustCompile(`CGO_ENABLED=0 go build -o \S+ \./cmd/api`),
			config.Worker: regexp.MustCompile(`CGO_ENABLED=0 go build -o \S+ \./cmd/worker`),
		},
		GoVersion: "1.26.8",
		ModelsDir: "models",
	}
	const good = `# syntax=docker/dockerfile:1.12
FROM golang:1.26.8-bookworm AS build
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=bind,source=go.mod,target=go.mod --mount=type=bind,source=go.sum,target=go.sum go mod download
RUN mkdir -p /out/data
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build --mount=type=bind,target=. \
    CGO_ENABLED=0 go build -o /out/api ./cmd/api && \
    CGO_ENABLED=0 go build -o /out/worker ./cmd/worker
FROM gcr.io/distroless/static-debian12:nonroot AS api
LABEL org.opencontainers.image.title=warren-api org.opencontainers.image.source=https://example.org/warren
COPY --from=build /out/api /api
COPY --from=build --chown=65532:65532 /out/data /data
ENV LOG_FORMAT=json DATA_DIR=/data
VOLUME /data
USER 65532:65532
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD ["/api", "healthcheck"]
ENTRYPOINT ["/api"]
FROM gcr.io/distroless/static-debian12:nonroot AS worker
LABEL org.opencontainers.image.title=warren-worker org.opencontainers.image.source=https://example.org/warren
COPY --from=build /out/worker /worker
COPY models/ /models/
ENV LOG_FORMAT=json MODEL_REPOSITORY=/models
USER 65532
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s CMD ["/worker", "healthcheck", "/health"]
ENTRYPOINT ["/worker"]
`
	if probs := dockerfileCheck([]byte(good), spec); len(probs) > 0 {
		t.Fatalf("the reference Dockerfile of this test has problems:\n%s", strings.Join(probs, "\n"))
	}
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"root user", "USER 65532\n", "USER root\n", []string{`stage worker: USER "root" is root`}},
		{"uid 0", "USER 65532\n", "USER 0:0\n", []string{`stage worker: USER "0:0" is root`}},
		{"named user", "USER 65532\n", "USER nonroot\n", []string{`stage worker: USER "nonroot" is not numeric`}},
		{"no user", "USER 65532\n", "", []string{"stage worker: no USER"}},
		{"no healthcheck", `HEALTHCHECK --interval=10s --timeout=3s CMD ["/worker", "healthcheck", "/health"]` + "\n", "",
			[]string{"stage worker: no HEALTHCHECK"}},
		{"shell healthcheck", `CMD ["/worker", "healthcheck", "/health"]`, `CMD /worker healthcheck`,
			[]string{"stage worker: HEALTHCHECK is in shell form"}},
		{"curl healthcheck", `CMD ["/worker", "healthcheck", "/health"]`, `CMD ["curl", "-f", "http://localhost:8001/ready"]`,
			[]string{`stage worker: HEALTHCHECK runs ["curl" "-f" "http://localhost:8001/ready"], want ["/worker" "healthcheck"`}},
		{"healthcheck disabled", `HEALTHCHECK --interval=10s --timeout=3s CMD ["/worker", "healthcheck", "/health"]`, "HEALTHCHECK NONE",
			[]string{"stage worker: HEALTHCHECK is disabled"}},
		{"shell entrypoint", `ENTRYPOINT ["/worker"]`, "ENTRYPOINT /worker",
			[]string{"stage worker: ENTRYPOINT is in shell form"}},
		{"wrong port", "EXPOSE 8001\n", "EXPOSE 8080\n", []string{"stage worker: EXPOSE [8080] lacks 8001"}},
		{"latest", "static-debian12:nonroot AS worker", "static-debian12:latest AS worker",
			[]string{`stage worker: base image "gcr.io/distroless/static-debian12:latest" is not pinned`}},
		{"untagged", "static-debian12:nonroot AS worker", "static-debian12 AS worker",
			[]string{`stage worker: base image "gcr.io/distroless/static-debian12" is not pinned`}},
		{"go version", "golang:1.26.8-bookworm", "golang:1.25-bookworm",
			[]string{`base image "golang:1.25-bookworm" does not carry go.mod's go 1.26.8`}},
		{"no worker stage", " AS worker\n", " AS worker2\n", []string{"no stage named worker"}},
		{"unknown env", "ENV LOG_FORMAT=json MODEL_REPOSITORY=/models\n", "ENV LOG_FORMAT=json MODEL_REPOSITORY=/models QUEUE_MAX_LENGTH=5 BOGUS=1\n",
			[]string{"stage worker: ENV BOGUS is not in pkg/config", "stage worker: ENV QUEUE_MAX_LENGTH is not read by worker"}},
		{"no json logs", "ENV LOG_FORMAT=json MODEL_REPOSITORY=/models\n", "ENV LOG_LEVEL=debug MODEL_REPOSITORY=/models\n", []string{"stage worker: LOG_FORMAT is not json"}},
		{"no model repository", "ENV LOG_FORMAT=json MODEL_REPOSITORY=/models\n", "ENV LOG_FORMAT=json\n",
			[]string{"stage worker: no ENV MODEL_REPOSITORY"}},
		{"relative model repository", "MODEL_REPOSITORY=/models\n", "MODEL_REPOSITORY=models\n",
			[]string{`stage worker: MODEL_REPOSITORY "models" is not an absolute path`}},
		{"model repository elsewhere", "MODEL_REPOSITORY=/models\n", "MODEL_REPOSITORY=/srv/models\n",
			[]string{"stage worker: MODEL_REPOSITORY /srv/models: nothing is copied there"}},
		{"models not copied", "COPY models/ /models/\n", "", []string{"stage worker: MODEL_REPOSITORY /models: nothing is copied there"}},
		{"other directory copied", "COPY models/ /models/\n", "COPY pkg/ /models/\n",
			[]string{`stage worker: COPY [pkg/] /models/ fills MODEL_REPOSITORY with [pkg/], want the build context's models/`}},
		{"models from a stage", "COPY models/ /models/\n", "COPY --from=build /src/models/ /models/\n",
			[]string{`stage worker: COPY [/src/models/] /models/ fills MODEL_REPOSITORY from stage build, want the build context's models/`}},
		{"models owned by the runtime user", "COPY models/ /models/\n", "COPY --chown=65532 models/ /models/\n",
			[]string{"stage worker: the model repository /models is copied with --chown=65532"}},
		{"models in the api image", "ENV LOG_FORMAT=json DATA_DIR=/data\n", "ENV LOG_FORMAT=json DATA_DIR=/data MODEL_REPOSITORY=/models\n",
			[]string{"stage api: ENV MODEL_REPOSITORY is not read by api"}},
		{"other build line", "CGO_ENABLED=0 go build -o /out/worker ./cmd/worker", "go build -o /out/worker ./cmd/worker",
			[]string{"no RUN builds worker with the Makefile's build line"}},
		{"no build cache", "--mount=type=cache,target=/root/.cache/go-build ", "",
			[]string{"the RUN that builds api lacks a cache mount at /root/.cache/go-build"}},
		{"no mod download", "go mod download", "true", []string{"no RUN runs go mod download"}},
		{"not copied", "COPY --from=build /out/worker /worker\n", "COPY --from=build /out/worker /bin/worker\n",
			[]string{"stage worker: nothing is copied to the ENTRYPOINT /worker"}},
		{"data dir not owned", "COPY --from=build --chown=65532:65532 /out/data /data", "COPY --from=build /out/data /data",
			[]string{`stage api: DATA_DIR /data is not copied with --chown=65532:65532`}},
		{"no volume", "VOLUME /data\n", "", []string{"stage api: DATA_DIR /data is not a VOLUME"}},
		{"no labels", "LABEL org.opencontainers.image.title=warren-worker org.opencontainers.image.source=https://example.org/warren\n", "",
			[]string{"stage worker: no LABEL org.opencontainers.image.title", "stage worker: no LABEL org.opencontainers.image.source"}},
		{"unpinned syntax", "# syntax=docker/dockerfile:1.12", "# syntax=docker/dockerfile:1",
			[]string{`syntax directive "docker/dockerfile:1" is not pinned to a minor version`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.old) {
				t.Fatalf("test bug: %q not in the reference Dockerfile", c.old)
			}
			src := strings.Replace(good, c.old, c.new, 1)
			probs := dockerfileCheck([]byte(src), spec)
			for _, w := range c.want {
				if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, w) }) {
					t.Errorf("want a problem containing %q, got:\n%s", w, strings.Join(probs, "\n"))
				}
			}
		})
	}
}

// dockerfileCheck parses src with BuildKit and returns every problem it finds.
func dockerfileCheck(src []byte, spec dockerfileSpec) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	if syntax, _, _, ok := parser.DetectSyntax(src); !ok {
		bad("no # syntax= directive")
	} else if !regexp.MustCompile(`^(docker\.io/)?docker/dockerfile:\d+\.\d+(\.\d+)?(@sha256:[0-9a-f]{64})?$`).MatchString(syntax) {
		bad("syntax directive %q is not pinned to a minor version (e.g. docker/dockerfile:1.12)", syntax)
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return append(probs, "parse: "+err.Error())
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return append(probs, "instructions: "+err.Error())
	}
	byName := map[string]*instructions.Stage{}
	for i := range stages {
		if stages[i].Name != "" {
			byName[stages[i].Name] = &stages[i]
		}
	}

	// Base images: pinned; golang with go.mod's version.
	for _, st := range stages {
		if _, ok := byName[strings.ToLower(st.BaseName)]; ok {
			continue // FROM an earlier stage
		}
		where := "stage " + st.Name
		if st.Name == "" {
			where = "an unnamed stage"
		}
		ref, err := reference.ParseNormalizedNamed(st.BaseName)
		if err != nil {
			bad("%s: base image %q: %v", where, st.BaseName, err)
			continue
		}
		if p := dockerfileUnpinned(ref); p != "" {
			bad("%s: base image %q is not pinned (%s)", where, st.BaseName, p)
		}
		if reference.Path(ref) == "library/golang" {
			if tagged, ok := ref.(reference.Tagged); ok {
				if v := tagged.Tag(); v != spec.GoVersion && !strings.HasPrefix(v, spec.GoVersion+"-") {
					bad("%s: base image %q does not carry go.mod's go %s", where, st.BaseName, spec.GoVersion)
				}
			}
		}
	}

	// The build: go mod download with its caches, then the Makefile's line per binary.
	runs := map[*instructions.RunCommand]string{} // RUN → its command, whitespace-normalised
	for _, st := range stages {
		if slices.Contains(dockerfileBinaries, st.Name) {
			continue
		}
		for _, c := range st.Commands {
			if r, ok := c.(*instructions.RunCommand); ok {
				if err := r.Expand(func(w string) (string, error) { return w, nil }); err != nil {
					bad("stage %s: %s: %v", st.Name, r.String(), err)
					continue
				}
				runs[r] = strings.Join(strings.Fields(strings.Join(r.CmdLine, " ")), " ")
			}
		}
	}
	download := false
	for r, cmd := range runs {
		if !strings.Contains(cmd, "go mod download") {
			continue
		}
		download = true
		for _, m := range dockerfileMissingMounts(r, "cache:/go/pkg/mod", "bind:go.mod", "bind:go.sum") {
			bad("the RUN with go mod download lacks a %s mount", m)
		}
	}
	if !download {
		bad("no RUN runs go mod download (with a module cache mount)")
	}
	for _, bin := range dockerfileBinaries {
		re := spec.BuildLines[bin]
		if re == nil {
			bad("no build line known for %s", bin)
			continue
		}
		found := false
		for r, cmd := range runs {
			if !re.MatchString(cmd) {
				continue
			}
			found = true
			for _, m := range dockerfileMissingMounts(r, "cache:/go/pkg/mod", "cache:/root/.cache/go-build") {
				bad("the RUN that builds %s lacks a cache mount at %s", bin, strings.TrimPrefix(m, "cache:"))
			}
		}
		if !found {
			bad("no RUN builds %s with the Makefile's build line (%s)", bin, re)
		}
	}

	// The runtime stages.
	for _, bin := range dockerfileBinaries {
		st, ok := byName[bin]
		if !ok {
			bad("no stage named %s", bin)
			continue
		}
		probs = append(probs, dockerfileCheckRuntime(st, bin, spec)...)
	}
	return probs
}

// dockerfileCheckRuntime checks the stage that is binary's image.
func dockerfileCheckRuntime(st *instructions.Stage, bin string, spec dockerfileSpec) []string {
	var probs []string
	bad := func(format string, args ...any) {
		probs = append(probs, fmt.Sprintf("stage %s: ", bin)+fmt.Sprintf(format, args...))
	}
	var (
		user       *instructions.UserCommand
		health     *instructions.HealthCheckCommand
		entrypoint *instructions.EntrypointCommand
		ports      []string
		volumes    []string
		copies     []*instructions.CopyCommand
		env        = map[string]string{}
		labels     = map[string]string{}
	)
	for _, c := range st.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c
		case *instructions.HealthCheckCommand:
			health = c
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.CopyCommand:
			copies = append(copies, c)
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env[kv.Key] = kv.Value
			}
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = kv.Value
			}
		case *instructions.AddCommand:
			bad("ADD %v: use COPY", c.SourcePaths)
		}
	}

	// USER: numeric (Kubernetes' runAsNonRoot can only verify a number) and not root.
	if user == nil {
		bad("no USER (the image would run as root)")
	} else {
		name, _, _ := strings.Cut(user.User, ":")
		switch uid, err := strconv.ParseUint(name, 10, 32); {
		case name == "root" || (err == nil && uid == 0):
			bad("USER %q is root", user.User)
		case err != nil:
			bad("USER %q is not numeric", user.User)
		}
	}

	// EXPOSE: the binary's default HTTP_ADDR port.
	_, port, _ := net.SplitHostPort(config.HTTPAddr.DefaultFor(bin))
	if !slices.ContainsFunc(ports, func(p string) bool { return strings.TrimSuffix(p, "/tcp") == port }) {
		bad("EXPOSE %v lacks %s (HTTP_ADDR's default port)", ports, port)
	}

	// ENTRYPOINT: exec form, the binary, which a COPY puts there.
	binPath := "/" + bin
	switch {
	case entrypoint == nil:
		bad("no ENTRYPOINT")
	case entrypoint.PrependShell:
		bad("ENTRYPOINT is in shell form (distroless has no shell; SIGTERM must reach the binary)")
	case !slices.Equal(entrypoint.CmdLine, []string{binPath}):
		bad("ENTRYPOINT %q, want [%q]", entrypoint.CmdLine, binPath)
	}
	if !slices.ContainsFunc(copies, func(c *instructions.CopyCommand) bool { return c.DestPath == binPath }) {
		bad("nothing is copied to the ENTRYPOINT %s", binPath)
	}

	// HEALTHCHECK: exec form, the binary's own healthcheck subcommand.
	switch {
	case health == nil:
		bad("no HEALTHCHECK")
	case len(health.Health.Test) == 0 || health.Health.Test[0] == "NONE":
		bad("HEALTHCHECK is disabled")
	case health.Health.Test[0] == "CMD-SHELL":
		bad("HEALTHCHECK is in shell form (distroless has no shell)")
	default:
		if !dockerfileIsHealthcheck(health.Health.Test[1:], binPath) {
			bad("HEALTHCHECK runs %q, want [%q \"healthcheck\"] (optionally /ready or /health)", health.Health.Test[1:], binPath)
		}
		if health.Health.Interval <= 0 || health.Health.Timeout <= 0 {
			bad("HEALTHCHECK without --interval and --timeout")
		}
	}

	// ENV: only variables the binary reads; JSON logs.
	for k := range env {
		switch v, ok := config.Lookup(k); {
		case !ok:
			bad("ENV %s is not in pkg/config's table", k)
		case !v.ReadBy(bin):
			bad("ENV %s is not read by %s", k, bin)
		}
	}
	if env["LOG_FORMAT"] != "json" {
		bad("LOG_FORMAT is not json")
	}

	// A binary that keeps state in DATA_DIR: an absolute VOLUME owned by USER.
	if config.DataDir.ReadBy.Includes(bin) {
		dir := env["DATA_DIR"]
		switch {
		case !strings.HasPrefix(dir, "/"):
			bad("DATA_DIR is %q, want an absolute path (ENV DATA_DIR=/data)", dir)
		default:
			if !slices.Contains(volumes, dir) {
				bad("DATA_DIR %s is not a VOLUME", dir)
			}
			if user != nil && !slices.ContainsFunc(copies, func(c *instructions.CopyCommand) bool {
				return strings.TrimSuffix(c.DestPath, "/") == dir && c.Chown == user.User
			}) {
				bad("DATA_DIR %s is not copied with --chown=%s (the runtime user could not write it)", dir, user.User)
			}
		}
	}

	// A binary that reads MODEL_REPOSITORY: an absolute path that a COPY of the
	// build context's model repository fills, left to root (read-only for USER).
	if config.ModelRepository.ReadBy.Includes(bin) {
		switch dir, ok := env[config.ModelRepository.Env]; {
		case !ok:
			bad("no ENV %s (want the absolute path the build context's %s/ is copied to)", config.ModelRepository.Env, spec.ModelsDir)
		case !strings.HasPrefix(dir, "/"):
			bad("%s %q is not an absolute path (want the directory %s/ is copied to, e.g. /models)", config.ModelRepository.Env, dir, spec.ModelsDir)
		default:
			c := dockerfileModelsCopy(copies, dir)
			switch {
			case c == nil:
				bad("%s %s: nothing is copied there (want COPY %s/ %s/)", config.ModelRepository.Env, dir, spec.ModelsDir, dir)
			case c.From != "":
				bad("COPY %v %s fills %s from stage %s, want the build context's %s/", c.SourcePaths, c.DestPath, config.ModelRepository.Env, c.From, spec.ModelsDir)
			case len(c.SourcePaths) != 1 || path.Clean(c.SourcePaths[0]) != spec.ModelsDir:
				bad("COPY %v %s fills %s with %v, want the build context's %s/", c.SourcePaths, c.DestPath, config.ModelRepository.Env, c.SourcePaths, spec.ModelsDir)
			}
			if c != nil && c.Chown != "" && !dockerfileIsRootOwner(c.Chown) {
				bad("the model repository %s is copied with --chown=%s: the worker could rewrite its own models; leave it root's", dir, c.Chown)
			}
		}
	}

	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source"} {
		if labels[l] == "" {
			bad("no LABEL %s", l)
		}
	}
	return probs
}

// dockerfileModelsCopy returns the last COPY whose destination is dir (the model
// repository), or nil.
func dockerfileModelsCopy(copies []*instructions.CopyCommand, dir string) *instructions.CopyCommand {
	var found *instructions.CopyCommand
	for _, c := range copies {
		if path.Clean(c.DestPath) == path.Clean(dir) {
			found = c
		}
	}
	return found
}

// dockerfileIsRootOwner reports whether a --chown value is root (user 0 or root,
// any group).
func dockerfileIsRootOwner(chown string) bool {
	u, _, _ := strings.Cut(chown, ":")
	return u == "root" || u == "0"
}

// dockerfileStage parses a Dockerfile and returns its stage named name.
func dockerfileStage(src []byte, name string) (*instructions.Stage, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, err
	}
	for i := range stages {
		if stages[i].Name == name {
			return &stages[i], nil
		}
	}
	return nil, fmt.Errorf("no stage named %s", name)
}

// dockerfileStageEnv returns the ENV of a stage (its own instructions only).
func dockerfileStageEnv(st *instructions.Stage) map[string]string {
	env := map[string]string{}
	for _, c := range st.Commands {
		if e, ok := c.(*instructions.EnvCommand); ok {
			for _, kv := range e.Env {
				env[kv.Key] = kv.Value
			}
		}
	}
	return env
}

// dockerfileImageModels reads the Dockerfile at root and returns the worker
// image's MODEL_REPOSITORY and the build-context directory copied there.
func dockerfileImageModels(t testing.TB, root string) (imageDir, contextDir string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := dockerfileStage(src, config.Worker)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	imageDir = dockerfileStageEnv(st)[config.ModelRepository.Env]
	if imageDir == "" {
		t.Fatalf("Dockerfile: stage %s sets no %s", config.Worker, config.ModelRepository.Env)
	}
	var copies []*instructions.CopyCommand
	for _, c := range st.Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok {
			copies = append(copies, cp)
		}
	}
	c := dockerfileModelsCopy(copies, imageDir)
	if c == nil || c.From != "" || len(c.SourcePaths) != 1 {
		t.Fatalf("Dockerfile: stage %s copies no build-context directory to %s", config.Worker, imageDir)
	}
	return path.Clean(imageDir), path.Clean(c.SourcePaths[0])
}

// dockerfileIsHealthcheck reports whether args run binPath's healthcheck subcommand.
func dockerfileIsHealthcheck(args []string, binPath string) bool {
	switch {
	case len(args) == 2:
		return args[0] == binPath && args[1] == "healthcheck"
	case len(args) == 3:
		return args[0] == binPath && args[1] == "healthcheck" && (args[2] == "/ready" || args[2] == "/health")
	}
	return false
}

// dockerfileUnpinned says why ref is not pinned, or "" when it is.
func dockerfileUnpinned(ref reference.Named) string {
	if _, ok := ref.(reference.Digested); ok {
		return ""
	}
	tagged, ok := ref.(reference.Tagged)
	switch {
	case !ok:
		return "no tag"
	case tagged.Tag() == "latest":
		return "latest"
	}
	return ""
}

// dockerfileMissingMounts returns which of want ("type:target") r lacks.
func dockerfileMissingMounts(r *instructions.RunCommand, want ...string) []string {
	var have []string
	for _, m := range instructions.GetMounts(r) {
		have = append(have, string(m.Type)+":"+m.Target)
	}
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	return missing
}

// dockerfileMakefileBuildLines reads the Makefile's `build` recipe and returns, per
// binary, a pattern of its build command with the variables expanded: $(GOBUILD)
// and $(GO) literally (GO's default is `go`, as in the image), the output directory
// $(BIN) as any path.
func dockerfileMakefileBuildLines(t testing.TB, path string) map[string]*regexp.Regexp {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	varLine := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$`)
	var recipe []string
	inBuild := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if inBuild && strings.HasPrefix(line, "\t") {
			recipe = append(recipe, strings.TrimSpace(line))
			continue
		}
		inBuild = false
		if m := varLine.FindStringSubmatch(line); m != nil {
			vars[m[1]] = strings.TrimSpace(m[3])
		} else if strings.HasPrefix(line, "build:") {
			inBuild = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(recipe) == 0 {
		t.Fatalf("%s: no recipe for the build target", path)
	}
	const anyPath = "\x00BIN\x00"
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var expand func(s string, depth int) string
	expand = func(s string, depth int) string {
		if depth > 10 {
			t.Fatalf("%s: recursive variables in %q", path, s)
		}
		return ref.ReplaceAllStringFunc(s, func(m string) string {
			name := ref.FindStringSubmatch(m)[1]
			if name == "BIN" {
				return anyPath
			}
			v, ok := vars[name]
			if !ok {
				t.Fatalf("%s: $(%s) is not defined in the Makefile", path, name)
			}
			return expand(v, depth+1)
		})
	}
	out := map[string]*regexp.Regexp{}
	for _, line := range recipe {
		line = strings.Join(strings.Fields(expand(line, 0)), " ")
		for _, bin := range dockerfileBinaries {
			if strings.HasSuffix(line, " ./cmd/"+bin) {
				pat := strings.ReplaceAll(regexp.QuoteMeta(line), anyPath, `\S*`)
				out[bin] = regexp.MustCompile(`(^|[\s;&|(])` + pat + `($|[\s;&|)])`)
			}
		}
	}
	for _, bin := range dockerfileBinaries {
		if out[bin] == nil {
			t.Fatalf("%s: the build recipe does not build ./cmd/%s", path, bin)
		}
	}
	return out
}

// dockerfileGoVersion returns go.mod's go line.
func dockerfileGoVersion(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no go line", path)
	}
	return string(m[1])
}

// TestDockerignore checks that .dockerignore keeps everything the build reads in the
// context: go.mod, go.sum, and every file of every package of this module that the
// binaries import, as `go list` reports them (Go files and go:embed files).
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	need := append([]string{"go.mod", "go.sum", "cmd", "pkg"}, dockerfileBuildInputs(t, root)...)
	for _, p := range dockerignoreExcluded(t, patterns, need) {
		t.Errorf(".dockerignore excludes %s, which the build needs", p)
	}
	// Large or private things stay out.
	for _, p := range []string{".git/HEAD", "bin/api", "data/jobs.db", ".run/prometheus-targets.json", "models/digits/testdata/vectors.json"} {
		if len(dockerignoreExcluded(t, patterns, []string{p})) == 0 {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}

// TestDockerignoreChecksFail: an ignore file that drops a build input is caught.
func TestDockerignoreChecksFail(t *testing.T) {
	for _, c := range []struct {
		ignore string
		want   string
	}{
		{"*.sum\n", "go.sum"},
		{"pkg\n", "pkg/config/config.go"},
		{"**/*.json\n", "pkg/apidoc/openapi.json"},
		{"*\n!cmd\n", "go.mod"},
	} {
		patterns, err := ignorefile.ReadAll(strings.NewReader(c.ignore))
		if err != nil {
			t.Fatal(err)
		}
		got := dockerignoreExcluded(t, patterns, []string{"go.mod", "go.sum", "cmd/api/main.go", "pkg/config/config.go", "pkg/apidoc/openapi.json"})
		if !slices.Contains(got, c.want) {
			t.Errorf("%q: want %s reported, got %v", c.ignore, c.want, got)
		}
	}
}

// dockerignoreExcluded returns the paths (relative, slash-separated) that patterns
// exclude, matched the way the Docker CLI and BuildKit do.
func dockerignoreExcluded(t testing.TB, patterns, paths []string) []string {
	t.Helper()
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		ex, err := pm.MatchesOrParentMatches(filepath.FromSlash(p))
		if err != nil {
			t.Fatal(err)
		}
		if ex {
			out = append(out, p)
		}
	}
	return out
}

// dockerfileBuildInputs lists, relative to root, every Go and embedded file of this
// module's packages that cmd/api and cmd/worker are built from.
func dockerfileBuildInputs(t testing.TB, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/api", "./cmd/worker")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var files []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir        string
			GoFiles    []string
			EmbedFiles []string
			Module     *struct{ Main bool }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			rel, err := filepath.Rel(root, filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, filepath.ToSlash(rel))
		}
	}
	if len(files) == 0 {
		t.Fatal("go list found no files of this module")
	}
	return files
}

// TestDockerfileModels: the model repository the worker image carries, that is
// the build context's copy of models/ as .dockerignore leaves it, scans clean with
// pkg/repository and serves exactly the models and versions of the repository's
// models/; the models' testdata/ stays out and their README.md (the data sets'
// attribution) goes in.
func TestDockerfileModels(t *testing.T) {
	root := repoRoot(t)
	imageDir, contextDir := dockerfileImageModels(t, root)
	if contextDir != dockerfileModelsDir {
		t.Fatalf("the worker image's %s (%s) is filled from %s/, want %s/", config.ModelRepository.Env, imageDir, contextDir, dockerfileModelsDir)
	}
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dockerignoreModelsCheck(t, root, contextDir, patterns) {
		t.Error(p)
	}
}

// TestDockerignoreModelsChecksFail: ignore files that break the image's models are
// caught.
func TestDockerignoreModelsChecksFail(t *testing.T) {
	root := repoRoot(t)
	const keep = "models/*/testdata\n"
	for _, c := range []struct {
		ignore string
		want   string
	}{
		{"", "models/digits/testdata/vectors.json is in the image"},
		{keep + "models\n", "the image's model repository: " + dockerfileModelsDir + ": no such directory"},
		{keep + "**/*.onnx\n", "model.onnx"},
		{keep + "models/seed\n", "the image serves [digits/1], the repository [digits/1 seed/1]"},
		{keep + "**/*.md\n", "models/digits/README.md is not in the image"},
		{keep + "**/config.yaml\n", "the image's model repository: "},
	} {
		patterns, err := ignorefile.ReadAll(strings.NewReader(c.ignore))
		if err != nil {
			t.Fatal(err)
		}
		probs := dockerignoreModelsCheck(t, root, dockerfileModelsDir, patterns)
		if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, c.want) }) {
			t.Errorf("%q: want a problem containing %q, got:\n%s", c.ignore, c.want, strings.Join(probs, "\n"))
		}
	}
}

// dockerignoreModelsCheck copies the files of root/dir that patterns leave in the
// build context into a temporary directory (what COPY dir/ puts into the image) and
// compares what pkg/repository reads there with what it reads in root/dir.
func dockerignoreModelsCheck(t testing.TB, root, dir string, patterns []string) []string {
	t.Helper()
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "models")
	var probs []string
	var readmes []string
	err = filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		slash := filepath.ToSlash(rel)
		parts := strings.Split(slash, "/")
		if !d.IsDir() && len(parts) == 3 && strings.EqualFold(parts[2], "README.md") {
			readmes = append(readmes, slash)
		}
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if excluded {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if slices.Contains(parts, "testdata") && !d.IsDir() {
			probs = append(probs, fmt.Sprintf("%s is in the image (.dockerignore should leave the models' testdata/ out)", slash))
		}
		dst := filepath.Join(image, strings.TrimPrefix(rel, dir))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range readmes {
		if len(dockerignoreExcluded(t, patterns, []string{r})) > 0 {
			probs = append(probs, fmt.Sprintf("%s is not in the image (it carries the model's and data set's attribution)", r))
		}
	}

	want, err := repository.Scan(filepath.Join(root, dir), nil)
	if err != nil {
		t.Fatalf("the repository's %s/: %v", dir, err)
	}
	got, err := repository.Scan(image, nil)
	if err != nil {
		// Messages name the temporary copy; name the build context's path.
		msg := strings.ReplaceAll(err.Error(), image, dir)
		return append(probs, "the image's model repository: "+strings.ReplaceAll(msg, "\n", "; "))
	}
	if g, w := dockerfileModelNames(got), dockerfileModelNames(want); !slices.Equal(g, w) {
		probs = append(probs, fmt.Sprintf("the image serves %v, the repository %v", g, w))
	}
	return probs
}

// dockerfileModelNames lists models as name/version.
func dockerfileModelNames(ms []repository.Model) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.String())
	}
	return out
}
