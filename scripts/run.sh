#!/usr/bin/env bash
# One command: install, migrate, load the demo dataset, start worker + web.
#   ./scripts/run.sh            -> http://127.0.0.1:8000/
# With no environment set this uses SQLite and a filesystem broker in ./var;
# set DATABASE_URL / CELERY_BROKER_URL to use PostgreSQL / Redis instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh requirements.txt

PY=.venv/bin/python
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/var/numba-cache}"

$PY manage.py migrate --noinput
# The demo's first run is queued now and trained by the worker started below,
# so the map is ready a minute or two after the first start.
$PY manage.py seed_demo ${SEED_DEMO_ARGS---start-run}

LOG_DIR="${SIMLABEL_VAR_DIR:-var}/log"
mkdir -p "$LOG_DIR"
echo "==> starting Celery worker (queues default, ml); log: $LOG_DIR/worker.log"
$PY -m celery -A project worker -Q default,ml --concurrency 2 --loglevel INFO >"$LOG_DIR/worker.log" 2>&1 &
WORKER_PID=$!
$PY manage.py runserver "$HOST:$PORT" --noreload &
WEB_PID=$!
stop() {
    # Every command here may fail (a process already gone, no children left):
    # under `set -e` the first failure ended the trap and left the worker running.
    set +e
    trap - EXIT INT TERM
    kill "$WEB_PID" "$WORKER_PID" 2>/dev/null
    # Celery finishes its current task on TERM; do not wait on a long run forever.
    for _ in $(seq 1 15); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 1; done
    pkill -KILL -P "$WORKER_PID" 2>/dev/null
    kill -KILL "$WORKER_PID" 2>/dev/null
    wait 2>/dev/null
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
echo "==> simlabel on http://$HOST:$PORT/  (Ctrl+C stops web and worker)"
# Whichever stops first (or Ctrl+C) stops the other.
wait -n "$WEB_PID" "$WORKER_PID"
