# Sourced by run.sh and test.sh: makes .venv and installs a requirements file into it, skipping pip
# when the file (and what it includes) has not changed since the last install.
ensure_venv() {
  local requirements="$1"
  local python="${PYTHON:-}"
  if [ -z "$python" ]; then
    for candidate in python3.11 python3 python; do
      if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        python="$candidate"; break
      fi
    done
  fi
  if [ -z "$python" ]; then
    echo "error: Palate needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($python --version)"
    "$python" -m venv .venv
  fi
  local stamp=".venv/.installed-$(basename "$requirements")"
  local digest
  digest=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
  # requirements-dev.txt includes requirements.txt: a .venv made by `make test` serves `make run` as it is.
  local dev_stamp=".venv/.installed-requirements-dev.txt"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ] && [ "$(cat "$dev_stamp" 2>/dev/null)" != "$digest" ]; then
    echo "==> installing $requirements (first time: a few minutes)"
    # Some machines' pip configuration names local mirrors that pip then warns about on every package:
    # keep pip's output in a log, show it without those lines, and stop when pip failed.
    local log=.venv/pip-install.log
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements" > "$log" 2>&1; then
      grep -v "^WARNING: Location" "$log" >&2
      echo "error: installing $requirements failed (full log: $log)" >&2
      exit 1
    fi
    grep -v "^WARNING: Location" "$log" || true
    echo "$digest" > "$stamp"
  fi
  export PATH="$PWD/.venv/bin:$PATH"
}
