"""The data browser's search documents are built after an import commits, by a task (and by beat), not as the
import writes its rows: search finds an imported text only once they are built, and the pairs page says how
many are still pending meanwhile. Migration 0008 builds those of the rows stored before it."""

from __future__ import annotations

import io
import logging

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError

from annotate.models import Membership, Prompt, Response
from annotate.selectors_pair_pages import pair_page
from annotate.services import search_documents
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import items_import
from annotate.services.search_documents import search_documents_fill, search_documents_pending
from annotate.tasks import search_documents_fill_task
from palate.celery import app
from tests.annotate.import_files import jsonl
from tests.factories import MembershipFactory, PairFactory, ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


def _import(project, *rows) -> None:
    items_import(
        project=project, stream=io.BytesIO(jsonl(*rows)), filename="items.jsonl", options=ImportOptions()
    )


def _row(number: int, word: str) -> dict:
    return {
        "id": f"p{number}",
        "prompt": f"Question {number} about {word}?",
        "responses": [
            {"id": "a", "content": f"An answer on {word}."},
            {"id": "b", "content": "Another answer."},
        ],
    }


def _found(project, q: str) -> list[str]:
    return [pair.prompt.external_id for pair in pair_page(project=project, filters={}, query=q).rows]


@pytest.fixture
def eager_celery():
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def test_an_imported_text_is_found_only_once_its_documents_are_built(django_capture_on_commit_callbacks):
    project = ProjectFactory()
    with django_capture_on_commit_callbacks(execute=False):
        _import(project, _row(1, "aardvarks"), _row(2, "zebras"))

    assert Prompt.objects.filter(project=project, search_document__isnull=False).count() == 0
    assert _found(project, "aardvark") == []
    assert search_documents_pending(project=project) == 2 + 4

    assert search_documents_fill(project_id=project.pk) == 6

    assert _found(project, "aardvark") == ["p1"]
    assert _found(project, "zebra") == ["p2"]
    assert search_documents_pending(project=project) == 0
    assert search_documents_fill(project_id=project.pk) == 0  # nothing left to build


def test_an_import_queues_the_building_of_its_documents_after_it_commits(
    eager_celery, django_capture_on_commit_callbacks
):
    project = ProjectFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _import(project, _row(1, "aardvarks"))
        assert search_documents_pending(project=project) == 3

    assert len(callbacks) == 1  # nothing is sent before the commit
    callbacks[0]()  # the commit: the task runs (eagerly here)
    assert search_documents_pending(project=project) == 0
    assert _found(project, "aardvark") == ["p1"]


def test_an_import_with_nothing_new_queues_nothing(django_capture_on_commit_callbacks):
    project = ProjectFactory()
    _import(project, _row(1, "aardvarks"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _import(project, _row(1, "aardvarks"))  # the same rows again: all existing
    assert callbacks == []


def test_an_import_succeeds_while_the_broker_is_down_and_beat_catches_up(
    monkeypatch, caplog, eager_celery, django_capture_on_commit_callbacks
):
    def unreachable(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    project = ProjectFactory()
    monkeypatch.setattr(search_documents_fill_task, "delay", unreachable)
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        _import(project, _row(1, "aardvarks"))

    assert Prompt.objects.filter(project=project).count() == 1  # imported all the same
    assert f"search documents of project {project.pk} not queued" in caplog.text
    assert search_documents_pending(project=project) == 3
    monkeypatch.undo()

    beat = settings.CELERY_BEAT_SCHEDULE["search-documents-fill"]
    app.tasks[beat["task"]].apply()  # what beat sends: every project's pending documents
    assert search_documents_pending(project=project) == 0


def test_the_fill_works_in_batches_and_may_keep_to_one_project():
    mine, other = ProjectFactory(), ProjectFactory()
    for project in (mine, other):
        for _ in range(3):
            PairFactory(prompt=PromptFactory(project=project))

    assert search_documents_fill(project_id=mine.pk, batch=2) == 3 + 6
    assert search_documents_pending(project=mine) == 0
    assert search_documents_pending(project=other) == 9
    assert search_documents_fill(batch=4) == 9
    assert Response.objects.filter(search_document__isnull=True).count() == 0


def test_the_pairs_page_says_how_many_texts_are_still_being_indexed_while_searching(monkeypatch):
    project = ProjectFactory(slug="pending")
    lead = UserFactory()
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    PairFactory(prompt=PromptFactory(project=project))  # a prompt and two responses
    client = Client()
    client.force_login(lead)
    url = reverse("project-pairs", args=["pending"])

    searched = client.get(url, {"q": "answer"}).content.decode()
    assert (
        "Search covers what was indexed; 3 items (prompts and responses) are still being indexed" in searched
    )
    assert "still being indexed" not in client.get(url).content.decode()  # no search, no notice (no count)

    monkeypatch.setattr(search_documents, "PENDING_COUNT_LIMIT", 2)
    monkeypatch.setattr("annotate.views.pairs.PENDING_COUNT_LIMIT", 2)
    # Counted up to the limit per table (the prompt, two of the responses): no longer an exact figure.
    assert "at least 3 items" in client.get(url, {"q": "answer"}).content.decode()

    search_documents_fill(project_id=project.pk)
    assert "still being indexed" not in client.get(url, {"q": "answer"}).content.decode()


@pytest.fixture
def before_search_documents(transactional_db):
    """The database as it was before migration 0008; fully migrated again afterwards."""
    executor = MigrationExecutor(connection)
    executor.migrate([("annotate", "0007_flags_and_adjudications")])
    yield executor.loader.project_state([("annotate", "0007_flags_and_adjudications")]).apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_migration_builds_the_documents_of_stored_rows(before_search_documents):
    old = before_search_documents
    project = old.get_model("annotate", "Project").objects.create(name="p", slug="p")
    prompt = old.get_model("annotate", "Prompt").objects.create(
        project=project, external_id="p1", content="Stored before the documents", fingerprint="x"
    )
    old.get_model("annotate", "Response").objects.create(
        prompt=prompt, external_id="r1", content="Kangaroos everywhere", fingerprint="y"
    )

    executor = MigrationExecutor(connection)
    executor.migrate([("annotate", "0008_content_search")])

    with connection.cursor() as cursor:
        cursor.execute("SELECT search_document::text FROM annotate_response WHERE external_id = 'r1'")
        assert cursor.fetchone() == ("'everywher':2 'kangaroo':1",)
        cursor.execute("SELECT count(*) FROM annotate_prompt WHERE search_document IS NULL")
        assert cursor.fetchone() == (0,)
