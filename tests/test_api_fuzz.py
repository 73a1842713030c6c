"""Fuzzing the whole API from its OpenAPI schema (schemathesis) against a live server, as every role.

Every operation of the schema drf-spectacular generates gets positive (schema-valid) and negative
(schema-invalid) requests as an annotator, a lead, an engineer, an outsider (a lead of another project), a
site admin, an anonymous caller and a project API token. Every answer must be no server error and
documented: its status code, its content type, its headers and its body's schema; and data the schema
calls invalid must be refused. Path parameters, a download's file, a judgment's ``assignment``, a username
and a password are drawn half the time from a seeded world (the demo project and its votes, an export with
files, training runs, a reward model, a scoring job, leases, tokens), so that requests get past "no such".

The server runs in this process and serves each test inside the test's transaction (it shares the test's
database connection, as Django's test client does), so that every test starts from the same world and a
run is reproducible. The jobs the API queues are sent on commit, which never comes: nothing trains or
exports in the background. Scoring waits for its answer, so a real worker serves the tiny reward model.

The number of cases is printed at the end of the run and recorded in a JUnit report (``api_fuzz_cases``);
FUZZ_EXAMPLES, FUZZ_SEED and FUZZ_COVERAGE make a longer run (docs/development.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.core.servers.basehttp import ThreadedWSGIServer
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections
from django.test import modify_settings, override_settings
from django.test.testcases import LiveServerThread
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import user_token_create
from annotate.models import Assignment, Export, ImportJob, Membership, PairFlag, Project
from annotate.services.adjudication import pair_adjudicate
from annotate.services.api_tokens import api_token_create
from annotate.services.demo import DEMO_PASSWORD, demo_seed, demo_votes_simulate
from annotate.services.exports import export_create, export_run
from generation.models import ModelAudit, System
from generation.services.jobs import generation_job_create
from rewardtrain.models import RewardModel, ScoringJob, TrainingRun
from rewardtrain.services.run_artifacts import run_model_upload
from rewardtrain.services.scoring import reward_model_score
from tests.factories import MembershipFactory, UserFactory
from tests.rewardtrain import conftest as rewardtrain_fixtures
from tests.workers import celery_worker, worker_environment

IDENTITIES = ("annotator", "lead", "engineer", "outsider", "admin", "anonymous", "project_token")
USERS = ("annotator", "lead", "engineer", "outsider", "admin")
# Knobs for a longer run by hand (docs/development.md): requests generated per operation and identity, the
# seed (the same seed, the same requests), and schemathesis' coverage phase (boundary values of every field).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("FUZZ_SEED", "17"))
COVERAGE = os.environ.get("FUZZ_COVERAGE", "") == "1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

SCHEMA = schemathesis.openapi.from_dict(
    SchemaGenerator().get_schema(request=None, public=True),
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"coverage": {"enabled": COVERAGE}, "stateful": {"enabled": False}},
        }
    ),
)


@dataclass
class FuzzWorld:
    """The seeded rows a parameter may name (by kind) and each identity's credentials."""

    project: Project
    users: dict[str, object]
    ids: dict[str, list] = field(default_factory=dict)
    tokens: dict[str, tuple[AuthToken, str]] = field(default_factory=dict)
    api_secret: str = ""
    url: str = ""
    storage: Path = Path()
    cases: int = 0

    def headers(self, identity: str) -> dict[str, str]:
        if identity == "anonymous":
            return {}
        if identity == "project_token":
            return {"Authorization": f"Bearer {self.api_secret}"}
        return {"Authorization": f"Token {self.tokens[identity][1]}"}


# Set by the ``fuzz_world`` fixture; the generation hooks below read it.
WORLD: list[FuzzWorld] = []


def _known_values(path: str, name: str) -> list:
    ids = WORLD[0].ids
    if name == "job_id":
        if path.startswith("/api/generation-jobs/"):
            return ids["generation_job"]
        return ids["scoring_job" if path.startswith("/api/scoring-jobs/") else "import_job"]
    if name == "token_id":
        return ids["user_token" if path.startswith("/api/auth/") else "api_token"]
    return ids.get(name.removesuffix("_id"), [])


def _definition(operation) -> dict:
    return SCHEMA.raw_schema["paths"][operation.path][operation.method.lower()]


def _allowed(value, schema: dict) -> bool:
    """Whether the schema allows the value: only a valid value is swapped for a real one, so that a negative
    case stays negative."""
    return Draft202012Validator(schema).is_valid(value)


def _real(original: dict, choices: dict[str, list], schemas: dict[str, dict]) -> st.SearchStrategy:
    """``original`` half the time; else with each value the schema allows swapped for one of ``choices``."""
    swappable = {
        name: st.sampled_from(choices[name])
        for name, value in original.items()
        if choices.get(name) and name in schemas and _allowed(value, schemas[name])
    }
    if not swappable:
        return st.just(original)
    drawn = {name: swappable.get(name, st.just(value)) for name, value in original.items()}
    return st.one_of(st.just(original), st.fixed_dictionaries(drawn))


