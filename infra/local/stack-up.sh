#!/usr/bin/env bash
# The local stack on loopback: an S3 API server (moto), an MLflow tracking server (SQLite,
# artifacts proxied to the S3 server), a Prefect server (SQLite) and one process worker per
# work pool. Idempotent: what is running and healthy is left alone. Everything it keeps
# (databases, logs, pids and the env file to source) lies in $STARGAN_STACK_DIR.
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

running() { [ -f "$stack/pids/$1" ] && kill -0 "$(cat "$stack/pids/$1")" 2>/dev/null; }

start() {  # start NAME COMMAND...: in its own process group, logging to logs/NAME.log
  local name=$1; shift
  if running "$name"; then echo "$name: running"; return; fi
  setsid "$@" > "$stack/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$stack/pids/$name"
  echo "$name: started (log: $stack/logs/$name.log)"
}

wait_for() {  # wait_for NAME URL: until URL answers, or fail showing the log's end
  local name=$1 url=$2
  for _ in $(seq 1 240); do
    if curl -sf -o /dev/null "$url"; then return; fi
    if ! running "$name"; then break; fi
    sleep 0.5
  done
  echo "$name did not become healthy at $url; the end of its log:" >&2
  tail -n 30 "$stack/logs/$name.log" >&2
  exit 1
}

start s3 "$bin/moto_server" -H 127.0.0.1 -p "$s3_port"
wait_for s3 "$AWS_ENDPOINT_URL/moto-api/data.json"
for bucket in stargan mlflow; do  # moto keeps its buckets in memory: create them every time
  curl -sf -o /dev/null -X PUT "$AWS_ENDPOINT_URL/$bucket" || true
done

start mlflow "$bin/mlflow" server --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
  --backend-store-uri "sqlite:///$stack/mlflow.db" --artifacts-destination s3://mlflow/artifacts
start prefect env PREFECT_HOME="$stack/prefect" "$bin/prefect" server start \
  --host 127.0.0.1 --port "$prefect_port" --analytics-off
wait_for mlflow "$MLFLOW_TRACKING_URI/health"
wait_for prefect "$PREFECT_API_URL/health"

for pool in cpu-process gpu-process; do
  if ! "$bin/prefect" work-pool inspect "$pool" > /dev/null 2>&1; then
    "$bin/prefect" work-pool create "$pool" --type process > /dev/null
    echo "work pool $pool: created"
  fi
  start "worker-$pool" "$bin/prefect" worker start --pool "$pool" --type process \
    --name "local-$pool"
done

echo "stack up. In your shell: source $stack/env"
echo "  Prefect UI  http://127.0.0.1:$prefect_port    MLflow UI  $MLFLOW_TRACKING_URI"
echo "  S3 API      $AWS_ENDPOINT_URL (buckets stargan, mlflow)"
