#!/usr/bin/env bash
# Installs the Docker CLI plugins `docker compose` and `docker buildx` (compose
# delegates `--build` to `buildx bake`; without buildx it falls back to the classic
# builder, which cannot build the Dockerfile's RUN --mount steps), built from their
# Go modules with the local toolchain into ~/.docker/cli-plugins. A plugin already
# there at the wanted version is kept. Used by `make test-compose`.
set -euo pipefail

compose_mod=github.com/docker/compose/v5@v5.6.0
buildx_mod=github.com/docker/buildx@v0.38.2
plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
mkdir -p "$plugins"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

# plugin name module package version-ldflag
install_plugin() {
	local name=$1 mod=$2 pkg=$3 xflag=$4 ver=${2#*@}
	if "$plugins/docker-$name" version 2>/dev/null | grep -qF "$ver"; then
		return
	fi
	local work src
	work=$(mktemp -d)
	echo "[compose-tools] building docker-$name from $mod (once; a few minutes)" >&2
	src=$(cd "$work" && go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	cp -r "$src" "$work/src"
	chmod -R u+w "$work/src"
	# Built as the main module: their go.mod files carry exclude directives, which
	# `go install module@version` refuses.
	(cd "$work/src" && go build -ldflags "-s -w -X $xflag=$ver" -o "$plugins/docker-$name.tmp" "$pkg")
	mv "$plugins/docker-$name.tmp" "$plugins/docker-$name"
	rm -rf "$work"
}

install_plugin compose "$compose_mod" ./cmd github.com/docker/compose/v5/internal.Version
install_plugin buildx "$buildx_mod" ./cmd/buildx github.com/docker/buildx/version.Version
docker compose version >&2
docker buildx version >&2
