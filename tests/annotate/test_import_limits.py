"""What an import may cost: whether it runs in the request is decided by its work (content after gunzip,
pairs), not by the size of the upload; an upload over the limit is stopped as it streams; every format
is read a piece at a time; pairs are capped per prompt and per import. Each hostile file of the probe that
found these is here, scaled down by lowering the settings."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import random
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from annotate.api.views import ProjectImportApi
from annotate.models import ImportJob, Pair, Prompt
from annotate.services.import_rows import (
    Couples,
    ImportOptions,
    iter_raw_rows,
    open_decompressed,
    response_record,
    work_within,
)
from annotate.services.imports import (
    ImportFailed,
    import_job_create,
    import_job_run,
    import_limits,
    import_start,
    items_import,
)
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def row(number: int, responses: int = 2) -> dict:
    return {
        "id": f"p{number}",
        "prompt": f"Question {number}?",
        "responses": [{"id": f"r{index}", "content": f"Answer {index}."} for index in range(responses)],
    }


def jsonl(*rows: dict) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in rows)


class ReadCounting(io.BytesIO):
    """A file that says how far it was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return data

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.furthest = max(self.furthest, self.tell())
        return count


@pytest.fixture
def project():
    return ProjectFactory()


@pytest.fixture
def lead(project):
    return MembershipFactory(project=project, role="lead").user


