"""Every failure of an import, of any kind, ends its job at once as failed with the true reason, and leaves
nothing behind: files a parser cannot take (nesting past any sane depth, a lone surrogate) and files past a
limit of the work they would cost (scaled down here by lowering the settings) included."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotate.models import ImportJob, Pair, Project, Prompt
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import import_job_create, import_job_run, items_import
from tests.annotate.import_files import candidates_row, jsonl
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

DEEP = 100_000
UNPARSABLE = {
    "deep.json": b"[" * DEEP + b"]" * DEEP,
    "deep_items.jsonl": b'{"prompt": "p", "responses": ' + b"[" * DEEP + b"]" * DEEP + b"}\n",
    "surrogate.jsonl": b'{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}\n',
    "surrogate.json": b'[{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}]',
    "deep_cell.csv": b'prompt,responses\np,"' + b"[" * 50_000 + b"]" * 50_000 + b'"\n',
    "surrogate_cell.csv": b'prompt,responses\np,"[""\\ud800"", ""b""]"\n',
}


def parquet(rows: int, text: str) -> bytes:
    buffer = io.BytesIO()
    table = pa.Table.from_pydict(
        {"prompt": [text] * rows, "response_a": ["a"] * rows, "response_b": ["b"] * rows}
    )
    pq.write_table(table, buffer)
    return buffer.getvalue()


OVER_A_LIMIT = [
    pytest.param(
        "whitespace.json.gz",
        gzip.compress(b"[" + b" " * 300_000 + b"]"),
        {"IMPORT_MAX_FILE_BYTES": 100_000},
        "whitespace.json.gz: the decompressed file is larger than the import limit of 100,000 bytes",
        id="gzip-of-whitespace",
    ),
    pytest.param(
        "items.parquet",
        parquet(300, "x" * 1_000),  # a few kilobytes: one dictionary entry stands for 300 values
        {"IMPORT_MAX_FILE_BYTES": 100_000},
        "items.parquet: the decoded file is larger than the import limit of 100,000 bytes",
        id="parquet-decoding-to-more",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(candidates_row(1), candidates_row(2), candidates_row(3, responses=6)),
        {"IMPORT_MAX_PAIRS_PER_PROMPT": 10},
        "items.jsonl, line 3: 'responses': 6 responses would make 15 pairs; the limit is 10 per prompt",
        id="pairs-per-prompt",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(*(candidates_row(number, responses=3) for number in range(1, 6))),
        {"IMPORT_MAX_PAIRS": 10},
        "items.jsonl, line 4: the rows so far would make 12 pairs; the limit is 10 per import",
        id="pairs-per-import",
    ),
    pytest.param(
        "items.json",
        json.dumps([candidates_row(1), {**candidates_row(2), "metadata": {"padding": " " * 300}}]).encode(),
        {"IMPORT_MAX_LINE_BYTES": 300},
        "items.json, item 2: item is longer than the limit of 300 bytes",
        id="json-item-too-long",
    ),
]


def run_job(project: Project, filename: str, content: bytes) -> ImportJob:
    job = import_job_create(
        project=project,
        upload=io.BytesIO(content),
        filename=filename,
        size=len(content),
        options=ImportOptions(),
        created_by=None,
    )
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("filename", sorted(UNPARSABLE))
def test_a_file_no_parser_can_take_fails_its_job_at_once_naming_the_reason(filename, enqueued):
    job = run_job(ProjectFactory(), filename, UNPARSABLE[filename])

    assert job.status == ImportJob.Status.FAILED, (job.status, job.error)
    # Where and what, in the words of a row error: never an exception's own text.
    assert job.error.startswith(filename) and "malformed" in job.error, job.error
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(("filename", "content", "limits", "message"), OVER_A_LIMIT)
def test_a_file_over_a_limit_fails_its_job_naming_the_place_and_writes_nothing(
    settings, enqueued, filename, content, limits, message
):
    project = ProjectFactory()
    items_import(
        project=project,
        stream=io.BytesIO(jsonl(candidates_row(0))),
        filename="earlier.jsonl",
        options=ImportOptions(),
    )
    before = (Prompt.objects.count(), Pair.objects.count())
    for name, value in limits.items():
        setattr(settings, name, value)

    job = run_job(project, filename, content)

    assert job.status == ImportJob.Status.FAILED
    assert job.error.startswith(message), job.error
    assert (Prompt.objects.count(), Pair.objects.count()) == before


@pytest.mark.parametrize("filename", sorted(UNPARSABLE))
def test_a_small_hostile_upload_is_a_400_in_the_error_shape_not_a_500(filename):
    project = ProjectFactory()
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role="lead")
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(lead)
    upload = SimpleUploadedFile(filename, UNPARSABLE[filename])
    response = client.post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "import_failed" and error["fields"]["file"][0].startswith(filename)
    assert Prompt.objects.count() == 0
