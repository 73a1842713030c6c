"""Cost of authenticating one API request with a user token (``Authorization: Token …``), which the
annotators' next and submit calls pay on every request: the authentication class is called directly on
a built request, 5,000 times, three rounds; the table gives CPU (this process) and wall time per request,
and the database statements each request makes.

    .venv/bin/python bench/token_auth.py
    .venv/bin/python bench/token_auth.py --requests 20000

Compares the class in use (accounts.authentication.TokenAuthentication: token and user in one
hand-written statement) with django-rest-knox's own class on the same token. Uses its own database
(default postgres://postgres@127.0.0.1:5432/palate_bench_auth, created and migrated when missing) with
DEBUG off, as in production.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import prepare_database  # noqa: E402 (after the path is set)

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench_auth"
CLASSES = {
    "palate (one statement)": "accounts.authentication.TokenAuthentication",
    "knox": "knox.auth.TokenAuthentication",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)
    os.environ["DEBUG"] = "False"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    prepare_database()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext
    from django.utils.module_loading import import_string
    from rest_framework.request import Request

    from accounts.services import user_token_create, user_tokens_revoke_all

    user, _ = get_user_model().objects.get_or_create(username="bench-token-auth")
    user_tokens_revoke_all(user=user)
    _, secret = user_token_create(user=user)
    factory = RequestFactory()

    def request() -> Request:
        return Request(factory.get("/api/projects/", HTTP_AUTHORIZATION=f"Token {secret}"))

    print(f"{arguments.requests:,} requests × {arguments.rounds} rounds, median round")
    print(f"{'class':<24} {'CPU µs/request':>15} {'wall µs/request':>16} {'statements':>11}")
    building = []
    for _ in range(arguments.rounds):
        started = time.process_time()
        for _ in range(arguments.requests):
            request()
        building.append((time.process_time() - started) / arguments.requests * 1e6)
    print(f"{'(building the request)':<24} {statistics.median(building):>15.1f} {'':>16} {'':>11}")
    for label, path in CLASSES.items():
        authentication = import_string(path)()
        for _ in range(500):
            authentication.authenticate(request())
        cpu, wall = [], []
        for _ in range(arguments.rounds):
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            for _ in range(arguments.requests):
                authentication.authenticate(request())
            cpu.append((time.process_time() - cpu_started) / arguments.requests * 1e6)
            wall.append((time.perf_counter() - wall_started) / arguments.requests * 1e6)
        with CaptureQueriesContext(connection) as queries:
            authenticated, _ = authentication.authenticate(request())
        assert authenticated.pk == user.pk
        print(
            f"{label:<24} {statistics.median(cpu):>15.1f} {statistics.median(wall):>16.1f} "
            f"{len(queries.captured_queries):>11}"
        )


if __name__ == "__main__":
    main()
