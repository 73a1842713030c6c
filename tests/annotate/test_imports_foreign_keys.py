"""Who checks an import's foreign keys: the importer itself (its transaction runs with PostgreSQL's per-row
foreign-key triggers off, when the role may) or the database. Either way every stored row refers to rows
that exist, and concurrent deletions cannot leave orphans."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from annotate.models import Judgment, Pair, Project, Prompt, Response
from annotate.services import imports
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import ImportFailed, ImportResult, items_import
from tests.factories import ProjectFactory
from tests.threads import import_with_a_pause

pytestmark = pytest.mark.django_db


def candidates(prompts: range, responses: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "id": f"q{n}",
            "prompt": f"Question {n}?",
            "responses": [{"id": f"q{n}-r{k}", "content": f"Answer {k} to {n}."} for k in range(responses)],
        }
        for n in prompts
    ]


PREFERENCES = [{"prompt": f"Q{n}?", "chosen": f"Yes {n}.", "rejected": f"No {n}."} for n in range(3)]


def write(folder: Path, rows: list[dict[str, Any]], stem: str = "items") -> Path:
    path = folder / f"{stem}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_import(project: Project, path: Path, **options: Any) -> ImportResult:
    with path.open("rb") as stream:
        return items_import(
            project=project, stream=stream, filename=path.name, options=ImportOptions(**options)
        )


INTEGRITY_SQL = """
    SELECT
      (SELECT count(*) FROM annotate_prompt q
        WHERE NOT EXISTS (SELECT FROM annotate_project x WHERE x.id = q.project_id)),
      (SELECT count(*) FROM annotate_response r
        WHERE NOT EXISTS (SELECT FROM annotate_prompt q WHERE q.id = r.prompt_id)),
      (SELECT count(*) FROM annotate_pair p
        WHERE NOT EXISTS (SELECT FROM annotate_project x WHERE x.id = p.project_id)
           OR NOT EXISTS (SELECT FROM annotate_prompt q WHERE q.id = p.prompt_id)
           OR NOT EXISTS (SELECT FROM annotate_response r WHERE r.id = p.response_a_id)
           OR NOT EXISTS (SELECT FROM annotate_response r WHERE r.id = p.response_b_id)),
      (SELECT count(*) FROM annotate_pair p
        JOIN annotate_prompt q ON q.id = p.prompt_id
        JOIN annotate_response a ON a.id = p.response_a_id
        JOIN annotate_response b ON b.id = p.response_b_id
        WHERE q.project_id <> p.project_id OR a.prompt_id <> p.prompt_id OR b.prompt_id <> p.prompt_id),
      (SELECT count(*) FROM annotate_judgment j
        WHERE NOT EXISTS (SELECT FROM annotate_pair p WHERE p.id = j.pair_id))
"""


def integrity_problems() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(INTEGRITY_SQL)
        counts = cursor.fetchone()
    names = [
        "prompts without project",
        "responses without prompt",
        "pairs without parent",
        "pairs across prompts or projects",
        "judgments without pair",
    ]
    return {name: count for name, count in zip(names, counts, strict=True) if count}


def import_everything(project: Project, folder: Path) -> list[ImportResult]:
    """New prompts over several chunks, then a file that adds responses to stored prompts (new rows
    referring to stored ones), then preference rows with their labels as judgments."""
    grown = candidates(range(4), responses=4)
    return [
        run_import(project, write(folder, candidates(range(6)), "first")),
        run_import(project, write(folder, grown, "grown")),
        run_import(project, write(folder, PREFERENCES, "preferences"), label_as="judgment"),
    ]


def test_with_permission_the_importer_checks_its_foreign_keys_and_every_row_refers_to_its_own_parents(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    project = ProjectFactory()

    results = import_everything(project, tmp_path)

    assert [result.foreign_keys_checked_by for result in results] == ["importer"] * 3
    assert [result.pairs_created for result in results] == [18, 4 * 3, 3]
    assert results[1].responses_existing == 12 and results[2].judgments_created == 3
    assert Judgment.objects.filter(pair__project=project).count() == 3
    assert integrity_problems() == {}


@pytest.fixture
def role_without_trigger_permission():
    """The test's connection acts as a new role that may read and write the tables but not turn
    triggers off (until the test's transaction is rolled back, which also drops the role)."""
    name = f"palate_importer_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} NOSUPERUSER")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}")
        cursor.execute(f"SET ROLE {name}")
    return name


