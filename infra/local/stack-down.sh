#!/usr/bin/env bash
# Stop what stack-up.sh started (workers first, the S3 server last). Idempotent. The
# databases and logs stay in $STARGAN_STACK_DIR; moto's buckets live in memory and go.
set -uo pipefail

cd "$(dirname "$0")/../.."
stack=${STARGAN_STACK_DIR:-.stack}
for name in worker-gpu-process worker-cpu-process prefect mlflow s3; do
  pid_file="$stack/pids/$name"
  [ -f "$pid_file" ] || continue
  group=$(cat "$pid_file")  # stack-up.sh started each service as a process group leader
  # The whole group, even when its leader is gone: children (a server's workers) hold ports.
  if kill -TERM -- "-$group" 2>/dev/null; then
    for _ in $(seq 1 40); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$group" 2>/dev/null || true
    echo "$name: stopped"
  fi
  rm -f "$pid_file"
done
