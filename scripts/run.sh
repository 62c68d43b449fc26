#!/usr/bin/env bash
# `make run`: the API on :8000 and $WORKERS workers (worker i = 0..N-1 on port 8001+i)
# against $AMQP_URL (default: the local RabbitMQ). Ctrl-C stops everything.
# API_ADDR and WORKER_PORT (the first worker's port) move the ports; REDIS_URL, when
# set, is passed to the API (else its job store is DATA_DIR); every other variable of
# `bin/api config --all` is passed through from the environment as usual.
set -euo pipefail
BIN=${BIN:-bin}
WORKERS=${WORKERS:-2}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@localhost:5672/}
API_ADDR=${API_ADDR:-:8000}
WORKER_PORT=${WORKER_PORT:-8001}
if ((WORKERS < 0)); then
  echo "run.sh: WORKERS must be 0 or more" >&2
  exit 2
fi
pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping ${#pids[@]} processes (draining)..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

HTTP_ADDR=$API_ADDR "$BIN/api" &
pids+=($!)
for ((i = 0; i < WORKERS; i++)); do
  HTTP_ADDR=":$((WORKER_PORT + i))" WORKER_ID="worker-$i" "$BIN/worker" &
  pids+=($!)
done
port=${API_ADDR##*:}

# Prometheus file_sd targets for deployments/prometheus/prometheus-local.yml, which
# reads .run/prometheus-targets.json (PROMETHEUS_TARGETS writes it elsewhere). Each
# group's __meta_warren_role picks its scrape jobs. RabbitMQ's prometheus plugin is
# taken to be on AMQP_URL's host, port 15692, unless RABBITMQ_PROMETHEUS says otherwise.
root=$(cd "$(dirname "$0")/.." && pwd)
targets=${PROMETHEUS_TARGETS:-$root/.run/prometheus-targets.json}
api_host=${API_ADDR%:*}
case $api_host in "" | 0.0.0.0 | "[::]") api_host=127.0.0.1 ;; esac
amqp_host=${AMQP_URL#*://}
amqp_host=${amqp_host##*@}
amqp_host=${amqp_host%%/*}
case $amqp_host in
  \[*) amqp_host=${amqp_host%%]*}] ;; # [IPv6]:port
  *) amqp_host=${amqp_host%%:*} ;;
esac
case $amqp_host in "" | localhost) amqp_host=127.0.0.1 ;; esac
rabbit=${RABBITMQ_PROMETHEUS:-$amqp_host:15692}
worker_targets=""
for ((i = 0; i < WORKERS; i++)); do
  worker_targets+="${worker_targets:+, }\"127.0.0.1:$((WORKER_PORT + i))\""
done
mkdir -p "$(dirname "$targets")"
cat >"$targets.tmp" <<JSON
[
  {"targets": ["$api_host:$port"], "labels": {"__meta_warren_role": "api"}},
  {"targets": [$worker_targets], "labels": {"__meta_warren_role": "worker"}},
  {"targets": ["$rabbit"], "labels": {"__meta_warren_role": "rabbitmq"}}
]
JSON
mv "$targets.tmp" "$targets"

cat <<MSG
warren is starting: API on http://localhost:$port, $WORKERS worker(s) on ports $WORKER_PORT..$((WORKER_PORT + WORKERS - 1))
  curl -s localhost:$port/ready
  curl -s -X POST localhost:$port/process -d '{"data":"cat image data"}'
  docs: http://localhost:$port/docs     Ctrl-C stops everything
  metrics: /metrics on every port above; Prometheus file_sd targets: $targets
    prometheus --config.file=deployments/prometheus/prometheus-local.yml --storage.tsdb.path=.run/prometheus
MSG
wait -n "${pids[@]}" || true