def test_without_permission_the_database_checks_each_row_and_the_rows_are_the_same(
    tmp_path, monkeypatch, role_without_trigger_permission
):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    project = ProjectFactory()

    results = import_everything(project, tmp_path)

    assert [result.foreign_keys_checked_by for result in results] == ["database"] * 3
    assert [result.pairs_created for result in results] == [18, 4 * 3, 3]
    assert integrity_problems() == {}


def test_a_role_granted_set_on_session_replication_role_checks_its_own_foreign_keys(
    tmp_path, role_without_trigger_permission
):
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        cursor.execute(
            f"GRANT SET ON PARAMETER session_replication_role TO {role_without_trigger_permission}"
        )
        cursor.execute(f"SET ROLE {role_without_trigger_permission}")

    result = run_import(ProjectFactory(), write(tmp_path, candidates(range(2))))

    assert (result.foreign_keys_checked_by, result.pairs_created) == ("importer", 6)
    assert integrity_problems() == {}


def replication_role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('session_replication_role')")
        return cursor.fetchone()[0]


def test_the_triggers_are_back_on_after_an_import_inside_a_callers_transaction(tmp_path):
    with transaction.atomic():
        run_import(ProjectFactory(), write(tmp_path, candidates(range(2))))
        assert replication_role() == "origin"
        with pytest.raises(ImportFailed):
            run_import(ProjectFactory(), write(tmp_path, [{"id": "x", "prompt": "?"}], "bad"))
        assert replication_role() == "origin"


def test_an_import_into_a_deleted_project_writes_nothing(tmp_path):
    project = ProjectFactory()
    Project.objects.filter(pk=project.pk).delete()

    with pytest.raises(ImportFailed, match="the project was deleted"):
        run_import(project, write(tmp_path, candidates(range(2))))

    assert Prompt.objects.count() == 0


# Concurrent deletions -----------------------------------------------------------------------------


def wait_for_a_lock_wait(timeout: float = 10.0) -> bool:
    """Whether some other session of the test database comes to wait on a lock within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


def import_deleting_meanwhile(
    project: Project, path: Path, delete
) -> tuple[ImportResult, BaseException | None]:
    """Imports ``path`` and, once the first chunk is written, runs ``delete`` in another connection; lets
    the import finish once ``delete`` waits on a lock (or has finished). Returns the import's result and
    what ``delete`` raised."""

    def delete_and_report():
        try:
            delete()
        except IntegrityError as error:
            return error
        return None

    result, refused, _ = import_with_a_pause(
        project, path, delete_and_report, release_when=lambda: wait_for_a_lock_wait(timeout=0.5)
    )
    return result, refused


@pytest.mark.django_db(transaction=True)
def test_a_project_deleted_during_an_import_is_refused_and_leaves_no_orphans(tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    project = ProjectFactory()

    result, refused = import_deleting_meanwhile(
        project,
        write(tmp_path, candidates(range(6))),
        lambda: Project.objects.filter(pk=project.pk).delete(),
    )

    assert result.foreign_keys_checked_by == "importer"
    assert isinstance(refused, IntegrityError)
    assert Pair.objects.filter(project=project).count() == 18
    assert integrity_problems() == {}


@pytest.mark.django_db(transaction=True)
def test_a_stored_prompt_deleted_during_a_reimport_is_refused_and_leaves_no_orphans(tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    project = ProjectFactory()
    run_import(project, write(tmp_path, candidates(range(1)), "first"))
    stored_prompt = Prompt.objects.get(project=project, external_id="q0")

    # The first chunk adds a response and pairs to the stored prompt, with its stored responses.
    result, refused = import_deleting_meanwhile(
        project,
        write(tmp_path, candidates(range(4), responses=4), "grown"),
        lambda: Prompt.objects.filter(pk=stored_prompt.pk).delete(),
    )

    assert (result.foreign_keys_checked_by, result.responses_existing) == ("importer", 3)
    assert isinstance(refused, IntegrityError)
    assert Pair.objects.filter(prompt=stored_prompt).count() == 6
    assert integrity_problems() == {}


def test_the_only_triggers_an_import_turns_off_are_foreign_key_checks():
    """Turning triggers off would also skip a user trigger, or the commit-time check of a deferrable
    unique constraint; a migration that adds one must revisit the importer's own checks."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.tgrelid::regclass::text, t.tgname FROM pg_trigger t
            LEFT JOIN pg_constraint c ON c.oid = t.tgconstraint
            WHERE t.tgrelid = ANY(%s::regclass[]) AND (c.contype IS DISTINCT FROM 'f')
            """,
            [[model._meta.db_table for model in (Prompt, Response, Pair, Judgment)]],
        )
        assert cursor.fetchall() == []