@pytest.fixture
def uploads(settings, tmp_path) -> Path:
    """Where uploads stream to, to see what is left there."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def kept_files(uploads: Path, settings) -> list[Path]:
    stored = Path(settings.MEDIA_ROOT) / "imports"
    return [*uploads.iterdir(), *(stored.iterdir() if stored.exists() else [])]


# Run now, or as a job: the one decision ---------------------------------------------------------------

THRESHOLD = {"IMPORT_ASYNC_THRESHOLD_BYTES": 50_000, "IMPORT_ASYNC_THRESHOLD_PAIRS": 100}
SMALL_UPLOAD_LARGE_WORK = {
    # A few hundred bytes of gzip holding megabytes: of blank lines, of whitespace around a JSON list.
    "blank-lines.jsonl.gz": gzip.compress(b"\n" * 3_000_000 + jsonl(row(1))),
    "whitespace.json.gz": gzip.compress(b"[" + b" " * 3_000_000 + json.dumps(row(1)).encode() + b"]"),
    # A short file whose rows make many pairs (15 responses: 105 pairs).
    "many-pairs.jsonl": jsonl(row(1, responses=15)),
    # Parquet decodes before its size is known: always a worker's.
    "items.parquet": b"PAR1",
}


@pytest.mark.parametrize("filename", sorted(SMALL_UPLOAD_LARGE_WORK))
def test_an_upload_is_queued_by_the_work_it_will_cost_not_its_size(
    project, lead, settings, enqueued, filename
):
    for name, value in THRESHOLD.items():
        setattr(settings, name, value)
    content = SMALL_UPLOAD_LARGE_WORK[filename]
    assert len(content) < settings.IMPORT_ASYNC_THRESHOLD_BYTES
    upload = ReadCounting(content)

    started = import_start(
        project=project,
        upload=upload,
        filename=filename,
        size=len(content),
        options=ImportOptions(),
        created_by=lead,
    )

    assert started.queued and started.job.status == ImportJob.Status.QUEUED
    assert Prompt.objects.count() == 0


def test_an_upload_whose_work_is_small_runs_in_the_request(project, lead, settings, enqueued):
    for name, value in THRESHOLD.items():
        setattr(settings, name, value)
    content = jsonl(*(row(number, responses=3) for number in range(30)))  # 90 pairs

    started = import_start(
        project=project,
        upload=io.BytesIO(content),
        filename="items.jsonl",
        size=len(content),
        options=ImportOptions(),
        created_by=lead,
    )

    assert not started.queued and started.failure is None
    assert started.job.status == ImportJob.Status.SUCCEEDED and started.result.pairs_created == 90
    assert enqueued.job_ids == []


def test_deciding_reads_no_further_than_the_bound():
    content = jsonl(*(row(number) for number in range(20_000)))  # 2 MB, 20,000 pairs
    upload = ReadCounting(content)

    small = work_within(
        upload, "items.jsonl", "jsonl", ImportOptions(), import_limits(), content_bytes=1_000_000, pairs=100
    )

    assert not small
    # The bound on pairs was passed within the first kilobytes: a buffer was read, not the file.
    assert upload.furthest < 200_000 < len(content)


def test_the_api_queues_a_small_upload_of_large_work(project, lead, settings, enqueued):
    settings.IMPORT_ASYNC_THRESHOLD_BYTES = 50_000
    client = APIClient()
    client.force_authenticate(lead)
    upload = SimpleUploadedFile("blank-lines.jsonl.gz", SMALL_UPLOAD_LARGE_WORK["blank-lines.jsonl.gz"])

    response = client.post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    assert Prompt.objects.count() == 0


def test_the_page_queues_a_small_upload_of_large_work(project, lead, settings, enqueued):
    settings.IMPORT_ASYNC_THRESHOLD_BYTES = 50_000
    client = Client()
    client.force_login(lead)
    upload = SimpleUploadedFile("blank-lines.jsonl.gz", SMALL_UPLOAD_LARGE_WORK["blank-lines.jsonl.gz"])

    response = client.post(
        f"/projects/{project.slug}/import/",
        {"file": upload, "pairing": "all", "label_as": "gold"},
        follow=True,
    )

    assert "is being imported" in response.content.decode()
    assert ImportJob.objects.get().status == ImportJob.Status.QUEUED
    assert Prompt.objects.count() == 0


# An upload over the limit is stopped as it streams ------------------------------------------------------


def test_the_api_stops_an_upload_over_the_limit_as_it_streams_and_keeps_nothing(
    project, lead, settings, uploads
):
    settings.IMPORT_MAX_FILE_BYTES = 100_000
    body = encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("big.jsonl", b" " * 3_000_000)})
    stream = ReadCounting(body)
    request = APIRequestFactory().generic(
        "POST", f"/api/projects/{project.pk}/imports/", body, MULTIPART_CONTENT, **{"wsgi.input": stream}
    )
    force_authenticate(request, user=lead)

    response = ProjectImportApi.as_view()(request, project_id=project.pk)

    assert response.status_code == 413
    assert response.data == {
        "error": {
            "code": "too_large",
            "message": "big.jsonl: the upload is larger than the import limit of 100,000 bytes; nothing was kept",
            "fields": {"file": ["file too large"]},
        }
    }
    # Stopped a buffer or two past the limit, not at the end of the body.
    assert stream.furthest < 500_000 < len(body)
    assert kept_files(uploads, settings) == []
    assert ImportJob.objects.count() == 0


def test_the_page_stops_an_upload_over_the_limit_and_says_why(project, lead, settings, uploads):
    settings.IMPORT_MAX_FILE_BYTES = 100_000
    client = Client()
    client.force_login(lead)
    upload = SimpleUploadedFile("big.jsonl", b" " * 300_000)

    response = client.post(
        f"/projects/{project.slug}/import/", {"file": upload, "pairing": "all", "label_as": "gold"}
    )

    assert response.status_code == 200
    assert (
        "big.jsonl: the upload is larger than the import limit of 100,000 bytes" in response.content.decode()
    )
    assert kept_files(uploads, settings) == []
    assert ImportJob.objects.count() == 0


# Hostile files, in a worker: refused with the true reason, nothing written --------------------------------


def parquet(rows: int, text: str) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        pa.Table.from_pydict(
            {"prompt": [text] * rows, "response_a": ["a"] * rows, "response_b": ["b"] * rows}
        ),
        buffer,
    )
    return buffer.getvalue()


HOSTILE = [
    pytest.param(
        "whitespace.json.gz",
        gzip.compress(b"[" + b" " * 300_000 + b"]"),
        {"IMPORT_MAX_FILE_BYTES": 100_000},
        "whitespace.json.gz: the decompressed file is larger than the import limit of 100,000 bytes",
        id="gzip-of-whitespace",
    ),
    pytest.param(
        "items.parquet",
        parquet(300, "x" * 1_000),  # a few kilobytes, a dictionary entry standing for 300 values
        {"IMPORT_MAX_FILE_BYTES": 100_000},
        "items.parquet: the decoded file is larger than the import limit of 100,000 bytes",
        id="parquet-decoding-to-more",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(row(1), row(2), {**row(3, responses=6)}),
        {"IMPORT_MAX_PAIRS_PER_PROMPT": 10},
        "items.jsonl, line 3: 'responses': 6 responses would make 15 pairs; the limit is 10 per prompt",
        id="pairs-per-prompt",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(*(row(number, responses=3) for number in range(1, 6))),
        {"IMPORT_MAX_PAIRS": 10},
        "items.jsonl, line 4: the rows so far would make 12 pairs; the limit is 10 per import",
        id="pairs-per-import",
    ),
    pytest.param(
        "items.json",
        json.dumps([row(1), {**row(2), "metadata": {"padding": " " * 300}}]).encode(),
        {"IMPORT_MAX_LINE_BYTES": 300},
        "items.json, item 2: item is longer than the limit of 300 bytes",
        id="json-item-too-long",
    ),
]


@pytest.mark.parametrize(("filename", "content", "limits", "message"), HOSTILE)
def test_a_hostile_file_fails_its_job_with_the_reason_and_writes_nothing(
    project, settings, enqueued, filename, content, limits, message
):
    items_import(
        project=project, stream=io.BytesIO(jsonl(row(0))), filename="earlier.jsonl", options=ImportOptions()
    )
    before = (Prompt.objects.count(), Pair.objects.count())
    for name, value in limits.items():
        setattr(settings, name, value)
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
    assert job.status == ImportJob.Status.FAILED
    assert job.error.startswith(message), job.error
    assert (Prompt.objects.count(), Pair.objects.count()) == before


def test_random_pairing_draws_within_the_cap_from_a_prompt_with_many_responses(project, settings):
    settings.IMPORT_MAX_PAIRS_PER_PROMPT = 10
    content = jsonl(row(1, responses=2_000))  # two million couples, never made

    result = items_import(
        project=project,
        stream=io.BytesIO(content),
        filename="items.jsonl",
        options=ImportOptions(pairing="random", pairs_per_prompt=10, seed=3),
    )

    assert result.pairs_created == 10


def test_a_run_of_blank_lines_is_skipped_and_still_counted(project):
    content = gzip.compress(jsonl(row(1)) + b"\n \n\t\r\n" * 1_000_000 + b'{"prompt": "Q?"}\n')

    with pytest.raises(ImportFailed) as caught:
        items_import(
            project=project, stream=io.BytesIO(content), filename="items.jsonl.gz", options=ImportOptions()
        )

    assert caught.value.errors[0].startswith("items.jsonl.gz, line 3000002: cannot tell the row's shape")


# Every format a piece at a time -------------------------------------------------------------------------


def test_a_json_list_is_read_item_by_item(project, settings):
    settings.IMPORT_MAX_ROWS = 3
    content = json.dumps([row(number) for number in range(20_000)], indent=1).encode()  # 3 MB
    stream = ReadCounting(content)

    with pytest.raises(ImportFailed) as caught:
        items_import(project=project, stream=stream, filename="items.json", options=ImportOptions())

    assert caught.value.errors == ["items.json: more than 3 rows, the import limit"]
    assert stream.furthest < 300_000 < len(content)
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize("filename", ["items.json", "items.jsonl"])
def test_reading_a_large_file_holds_a_piece_of_it_at_a_time(filename):
    rows = [row(number) for number in range(5_000)]
    if filename == "items.json":
        content = b"[" + b" " * 20_000_000 + b",\n".join(json.dumps(item).encode() for item in rows) + b"]"
    else:
        content = b"\n" * 20_000_000 + jsonl(*rows)
    limits = import_limits()

    tracemalloc.start()
    try:
        stream, _ = open_decompressed(io.BytesIO(content), filename, limits.max_file_bytes)
        read = sum(1 for _ in iter_raw_rows(stream, filename, filename.split(".")[1], limits))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert read == 5_000
    assert peak < 1_000_000 < len(content) / 10


# Random pairing without making every couple ------------------------------------------------------------


def test_couples_are_those_the_list_of_every_couple_gave_and_a_seed_draws_the_same():
    generator = random.Random(7)
    for trial in range(300):
        responses = [
            response_record(f"r{generator.random()}", generator.choice(["", "a", "b", "c"]), f"text {index}")
            for index in range(generator.randint(0, 25))
        ]
        cross_system_only = generator.random() < 0.6
        ordered = sorted(responses, key=lambda response: response.external_id)
        expected = [
            (first, second)
            for first, second in itertools.combinations(ordered, 2)
            if not (cross_system_only and first.system and first.system == second.system)
        ]

        couples = Couples(responses, cross_system_only=cross_system_only)

        assert len(couples) == len(expected)
        assert [couples[index] for index in range(len(couples))] == expected == list(couples)
        drawn = min(len(expected), generator.randint(1, 40))
        assert random.Random(trial).sample(couples, drawn) == random.Random(trial).sample(expected, drawn)
