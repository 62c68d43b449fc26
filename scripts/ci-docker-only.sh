#!/usr/bin/env bash
# Proves that the tests needing RabbitMQ, Redis and Prometheus run on a machine with
# only Go and a Docker engine: with WARREN_TEST_NO_LOCAL=1 the test helpers ignore
# the local broker (127.0.0.1:5672), Redis (127.0.0.1:6379) and the rabbitmq-server,
# rabbitmqctl, redis-server, prometheus and promtool binaries, and run
# rabbitmq:3.10-management, redis:7.4.2-alpine and prom/prometheus:v2.55.1
# containers instead (internal/testdocker; docs/testing.md).
#
# Sets up what is missing first (scripts/compose-engine.sh; scripts/compose-standins.sh
# for an engine that reaches no registry, STANDINS=0 leaves it out), and at the end
# removes the tests' containers (label warren-testbroker=1) and stops the dockerd it
# started. Private RabbitMQ nodes (testbroker.StartNode, StartCluster: the broker
# restart, TLS, alarm and cluster tests) run in containers of the same image then, on
# the host's network and process namespaces. PKGS, SKIP (a -skip pattern) and E2E (a
# -run pattern for ./internal/e2e, or "none") change the selection. Each step's
# duration goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

# The packages whose tests use the services, every test of them; and the end-to-end
# tests (real binaries) that use the services or private nodes (the whole e2e package
# takes 14 minutes: docs/testing.md has a run of everything this way).
pkgs=${PKGS:-./internal/testdocker ./internal/testbroker ./pkg/jobs/... ./pkg/ratelimit/... ./pkg/queue}
skip=()
[[ -z ${SKIP:-} ]] || skip=(-skip "$SKIP")
e2e=${E2E:-'^(TestPrometheusFiles|TestPrometheusScrapesFarm|TestJobsHTTPContract|TestJobCancel|TestJobLongPollAcrossReplicas|TestLimitsSharedAcrossReplicas|TestBrokerRestartThroughTheBinaries|TestEncryptedLinks|TestJobBrokerRestart|TestJobAPIKilledBeforePublishConfirm|TestJobRunTimeoutBelowConsumerTimeout|TestClusterNodeLoss|TestClusterQuorumRequestQueue)$'}

failed=
step() { # name command...: a failed step is reported, the next ones still run
	local name=$1 t0=$SECONDS rc=0
	shift
	echo "[ci-docker-only $(date -u +%T)] $name" >&2
	"$@" || rc=$?
	echo "[ci-docker-only $(date -u +%T)] $name: $((SECONDS - t0)) s, exit $rc" >&2
	((rc == 0)) || failed+=" $name"
}

started_engine=
docker info >/dev/null 2>&1 || started_engine=1
finish() {
	local rc=$?
	set +e
	if docker info >/dev/null 2>&1; then
		ids=$(docker ps -aq --filter label=warren-testbroker=1)
		[[ -n $ids ]] && docker rm -f $ids >/dev/null
	fi
	if [[ -n $started_engine && -s /var/run/docker.pid ]]; then
		pid=$(cat /var/run/docker.pid)
		echo "[ci-docker-only] stopping the dockerd this run started (pid $pid)" >&2
		kill "$pid" 2>/dev/null
		for _ in $(seq 1 30); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		kill -0 "$pid" 2>/dev/null && { echo "[ci-docker-only] dockerd $pid did not stop in 30 s" >&2; rc=1; }
	fi
	exit "$rc"
}
trap finish EXIT

t0=$SECONDS
./scripts/compose-engine.sh
[[ ${STANDINS:-1} == 0 ]] || ./scripts/compose-standins.sh
unset AMQP_URL MANAGEMENT_URL REDIS_URL RABBITMQ_PROMETHEUS
# shellcheck disable=SC2086
step "go test services (WARREN_TEST_NO_LOCAL=1)" env WARREN_TEST_NO_LOCAL=1 "${GO:-go}" test -race -count=1 -timeout 30m "${skip[@]}" $pkgs
[[ $e2e == none ]] ||
	step "go test e2e (WARREN_TEST_NO_LOCAL=1)" env WARREN_TEST_NO_LOCAL=1 "${GO:-go}" test -race -count=1 -timeout 30m -run "$e2e" ./internal/e2e
echo "[ci-docker-only] total $((SECONDS - t0)) s${failed:+; failed:$failed}" >&2
[[ -z $failed ]]
