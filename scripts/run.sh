#!/usr/bin/env bash
# `make run`: the API and $WORKERS workers as local processes, against $AMQP_URL
# (default: the local RabbitMQ). docs/running.md describes it; in short:
#
#   BIND         address every process listens on (default 127.0.0.1: this machine
#                only; BIND=0.0.0.0 listens on every interface)
#   API_PORT     the API's port (default 8000); API_ADDR (host:port) overrides BIND+API_PORT
#   WORKER_PORT  the first worker's port (default 8001): worker i listens on WORKER_PORT+i
#   WORKERS      how many workers (default 2; 0 starts none and /process answers 503)
#   START_TIMEOUT, STOP_TIMEOUT  seconds to wait for every /health (30) and for the
#                drain on stop (45) before giving up
#
# REDIS_URL, when set, is the API's job store (else DATA_DIR); every other variable of
# `bin/api config --all` is passed through from the environment as usual.
#
# What happens when:
#   - a process exits while starting (port in use, bad setting, job store locked) or a
#     port is taken, or /health does not answer within START_TIMEOUT: the reason (the
#     process's last log lines) is printed, everything stops, exit status 1;
#   - a worker dies later: it is reported (name, address, exit status) and everything
#     else keeps serving; with no worker left /process answers 503 no_workers;
#   - the API dies: the workers are stopped, the reason is printed, exit status 1;
#   - Ctrl-C (SIGINT), SIGTERM or SIGHUP: every process drains and stops, then this
#     script dies of the same signal (the shell sees 130 for Ctrl-C, as from make).
set -uo pipefail

if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
  echo "run.sh: needs bash 5.1 or newer (this is bash $BASH_VERSION)" >&2
  exit 2
fi

BIN=${BIN:-bin}
WORKERS=${WORKERS:-2}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@localhost:5672/}
BIND=${BIND:-127.0.0.1}
API_PORT=${API_PORT:-8000}
WORKER_PORT=${WORKER_PORT:-8001}
START_TIMEOUT=${START_TIMEOUT:-30}
STOP_TIMEOUT=${STOP_TIMEOUT:-45}
for v in WORKERS API_PORT WORKER_PORT START_TIMEOUT STOP_TIMEOUT; do
  if [[ ! ${!v} =~ ^[0-9]+$ ]]; then
    echo "run.sh: $v must be a whole number, not \"${!v}\"" >&2
    exit 2
  fi
done
for b in api worker; do
  if [[ ! -x $BIN/$b ]]; then
    echo "run.sh: $BIN/$b is missing: build it with make build (make run does)" >&2
    exit 2
  fi
done