def _parameter_schemas(operation, location: str) -> dict[str, dict]:
    return {
        parameter["name"]: parameter["schema"]
        for parameter in _definition(operation).get("parameters", [])
        if parameter["in"] == location
    }


@SCHEMA.hook
def flatmap_path_parameters(context, path_parameters):
    """The ids of real rows in place of generated ones."""
    if not path_parameters:
        return st.just(path_parameters)
    path = context.operation.path
    choices = {name: _known_values(path, name) for name in path_parameters}
    return _real(path_parameters, choices, _parameter_schemas(context.operation, "path"))


@SCHEMA.hook
def flatmap_query(context, query):
    """An export's real file names for a download's ``file``."""
    if not query:
        return st.just(query)
    return _real(query, {"file": WORLD[0].ids["export_file"]}, _parameter_schemas(context.operation, "query"))


@SCHEMA.hook
def flatmap_body(context, body):
    """A judgment on a real lease; a real user's name (a member to add, a login, with its password)."""
    if not isinstance(body, dict):
        return st.just(body)
    content = _definition(context.operation).get("requestBody", {}).get("content", {})
    reference = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    schemas = SCHEMA.raw_schema["components"]["schemas"].get(reference.rsplit("/", 1)[-1], {})
    choices = {
        "assignment": WORLD[0].ids["assignment"],
        "username": ["alice"],
        "password": [DEMO_PASSWORD],
        "system": WORLD[0].ids["system"],
    }
    return _real(body, choices, schemas.get("properties", {}))


def _seed(reward_model_path: str) -> FuzzWorld:
    """The demo project half voted on, with its lead, engineer and annotators; an outsider leading another
    project, a site admin, a user with no project; leases, a flagged and a settled pair, a finished and a
    queued export, runs, a reward model (the tiny one at ``reward_model_path``), a scoring job, an import job
    and a project API token."""
    project, _ = demo_seed()
    demo_votes_simulate(project=project, share=0.5)
    User = get_user_model()
    users = {
        "annotator": User.objects.get(username="alice"),
        "lead": User.objects.get(username="lead"),
        "engineer": User.objects.get(username="engineer"),
        "outsider": MembershipFactory(role=Membership.Role.LEAD).user,
        "admin": UserFactory(username="site-admin", is_staff=True, is_superuser=True),
    }
    UserFactory(username="newcomer")
    world = FuzzWorld(project=project, users=users)
    annotator = users["annotator"]
    expires_at = timezone.now() + timedelta(hours=1)
    leases = [
        Assignment.objects.create(project=project, pair=pair, annotator=annotator, expires_at=expires_at)
        for pair in project.pairs.exclude(judgments__annotator=annotator).order_by("id")[:3]
    ]
    export = export_create(
        project=project,
        policy={},
        formats=["jsonl", "jsonl.gz", "parquet", "hf"],
        created_by=users["lead"],
        enqueue=False,
    )
    export_run(export_id=export.pk)
    queued_export = export_create(
        project=project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )
    run = TrainingRun.objects.create(
        project=project, export=export, base_model="tiny", status=TrainingRun.Status.SUCCEEDED
    )
    stored, digest = run_model_upload(run_id=run.pk, local=Path(reward_model_path))
    model = RewardModel.objects.create(
        run=run, project=project, version=1, path=stored, content_hash=digest, is_active=True
    )
    queued_run = TrainingRun.objects.create(project=project, export=export, base_model="tiny")
    scoring_job = ScoringJob.objects.create(project=project, reward_model=model, total=3)
    import_job = ImportJob.objects.create(
        project=project, filename="old.jsonl", status=ImportJob.Status.SUCCEEDED
    )
    flagged, settled = project.pairs.order_by("id")[:2]
    flag = PairFlag.objects.create(
        pair=flagged, annotator=users["annotator"], category="broken", created_at=timezone.now()
    )
    pair_adjudicate(pair=settled, label="a", note="fuzz", decided_by=users["lead"])
    # A model endpoint nobody listens on (best-of-N sampling answers 503 at once), a queued generation job
    # and an audit.
    system = System.objects.create(
        project=project, name="fuzz endpoint", base_url="http://127.0.0.1:9/v1", model="m", max_retries=0
    )
    generation_job = generation_job_create(project=project, systems=[system], samples=1)
    audit = ModelAudit.objects.create(project=project, reward_model=model, system=system, n_values=[1, 2])
    api_token, world.api_secret = api_token_create(project=project, name="sampler", created_by=users["lead"])
    world.tokens = {identity: user_token_create(user=users[identity]) for identity in USERS}
    world.ids = {
        "project": [project.pk, users["outsider"].memberships.get().project_id],
        "username": ["alice", "bob", "engineer", "lead", "newcomer"],
        "assignment": [lease.pk for lease in leases],
        "pair": [flagged.pk, settled.pk],
        "flag": [flag.pk],
        "judgment": list(annotator.judgments.values_list("pk", flat=True)[:2]),
        "export": [export.pk, queued_export.pk],
        "export_file": sorted(Export.objects.get(pk=export.pk).files),
        "run": [run.pk, queued_run.pk],
        "model": [model.pk],
        "scoring_job": [scoring_job.pk],
        "import_job": [import_job.pk],
        "api_token": [api_token.pk],
        "system": [system.pk],
        "generation_job": [generation_job.pk],
        "audit": [audit.pk],
        "user_token": [token.token_key for token, _ in world.tokens.values()],  # as they were made
    }
    return world


