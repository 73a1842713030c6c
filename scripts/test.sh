#!/usr/bin/env bash
# Installs the test dependencies and runs the whole suite on PostgreSQL and Redis (127.0.0.1 unless
# DATABASE_URL / CELERY_BROKER_URL say otherwise). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements-dev.txt

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/palate}"
# CELERY_BROKER_URL: when unset, each run takes a Redis database of its own on 127.0.0.1 (tests/environment.py).
# One pytest worker per core (pytest-xdist), at most 8: each has its own test database, Redis database and
# var/ folder (tests/environment.py). PYTEST_WORKERS=0 runs everything in one process.
exec python -m pytest -n "${PYTEST_WORKERS:-auto}" --maxprocesses 8 "$@"
