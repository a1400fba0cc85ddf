#!/usr/bin/env bash
# The local stack on loopback: an S3 API server (moto), an MLflow tracking server (SQLite,
# artifacts proxied to the S3 server), a Prefect server (SQLite) and one process worker per
# work pool. Idempotent: what is running is left alone. Everything it keeps (databases, logs,
# pids and the env file to source) lies in $STARGAN_STACK_DIR. moto keeps its objects in
# memory, so each fresh start is an empty store and an empty registry.
#
#   bash infra/local/stack-up.sh && source .stack/env
set -euo pipefail

cd "$(dirname "$0")/../.."
stack=${STARGAN_STACK_DIR:-.stack}
mkdir -p "$stack/logs" "$stack/pids"
stack=$(cd "$stack" && pwd)
bin=${STARGAN_BIN:-.venv/bin}
s3_port=${STARGAN_S3_PORT:-9000}
mlflow_port=${STARGAN_MLFLOW_PORT:-5000}
prefect_port=${STARGAN_PREFECT_PORT:-4200}

# The environment of every service, worker and user shell. The keys are for the local S3
# server only, which accepts any.
cat > "$stack/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=local-stack
export AWS_SECRET_ACCESS_KEY=local-stack
export AWS_DEFAULT_REGION=us-east-1
export STARGAN_STORAGE_URL=s3://stargan
export MLFLOW_TRACKING_URI=http://127.0.0.1:$mlflow_port
export PREFECT_API_URL=http://127.0.0.1:$prefect_port/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=1
ENV
# shellcheck source=/dev/null
source "$stack/env"

# A service runs while its process group (setsid: group id = the pid written) does.
running() { [ -f "$stack/pids/$1" ] && kill -0 -- "-$(cat "$stack/pids/$1")" 2>/dev/null; }

start() {  # start NAME PORT COMMAND...: in its own process group, logging to logs/NAME.log
  local name=$1 port=$2; shift 2
  if running "$name"; then echo "$name: running"; return 1; fi
  if [ "$port" != - ]; then
    local rc=0
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" || rc=$?
    if [ "$rc" != 7 ]; then  # 7: nothing listens there
      echo "port $port, wanted by $name, is taken by another program: stop it, or choose" \
        "another port (STARGAN_S3_PORT, STARGAN_MLFLOW_PORT, STARGAN_PREFECT_PORT)" >&2
      exit 1
    fi
  fi
  # Each start appends to the log, under a line saying when, so earlier runs' logs stay.
  echo "=== $name started $(date -u +%Y-%m-%dT%H:%M:%SZ) ===" >> "$stack/logs/$name.log"
  # A script starts background commands with SIGINT ignored, and a Prefect worker answers
  # SIGTERM by sending itself SIGINT: SIGINT's default comes back first, so that it stops.
  setsid "$bin/python" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' "$@" >> "$stack/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$stack/pids/$name"
  echo "$name: started (log: $stack/logs/$name.log)"
}

wait_for() {  # wait_for NAME CHECK...: until the check passes while NAME runs, or fail
  local name=$1; shift
  for _ in $(seq 1 240); do
    if ! running "$name"; then break; fi
    if "$@" > /dev/null 2>&1; then return; fi
    sleep 0.5
  done
  echo "$name did not become healthy ($*); the end of its log:" >&2
  tail -n 30 "$stack/logs/$name.log" >&2
  exit 1
}

if start s3 "$s3_port" "$bin/moto_server" -H 127.0.0.1 -p "$s3_port"; then
  # moto keeps objects in memory: a fresh S3 server is empty, so the registry, whose
  # artifacts it held, starts empty too.
  running mlflow || rm -f "$stack/mlflow.db"
fi
wait_for s3 curl -sf "$AWS_ENDPOINT_URL/moto-api/data.json"
for bucket in stargan mlflow; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$AWS_ENDPOINT_URL/$bucket")
  case $code in 200|409) ;; *) echo "cannot create bucket $bucket (HTTP $code)" >&2; exit 1;; esac
done

# MLflow's server-side jobs (GenAI scorers, online scoring) are eight more processes of
# ~250 MB each that nothing here uses.
start mlflow "$mlflow_port" env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$bin/mlflow" server --host 127.0.0.1 --port "$mlflow_port" \
  --workers 1 --backend-store-uri "sqlite:///$stack/mlflow.db" \
  --artifacts-destination s3://mlflow/artifacts || true
start prefect "$prefect_port" env PREFECT_HOME="$stack/prefect" "$bin/prefect" server start \
  --host 127.0.0.1 --port "$prefect_port" --analytics-off || true
wait_for mlflow curl -sf "$MLFLOW_TRACKING_URI/health"
wait_for prefect curl -sf "$PREFECT_API_URL/health"

for pool in cpu-process gpu-process; do
  if ! "$bin/prefect" work-pool inspect "$pool" > /dev/null 2>&1; then
    "$bin/prefect" work-pool create "$pool" --type process > /dev/null
    echo "work pool $pool: created"
  fi
  # One flow run at a time on the GPU pool: a machine's GPU is shared by its runs.
  limit=$([ "$pool" = gpu-process ] && echo 1 || echo 4)
  start "worker-$pool" - "$bin/prefect" worker start --pool "$pool" --type process \
    --name "local-$pool" --limit "$limit" || true
done
for pool in cpu-process gpu-process; do  # a pool is READY once its worker has reported
  wait_for "worker-$pool" sh -c \
    "curl -sf '$PREFECT_API_URL/work_pools/$pool' | grep -q '\"status\":\"READY\"'"
done

echo "stack up. In your shell: source $stack/env"
echo "  Prefect UI  http://127.0.0.1:$prefect_port    MLflow UI  $MLFLOW_TRACKING_URI"
echo "  S3 API      $AWS_ENDPOINT_URL (buckets stargan, mlflow)"
