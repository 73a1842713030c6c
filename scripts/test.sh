#!/usr/bin/env bash
# Installs the test dependencies and runs the whole suite on PostgreSQL and Redis (127.0.0.1 unless
# DATABASE_URL / CELERY_BROKER_URL say otherwise). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements-dev.txt

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/palate}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/14}"
exec python -m pytest "$@"
