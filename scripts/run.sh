#!/usr/bin/env bash
# `make run`: the API on :8000 and $WORKERS workers (worker i = 0..N-1 on port 8001+i)
# against $AMQP_URL (default: the local RabbitMQ). Ctrl-C stops everything.
set -euo pipefail
BIN=${BIN:-bin}
WORKERS=${WORKERS:-2}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@localhost:5672/}
API_ADDR=${API_ADDR:-:8000}
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
  HTTP_ADDR=":$((8001 + i))" WORKER_ID="worker-$i" "$BIN/worker" &
  pids+=($!)
done
port=${API_ADDR##*:}
cat <<MSG
warren is starting: API on http://localhost:$port, $WORKERS worker(s) on ports 8001..$((8000 + WORKERS))
  curl -s localhost:$port/ready
  curl -s -X POST localhost:$port/process -d '{"data":"cat image data"}'
  docs: http://localhost:$port/docs     Ctrl-C stops everything
MSG
wait -n "${pids[@]}" || true
