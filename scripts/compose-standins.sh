#!/usr/bin/env bash
# Builds local stand-ins for the third-party images that docker-compose.yml and the
# Dockerfile name, for a Docker engine that can reach no image registry (this
# project's CI machines). Each stand-in is tagged with the exact name the compose
# file or the Dockerfile uses, so `docker compose up --build` pulls nothing:
#
#   golang:1.26.8                               Debian root + this machine's /usr/local/go
#   gcr.io/distroless/static-debian12:nonroot   passwd/group (65532 nonroot), CA certs, tzdata
#   rabbitmq:3.10.8-management                  Debian's rabbitmq-server 3.10.8 (also tagged
#                                               rabbitmq:3.10-management, the tests' fallback)
#   redis:7.4.2-alpine                          Debian's redis-server (7.0)
#   prom/prometheus:v2.55.1                     Debian's prometheus (2.42)
#   docker/dockerfile:1.12                      BuildKit's Dockerfile frontend, built from
#                                               github.com/moby/buildkit with the local Go
#
# The Debian root is made once with debootstrap and kept as a tarball in
# $WARREN_CACHE (~/.cache/warren); an image already present is not built again, so a
# second run takes seconds. FORCE=1 rebuilds the images (not the tarball).
# Used by `make test-compose` (internal/composetest) and by the tests' Docker
# fallback (internal/testdocker: rabbitmq:3.10-management, redis:7.4.2-alpine,
# prom/prometheus:v2.55.1); docs/running.md and docs/testing.md say more.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
standins="$here/internal/composetest/testdata/standins"
cache=${WARREN_CACHE:-$HOME/.cache/warren}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs_tar="$cache/debian-$suite-standin-rootfs.tar"
base=warren-standin/debian:$suite
# What the stand-ins need from Debian, installed once into the one root.
packages="ca-certificates tzdata wget netbase procps rabbitmq-server redis-server prometheus"
# The stand-ins are plain Dockerfiles: the classic builder builds them, so they do
# not depend on the BuildKit frontend image built last.
export DOCKER_BUILDKIT=0
mkdir -p "$cache"

have() { [[ -z ${FORCE:-} ]] && docker image inspect "$1" >/dev/null 2>&1; }
log() { printf '[standins %s] %s\n' "$(date -u +%T)" "$*" >&2; }

# ---- the Debian root -----------------------------------------------------------------
if [[ ! -s $rootfs_tar ]]; then
	command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install debootstrap" >&2; exit 1; }
	work=$(mktemp -d "$cache/rootfs.XXXXXX")
	trap 'umount -R "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
	log "debootstrap $suite into $work (once; a few minutes)"
	debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log" >&2; exit 1; }
	# No service starts inside the chroot while packages install.
	printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
	chmod +x "$work/root/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$work/root/etc/resolv.conf"
	mount -t proc proc "$work/root/proc"
	log "installing $packages"
	chroot "$work/root" /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages && apt-get clean && rm -rf /var/lib/apt/lists/*" \
		>"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
	umount "$work/root/proc"
	rm -f "$work/root/usr/sbin/policy-rc.d"
	: >"$work/root/etc/resolv.conf"
	tar -C "$work/root" -cf "$rootfs_tar.tmp" .
	mv "$rootfs_tar.tmp" "$rootfs_tar"
	rm -rf "$work"
	trap - EXIT
fi
if ! have "$base"; then
	log "docker import $rootfs_tar as $base"
	docker import "$rootfs_tar" "$base" >/dev/null
fi

build() { # tag dir [docker build args...]
	local tag=$1 dir=$2
	shift 2
	if have "$tag"; then return; fi
	log "building $tag"
	docker build -q --build-arg BASE="$base" -t "$tag" "$@" "$dir" >/dev/null
}

build gcr.io/distroless/static-debian12:nonroot "$standins/distroless"
build rabbitmq:3.10.8-management "$standins/rabbitmq"
if ! have rabbitmq:3.10-management; then
	docker tag rabbitmq:3.10.8-management rabbitmq:3.10-management
fi
build redis:7.4.2-alpine "$standins/redis"
build prom/prometheus:v2.55.1 "$standins/prometheus"

# golang: the Go toolchain of this machine, and a module proxy on disk made of the
# module downloads go.sum names, so `go mod download` in the build needs no network.
# The image is labelled with go.sum's hash and rebuilt when go.sum changes.
golang_tag=golang:$(go env GOVERSION | sed 's/^go//')
gosum=$(sha256sum "$here/go.sum" | cut -c1-16)
if ! have "$golang_tag" ||
	[[ $(docker image inspect -f '{{index .Config.Labels "warren.standin.gosum"}}' "$golang_tag") != "$gosum" ]]; then
	ctx=$(mktemp -d)
	log "building $golang_tag from $(go env GOROOT)"
	cp "$standins/golang/Dockerfile" "$ctx/"
	cp -a "$(go env GOROOT)" "$ctx/go"
	(cd "$here" && GOFLAGS=-mod=mod go mod download) # fills the module cache
	mkdir -p "$ctx/goproxy"
	modcache=$(go env GOMODCACHE)/cache/download
	# Every module version go.sum names (the .mod-only lines too).
	awk '{sub("/go.mod$", "", $2); print $1, $2}' "$here/go.sum" | sort -u | while read -r mod ver; do
		esc=$(printf '%s' "$mod" | sed 's/[A-Z]/!\L&/g')
		src="$modcache/$esc/@v"
		mkdir -p "$ctx/goproxy/$esc/@v"
		for f in "$ver.info" "$ver.mod" "$ver.zip"; do
			[[ -f $src/$f ]] && cp "$src/$f" "$ctx/goproxy/$esc/@v/"
		done
		ls "$ctx/goproxy/$esc/@v" | sed -n 's/\.info$//p' >"$ctx/goproxy/$esc/@v/list"
	done
	docker build -q --build-arg BASE="$base" --label warren.standin.gosum="$gosum" -t "$golang_tag" "$ctx" >/dev/null
	rm -rf "$ctx"
fi

# The Dockerfile's `# syntax=docker/dockerfile:1.12` line: BuildKit runs that image
# as the Dockerfile frontend. Built from buildkit's own source with the local Go.
# dockerfile 1.12 is the frontend of buildkit v0.18.
frontend_tag=docker/dockerfile:1.12
frontend_mod=github.com/moby/buildkit@v0.18.2
if ! have "$frontend_tag"; then
	ctx=$(mktemp -d)
	log "building $frontend_tag from $frontend_mod"
	src=$(cd "$ctx" && GOTOOLCHAIN=local go mod download -json "$frontend_mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	cp -r "$src" "$ctx/src"
	chmod -R u+w "$ctx/src"
	(cd "$ctx/src" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build \
		-tags "netgo static_build osusergo" \
		-ldflags "-s -w -X main.Version=${frontend_mod#*@}-warren-standin" \
		-o "$ctx/dockerfile-frontend" ./frontend/dockerfile/cmd/dockerfile-frontend)
	cp "$standins/dockerfile-frontend/Dockerfile" "$ctx/"
	rm -rf "$ctx/src"
	docker build -q -t "$frontend_tag" "$ctx" >/dev/null
	rm -rf "$ctx"
fi
log "stand-ins ready"