# hostport HOST PORT: HOST:PORT, with brackets around an IPv6 address.
hostport() {
  if [[ $1 == *:* && $1 != \[* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi
}
# probe ADDR: the host:port to reach a listener on ADDR from this machine (a wildcard
# address is reached on 127.0.0.1).
probe() {
  local host=${1%:*} port=${1##*:}
  host=${host#[}
  host=${host%]}
  case $host in "" | 0.0.0.0 | :: | "*") host=127.0.0.1 ;; esac
  hostport "$host" "$port"
}
API_ADDR=${API_ADDR:-$(hostport "$BIND" "$API_PORT")}
worker_addr() { hostport "$BIND" $((WORKER_PORT + $1)); }

# http_get HOST:PORT PATH: sets code and body (code 000 when nothing answers). curl if
# there is one, else bash's /dev/tcp.
http_get() {
  local out
  code=000 body=""
  if command -v curl >/dev/null; then
    out=$(curl -s -m 2 -w '\n%{http_code}' "http://$1$2" 2>/dev/null)
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    [[ $code =~ ^[0-9]{3}$ ]] || code=000
    return
  fi
  local host=${1%:*} port=${1##*:}
  host=${host#[}
  host=${host%]}
  out=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$3" >&3
    cat <&3' "$host" "$port" "$2" "$1" 2>/dev/null) || return 0
  [[ $out =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]] && code=${BASH_REMATCH[1]}
  body=${out#*$'\r\n\r\n'}
}

# in_use HOST:PORT: something accepts connections there.
in_use() {
  local host=${1%:*} port=${1##*:}
  host=${host#[}
  host=${host%]}
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# status_text STATUS: "status 1", "status 137 (SIGKILL)".
status_text() {
  if (($1 > 128)); then
    echo "status $1 (SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo "?"))"
  else
    echo "status $1"
  fi
}

declare -A NAME ADDR LOG RELAY
live=()      # pids of the API and the workers still running
api_pid=""
logdir=""
stop_signal=""

forget() {
  local p keep=()
  for p in "${live[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  live=("${keep[@]}")
}

# start NAME ADDR [VAR=VALUE...] BINARY: start BINARY listening on ADDR, its output on
# the terminal and in $logdir/NAME.log (tee ignores the terminal's signals, so it
# relays the drain's last lines).
start() {
  local name=$1 addr=$2 log=$logdir/$1.log out relay pid
  shift 2
  exec {out}> >(trap '' INT TERM HUP; exec tee -a "$log")
  relay=$!
  env HTTP_ADDR="$addr" "$@" >&"$out" 2>&1 {out}>&- &
  pid=$!
  exec {out}>&-
  NAME[$pid]=$name ADDR[$pid]=$addr LOG[$pid]=$log RELAY[$pid]=$relay
  live+=("$pid")
}

# last_lines PID: the last log lines of a process; of an exited one once tee has
# written them all (it exits when the process's output closes).
last_lines() {
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$1" 2>/dev/null && break
    kill -0 "${RELAY[$1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -s ${LOG[$1]} ]]; then
    tail -n "${2:-15}" "${LOG[$1]}" | sed 's/^/    | /'
  else
    echo "    (none)"
  fi
}

# stop_all: SIGTERM to every process still running, wait for them to drain (at most
# STOP_TIMEOUT seconds, then SIGKILL); report any that did not stop cleanly.
stop_all() {
  local pid st deadline=$((SECONDS + STOP_TIMEOUT))
  ((${#live[@]})) || return 0
  echo "run.sh: stopping ${#live[@]} process(es) (draining, at most ${STOP_TIMEOUT}s)..." >&2
  kill -TERM "${live[@]}" 2>/dev/null
  while ((${#live[@]})); do
    for pid in "${live[@]}"; do
      kill -0 "$pid" 2>/dev/null && continue
      wait "$pid" 2>/dev/null
      st=$?
      forget "$pid"
      # 0, or the signal itself when it came before the process had set up its handler.
      case $st in 0 | 130 | 143) ;; *) echo "run.sh: ${NAME[$pid]} exited with $(status_text $st) while stopping" >&2 ;; esac
    done
    ((${#live[@]})) || break
    if ((SECONDS >= deadline)); then
      for pid in "${live[@]}"; do echo "run.sh: ${NAME[$pid]} still running after ${STOP_TIMEOUT}s: SIGKILL" >&2; done
      kill -KILL "${live[@]}" 2>/dev/null
      wait "${live[@]}" 2>/dev/null
      live=()
      break
    fi
    sleep 0.1
  done
}

cleanup() {
  stop_all
  [[ -z $logdir ]] || rm -rf "$logdir"
}
trap cleanup EXIT
trap 'stop_signal=${stop_signal:-INT}' INT
trap 'stop_signal=${stop_signal:-TERM}' TERM
trap 'stop_signal=${stop_signal:-HUP}' HUP

# on_signal: drain everything, then die of the signal that asked for it.
on_signal() {
  echo "run.sh: SIG$stop_signal received" >&2
  cleanup
  trap - EXIT INT TERM HUP
  kill -"$stop_signal" $$
}

# start_failed PID WHAT: the process did not start; say why, stop the rest, exit 1.
start_failed() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || forget "$pid" # one still running is stopped with the rest
  {
    echo "run.sh: ${NAME[$pid]} (on ${ADDR[$pid]}) $2. Its last log lines:"
    last_lines "$pid"
    echo "run.sh: warren did not start."
  } >&2
  exit 1
}

# Every port must be free before anything starts: a port some other server answers on
# would otherwise pass the /health check below.
addrs=("$API_ADDR")
for ((i = 0; i < WORKERS; i++)); do addrs+=("$(worker_addr $i)"); done
for a in "${addrs[@]}"; do
  if in_use "$(probe "$a")"; then
    who=""
    command -v ss >/dev/null && who=$(ss -Hltnp "sport = :${a##*:}" 2>/dev/null | head -3)
    {
      echo "run.sh: $(probe "$a") is already in use: another process listens there${who:+:}"
      [[ -z $who ]] || echo "$who" | sed 's/^/    /'
      echo "run.sh: stop it, or move the API with API_PORT (or API_ADDR) and the workers with WORKER_PORT."
      echo "run.sh: warren did not start."
    } >&2
    exit 1
  fi
done

logdir=$(mktemp -d "${TMPDIR:-/tmp}/warren-run.XXXXXX")

# Beyond loopback the API does not start without authentication (docs/security.md).
# Unless API_KEYS_FILE, OIDC_ISSUER or AUTH says otherwise, this run makes an admin key
# of its own (`api keygen`), keeps its hash in the log directory and prints the key.
run_key=""
api_host=${API_ADDR%:*}
api_host=${api_host#[}
api_host=${api_host%]}
case $api_host in
  127.* | ::1 | localhost) ;;
  *)
    if [[ -z ${API_KEYS_FILE:-} && -z ${OIDC_ISSUER:-} && -z ${AUTH:-} ]]; then
      keygen_out=$("$BIN/api" keygen --name make-run --admin) || {
        echo "run.sh: $BIN/api keygen failed" >&2
        exit 1
      }
      run_key=$(sed -nE 's/^#[[:space:]]+(wrn_[A-Za-z0-9_-]+)$/\1/p' <<<"$keygen_out")
      { echo "keys:"; grep -v '^#' <<<"$keygen_out"; } >"$logdir/api-keys.yaml"
      export API_KEYS_FILE=$logdir/api-keys.yaml
    fi
    ;;
esac
start api "$API_ADDR" "$BIN/api"
api_pid=${live[0]}
for ((i = 0; i < WORKERS; i++)); do
  start "worker-$i" "$(worker_addr $i)" WORKER_ID="worker-$i" "$BIN/worker"
done

# Started means: every process answers GET /health (it listens) within START_TIMEOUT.
pending=("${live[@]}")
deadline=$((SECONDS + START_TIMEOUT))
while ((${#pending[@]})); do
  [[ -z $stop_signal ]] || on_signal
  next=()
  for pid in "${pending[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      start_failed "$pid" "exited with $(status_text $?) while starting"
    fi
    http_get "$(probe "${ADDR[$pid]}")" /health
    [[ $code == 200 ]] || next+=("$pid")
  done
  pending=("${next[@]}")
  ((${#pending[@]})) || break
  if ((SECONDS >= deadline)); then
    start_failed "${pending[0]}" "did not answer GET /health within ${START_TIMEOUT}s"
  fi
  sleep 0.1
done

# Prometheus file_sd targets for deployments/prometheus/prometheus-local.yml, which
# reads .run/prometheus-targets.json (PROMETHEUS_TARGETS writes it elsewhere). Each
# group's __meta_warren_role picks its scrape jobs. RabbitMQ's prometheus plugin is
# taken to be on AMQP_URL's host, port 15692, unless RABBITMQ_PROMETHEUS says otherwise.
root=$(cd "$(dirname "$0")/.." && pwd)
targets=${PROMETHEUS_TARGETS:-$root/.run/prometheus-targets.json}
api=$(probe "$API_ADDR")
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
  worker_targets+="${worker_targets:+, }\"$(probe "$(worker_addr $i)")\""
done
mkdir -p "$(dirname "$targets")"
cat >"$targets.tmp" <<JSON
[
  {"targets": ["$api"], "labels": {"__meta_warren_role": "api"}},
  {"targets": [$worker_targets], "labels": {"__meta_warren_role": "worker"}},
  {"targets": ["$rabbit"], "labels": {"__meta_warren_role": "rabbitmq"}}
]
JSON
mv "$targets.tmp" "$targets"

# Ready means: the API is connected and sees every worker consuming. Not reaching it
# is not a start failure (the broker may come later; both sides reconnect), but the
# banner says so.
ready=""
deadline=$((SECONDS + 15))
while :; do
  [[ -z $stop_signal ]] || on_signal
  for pid in "${live[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      start_failed "$pid" "exited with $(status_text $?) while starting"
    fi
  done
  http_get "$api" /ready
  if [[ $code == 200 && $body =~ \"broker\":\"up\" && $body =~ \"workers\":([0-9]+) ]] && ((BASH_REMATCH[1] >= WORKERS)); then
    ready=yes
    break
  fi
  ((SECONDS < deadline)) || break
  sleep 0.2
done

amqp_shown=$(sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$AMQP_URL")
if ((WORKERS == 0)); then
  workers_line="no worker started (WORKERS=0): POST /process answers 503 no_workers until a worker
  consumes the queue; start one with: HTTP_ADDR=$(worker_addr 0) WORKER_ID=worker-0 $BIN/worker"
elif ((WORKERS == 1)); then
  workers_line="1 worker: worker-0 on http://$(probe "$(worker_addr 0)")"
else
  workers_line="$WORKERS workers: worker-0..worker-$((WORKERS - 1)) on $(probe "$(worker_addr 0)")..$((WORKER_PORT + WORKERS - 1))"
fi
if [[ -n $ready ]]; then
  state="ready"
else
  state="but NOT ready after 15s: GET /ready answers $code ${body%%$'\n'*}
  Is RabbitMQ running at $amqp_shown? The processes keep reconnecting;
  meanwhile POST /process answers 503."
fi
bind_note="listening on $BIND only; BIND=0.0.0.0 make run listens on every interface"
case $BIND in 0.0.0.0 | :: | "") bind_note="listening on every interface (BIND=$BIND)" ;; esac
auth_h=""
if [[ -n $run_key ]]; then
  bind_note="$bind_note
  API key of this run (admin; beyond loopback the API needs one): $run_key"
  auth_h=" -H 'Authorization: Bearer $run_key'"
fi
cat <<MSG
warren is running, $state
  API on http://$api    docs: http://$api/docs
  $workers_line
  $bind_note
  try:
    curl -s $api/ready
    curl -s$auth_h -X POST $api/process -d '{"data":"cat image data"}'
  metrics: /metrics on every port above; Prometheus file_sd targets: $targets
    prometheus --config.file=deployments/prometheus/prometheus-local.yml --storage.tsdb.path=.run/prometheus
  Ctrl-C drains and stops everything. A worker that dies is reported and the rest keep
  serving; if the API dies, everything stops.
MSG

# Serve until a signal, or until the API dies.
while ((${#live[@]})); do
  [[ -z $stop_signal ]] || on_signal
  dead=""
  wait -n -p dead "${live[@]}" 2>/dev/null
  st=$?
  if [[ -z ${dead:-} ]]; then
    ((st > 128)) && continue # a signal: the loop's first line handles it
    echo "run.sh: lost track of the processes (wait: $(status_text $st))" >&2
    exit 1
  fi
  forget "$dead"
  [[ -z $stop_signal ]] || on_signal
  if [[ $dead == "$api_pid" ]]; then
    {
      echo "run.sh: the API (on $api) exited with $(status_text $st). Its last log lines:"
      last_lines "$dead"
      echo "run.sh: without the API nothing is served: stopping the workers."
    } >&2
    exit 1
  fi
  left=$((${#live[@]} - 1))
  waddr=$(probe "${ADDR[$dead]}")
  echo "run.sh: ${NAME[$dead]} (on $waddr) exited with $(status_text $st); $left of $WORKERS worker(s) left, the API keeps serving" >&2
  if ((left == 0)); then
    echo "run.sh: no worker is running: POST /process answers 503 no_workers until one is" >&2
  fi
  echo "run.sh: start it again with: HTTP_ADDR=${ADDR[$dead]} WORKER_ID=${NAME[$dead]} $BIN/worker (same AMQP_URL)" >&2
done
