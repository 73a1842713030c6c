#!/usr/bin/env bash
# Installs and starts the whole system on one machine: web (gunicorn), Celery worker and Celery beat.
# With DATABASE_URL unset it first starts an embedded PostgreSQL under var/ (palate/embedded_db.py), and
# stops it after the others; the broker is the filesystem under var/. See README for the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements.txt

export DJANGO_SETTINGS_MODULE=palate.settings
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"

pids=()
embedded_db=""
any_running() {
  local pid
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then return 0; fi
  done
  return 1
}
# After $1 tenths of a second, sends signal $2 to whichever of web, worker and beat still runs.
signal_after() {
  local tenths=$1 signal=$2 pid
  for _ in $(seq "$tenths"); do
    any_running || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "==> process $pid still running: sending SIG$signal"
      if [ "$signal" = KILL ] && command -v pkill >/dev/null; then pkill -KILL -P "$pid" || true; fi
      kill -"$signal" "$pid" 2>/dev/null || true
    fi
  done
}
stop() {
  trap - INT TERM EXIT
  echo
  if [ ${#pids[@]} -gt 0 ]; then
    echo "==> stopping web, worker and beat"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # Celery's warm shutdown waits for the tasks under way (a training run: up to its time limit); Ctrl-C's
    # SIGINT reaches the pool's processes too, a SIGTERM from a service manager or docker stop does not. So
    # a cold shutdown (SIGQUIT) follows after 3 s, and SIGKILL (with the pool's processes) 2 s later. A task
    # cut short is handled as after any lost worker (acks_late, the jobs' reaper).
    signal_after 30 QUIT
    signal_after 20 KILL
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ -n "$embedded_db" ]; then
    echo "==> stopping PostgreSQL"
    python -m palate.embedded_db stop || true
  fi
  echo "==> stopped"
}
# Ctrl-C is the normal way to stop: exit 0 so that make does not report an error.
trap 'stop; exit 0' INT TERM
trap stop EXIT

if [ -z "${DATABASE_URL:-}" ]; then
  embedded_db=yes
  echo "==> starting PostgreSQL (embedded, data in ${PALATE_VAR_DIR:-var}/postgres)"
  python -m palate.embedded_db start
fi
python manage.py migrate --noinput -v 0
python manage.py collectstatic --noinput -v 0
python manage.py seed_demo

gunicorn palate.wsgi --bind "$HOST:$PORT" --workers 2 --threads 4 --access-logfile - --log-level warning &
pids+=($!)
celery -A palate worker -Q default,gpu,generate --concurrency 2 --loglevel WARNING &
pids+=($!)
celery -A palate beat --loglevel WARNING &
pids+=($!)

sleep 2
cat <<BANNER

  Palate is running at http://$HOST:$PORT/

  Demo logins (password: palate-demo)
    lead       lead of the demo project: import, members, settings
    engineer   engineer: data, exports and training
    alice      annotator (careful)
    bob        annotator (noisy in the simulated votes)
    carol      annotator (position-biased in the simulated votes)
  Site admin: python manage.py createsuperuser (in .venv)

  Ctrl-C (or a SIGTERM) stops everything.

BANNER
# Any of the three exiting stops the others.
wait -n "${pids[@]}"
