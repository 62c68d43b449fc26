#!/usr/bin/env bash
# What CI runs for the compose test (make test-compose): makes sure the Docker
# engine, the compose/buildx CLI plugins and the stand-in images are there
# (scripts/compose-engine.sh, compose-tools.sh, compose-standins.sh: tens of
# minutes cold, seconds warm), runs internal/composetest, and at the end removes
# what is left of the test's compose project (containers, networks, volumes) and
# stops the dockerd it started, so nothing lingers. An engine that was already
# running is left running. Each step's duration goes to stderr.
# Needs root (apt-get, dockerd) on a cold machine.
set -euo pipefail
cd "$(dirname "$0")/.."

project=warren-composetest # internal/composetest's fixed project name
step() { # name command...
	local name=$1 t0=$SECONDS
	shift
	echo "[ci-compose $(date -u +%T)] $name" >&2
	"$@"
	echo "[ci-compose $(date -u +%T)] $name: $((SECONDS - t0)) s" >&2
}

started_engine=
if ! docker info >/dev/null 2>&1; then
	started_engine=1
fi

finish() {
	local rc=$?
	set +e
	if docker info >/dev/null 2>&1; then
		ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
		[[ -n $ids ]] && docker rm -f $ids >/dev/null
		nets=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
		[[ -n $nets ]] && docker network rm $nets >/dev/null
		vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
		[[ -n $vols ]] && docker volume rm $vols >/dev/null
		left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")
		if [[ -n $left ]]; then
			echo "[ci-compose] left behind by project $project: $left" >&2
			rc=1
		fi
	fi
	if [[ -n $started_engine && -s /var/run/docker.pid ]]; then
		pid=$(cat /var/run/docker.pid)
		echo "[ci-compose] stopping the dockerd this run started (pid $pid)" >&2
		kill "$pid" 2>/dev/null
		for _ in $(seq 1 30); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "[ci-compose] dockerd $pid did not stop in 30 s" >&2
			rc=1
		fi
	fi
	exit "$rc"
}
trap finish EXIT

t0=$SECONDS
step "engine" ./scripts/compose-engine.sh
step "CLI plugins" ./scripts/compose-tools.sh
step "stand-in images" ./scripts/compose-standins.sh
step "compose test" env WARREN_COMPOSE_TEST=1 "${GO:-go}" test -count=1 -v -timeout 45m ./internal/composetest
echo "[ci-compose] total $((SECONDS - t0)) s" >&2
