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
from unittest.mock import patch

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from annotate.api.views import ProjectImportApi
from annotate.models import ImportJob, Prompt
from annotate.services.import_rows import (
    Couples,
    ImportOptions,
    iter_raw_rows,
    json_items,
    open_decompressed,
    response_record,
    work_within,
)
from annotate.services.imports import (
    ImportFailed,
    import_limits,
    import_start,
    items_import,
)
from tests.annotate.import_files import candidates_row, jsonl
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


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
    "blank-lines.jsonl.gz": gzip.compress(b"\n" * 3_000_000 + jsonl(candidates_row(1))),
    "whitespace.json.gz": gzip.compress(
        b"[" + b" " * 3_000_000 + json.dumps(candidates_row(1)).encode() + b"]"
    ),
    # A short file whose rows make many pairs (15 responses: 105 pairs).
    "many-pairs.jsonl": jsonl(candidates_row(1, responses=15)),
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
    content = jsonl(*(candidates_row(number, responses=3) for number in range(30)))  # 90 pairs

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
    content = jsonl(*(candidates_row(number) for number in range(20_000)))  # 2 MB, 20,000 pairs
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


# Pairs and blank lines ---------------------------------------------------------------------------------


def test_random_pairing_draws_within_the_cap_from_a_prompt_with_many_responses(project, settings):
    settings.IMPORT_MAX_PAIRS_PER_PROMPT = 10
    content = jsonl(candidates_row(1, responses=2_000))  # two million couples, never made

    result = items_import(
        project=project,
        stream=io.BytesIO(content),
        filename="items.jsonl",
        options=ImportOptions(pairing="random", pairs_per_prompt=10, seed=3),
    )

    assert result.pairs_created == 10


def test_a_run_of_blank_lines_is_skipped_and_still_counted(project):
    content = gzip.compress(jsonl(candidates_row(1)) + b"\n \n\t\r\n" * 1_000_000 + b'{"prompt": "Q?"}\n')

    with pytest.raises(ImportFailed) as caught:
        items_import(
            project=project, stream=io.BytesIO(content), filename="items.jsonl.gz", options=ImportOptions()
        )

    assert caught.value.errors[0].startswith("items.jsonl.gz, line 3000002: cannot tell the row's shape")


# Every format a piece at a time -------------------------------------------------------------------------


def test_a_json_list_is_read_item_by_item(project, settings):
    settings.IMPORT_MAX_ROWS = 3
    content = json.dumps([candidates_row(number) for number in range(20_000)], indent=1).encode()  # 3 MB
    stream = ReadCounting(content)

    with pytest.raises(ImportFailed) as caught:
        items_import(project=project, stream=stream, filename="items.json", options=ImportOptions())

    assert caught.value.errors == ["items.json: more than 3 rows, the import limit"]
    assert stream.furthest < 300_000 < len(content)
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize("filename", ["items.json", "items.jsonl"])
def test_reading_a_large_file_holds_a_piece_of_it_at_a_time(filename):
    rows = [candidates_row(number) for number in range(5_000)]
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


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    items=st.lists(JSON_VALUES, max_size=6),
    indent=st.sampled_from([None, 1, 2]),
    wrapped=st.booleans(),
    block=st.sampled_from([1, 7, 1 << 16]),
)
@hypothesis_settings(max_examples=200, deadline=None)
def test_a_json_file_read_item_by_item_gives_the_items_orjson_reads_whole(items, indent, wrapped, block):
    document = {"before": items[:1], "items": items, "after": "]}"} if wrapped else items
    content = json.dumps(document, indent=indent).encode()
    limits = import_limits()

    with patch.object(json_items, "BLOCK_BYTES", block):  # items across the ends of small reads
        stream, _ = open_decompressed(io.BytesIO(content), "items.json", limits.max_file_bytes)
        read = [row for _, row in iter_raw_rows(stream, "items.json", "json", limits)]

    whole = orjson.loads(content)
    assert read == (whole["items"] if wrapped else whole)


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