class _SharedConnectionServer(ThreadedWSGIServer):
    def _close_connections(self) -> None:
        """The connection is the test's: it stays open, inside the test's transaction."""


class _SharedConnectionThread(LiveServerThread):
    server_class = _SharedConnectionServer


@contextmanager
def _live_server() -> Iterator[str]:
    """A live server in a thread whose requests use this thread's database connection, so that each test's
    transaction holds them (as Django's test client does; its requests must not close that connection
    either). Yields its URL."""
    shared = connections["default"]
    thread = _SharedConnectionThread(
        "localhost", static_handler=StaticFilesHandler, connections_override={"default": shared}
    )
    thread.daemon = True
    shared.inc_thread_sharing()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with modify_settings(ALLOWED_HOSTS={"append": "localhost"}):
            thread.start()
            thread.is_ready.wait()
            if thread.error:
                raise thread.error
            try:
                yield f"http://localhost:{thread.port}"
            finally:
                thread.terminate()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        shared.dec_thread_sharing()


# The tiny reward model the scoring worker serves (a session fixture of the training tests).
tiny_decoder = rewardtrain_fixtures.tiny_decoder
tiny_reward_model = rewardtrain_fixtures.tiny_reward_model


@pytest.fixture(scope="module")
def fuzz_world(
    record_testsuite_property,
    terminal_summary,
    django_db_setup,
    django_db_blocker,
    tmp_path_factory,
    tiny_reward_model,
):
    """The world, committed once for the module; a scoring worker; a live server whose requests use this
    thread's database connection. The database is emptied afterwards, and the number of cases reported."""
    storage = tmp_path_factory.mktemp("fuzz")
    module_settings = override_settings(
        MEDIA_ROOT=storage / "media",
        ARTIFACT_ROOT=storage / "artifacts",
        TRAINING_BASE_MODELS="tiny=/models/tiny",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # speed; never in production
        # The first request waits for the worker to load torch and the model.
        SCORING_TIMEOUT_SECONDS=60,
    )
    with django_db_blocker.unblock(), module_settings:
        try:
            with ExitStack() as stack:
                world = _seed(tiny_reward_model)
                world.storage = storage
                environment = worker_environment(
                    media_root=storage / "media", artifact_root=storage / "artifacts", base_models=""
                )
                # Scoring requests are the only tasks sent: the jobs the API queues wait for a commit that
                # never comes.
                stack.enter_context(celery_worker(environment, queues="gpu"))
                reward_model_score(
                    reward_model=RewardModel.objects.get(), prompt="warm up", responses=["a", "b"]
                )
                world.url = stack.enter_context(_live_server())
                WORLD[:] = [world]
                yield world
                record_testsuite_property("api_fuzz_cases", world.cases)
                # Under pytest-xdist each worker fuzzes its share of the operations and says so.
                worker = os.environ.get("PYTEST_XDIST_WORKER")
                terminal_summary.append(
                    f"API fuzzing{f' ({worker} share)' if worker else ''}: {world.cases} cases "
                    f"({len(IDENTITIES)} identities, up to {EXAMPLES} generated per operation and identity)"
                )
        finally:
            WORLD.clear()
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def _each_test_starts_from_the_world(fuzz_world, settings):
    """The suite gives each test empty storage folders: the world's files are the module's. Tokens made
    again during a test are rolled back with it."""
    settings.MEDIA_ROOT, settings.ARTIFACT_ROOT = (
        fuzz_world.storage / "media",
        fuzz_world.storage / "artifacts",
    )
    tokens = dict(fuzz_world.tokens)
    yield
    fuzz_world.tokens = tokens


def _restore(world: FuzzWorld, identity: str) -> None:
    """A user token the caller revoked with an earlier request of this test is made again, so that the test
    goes on as that identity."""
    token, _ = world.tokens.get(identity, (None, ""))
    if token is not None and not AuthToken.objects.filter(digest=token.digest).exists():
        world.tokens[identity] = user_token_create(user=world.users[identity])


@pytest.mark.django_db
@pytest.mark.celery_worker
@pytest.mark.parametrize("identity", IDENTITIES)
@SCHEMA.parametrize()
def test_every_operation_answers_as_documented(case, identity, fuzz_world):
    _restore(fuzz_world, identity)
    fuzz_world.cases += 1
    case.call_and_validate(base_url=fuzz_world.url, headers=fuzz_world.headers(identity), checks=CHECKS)
