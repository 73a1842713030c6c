"""Properties of the importer, in every format it reads, gzipped or not (Hypothesis; the files come from
``tests.annotate.import_documents``): whatever a file holds (any bytes, any encoding, any nesting, any value in
any field, a good file damaged) the import either stores exactly what the file says, or refuses it with
errors that name the file and the row (and the field, when one row is wrong), never any other exception;
a refused file leaves the database as it was and its job failed, never running.

Each example runs in a savepoint of the test's transaction, rolled back after it, so that every example
starts from the same empty project. Derandomised, and with no example database, so that every run (CI's
included) tries the same files. ``pytest --hypothesis-profile=thorough`` (``conftest.py``) tries twenty
times as many. Each bug the properties found keeps its file as an ``@example``.
"""

from __future__ import annotations

import decimal
import io
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from rest_framework.test import APIClient

from annotate.models import ImportJob, Judgment, Pair, Project, Prompt, Response
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import (
    ImportFailed,
    ImportResult,
    import_job_create,
    import_job_run,
    import_run_now,
    items_import,
)
from tests.annotate.import_documents import (
    TEXT_LIMIT,
    Expected,
    Upload,
    any_bytes,
    damaged_uploads,
    encoded_uploads,
    one_wrong_field,
    valid_uploads,
)
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def examples(share: float) -> settings:
    """Settings for a property that tries ``share`` times the profile's number of examples (100 by default,
    so that the module runs in seconds: a share of 1 gives each of the eight formats about 12 files)."""
    return settings(
        max_examples=int(settings.default.max_examples * share),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # the project and the settings, the same for every example
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,  # Parquet cannot hold some values: those files are dropped
            HealthCheck.data_too_large,
        ],
    )


# What a refusal may say of a row without naming a field: the row could not be read as a row at all.
ROW_REASONS = (
    "malformed JSON",
    "malformed CSV",
    "not valid UTF-8",
    "each row must be an object",
    "more values than the",
    "line is longer than the limit",
    "duplicate id",
)
# What a refusal may say of the whole file.
FILE_REASONS = (
    "the gzip data is corrupt or truncated",
    "not a readable Parquet file",
    "a JSON file must hold a list of rows",
    "the file is empty",
    "file is larger than the import limit",
    "the decompressed file is larger than the import limit",
    "column '",  # named twice, in a Parquet file
)


@pytest.fixture(autouse=True)
def _small_text_limit(settings):
    settings.IMPORT_MAX_TEXT_CHARS = TEXT_LIMIT


@pytest.fixture
def project() -> Project:
    return ProjectFactory()


@dataclass(frozen=True)
class Refusal:
    place: str  # "line 3", "item 2", "row 2", or "" for the whole file
    what: str


@dataclass
class Outcome:
    result: ImportResult | None = None
    refusals: list[Refusal] | None = None
    prompts: list[str] | None = None
    responses: list[str] | None = None


def stored() -> dict[str, int]:
    """Rows of every table an import writes, in every project."""
    return {
        "prompts": Prompt.objects.count(),
        "responses": Response.objects.count(),
        "pairs": Pair.objects.count(),
        "judgments": Judgment.objects.count(),
    }


def refusals(errors: list[str], filename: str) -> list[Refusal]:
    """Each error as its place and what it says, after checking that it names the file, and the row with a
    field of it or a reason the row could not be read, or a reason the whole file could not be."""
    assert errors
    found = []
    for error in errors:
        match = re.fullmatch(rf"{re.escape(filename)}(?:, ((?:line|item|row) \d+))?: (.+)", error, re.DOTALL)
        assert match, error
        place, what = match[1] or "", match[2]
        if place:
            assert int(place.split()[1]) >= 1, error
            assert re.search(r"'[^']+'", what) or what.startswith(ROW_REASONS), error
        else:
            assert what.startswith(FILE_REASONS), error
        found.append(Refusal(place, what))
    return found


def import_upload(project: Project, upload: Upload) -> Outcome:
    """Imports ``upload`` as the API and the import page do, checks what every import must do whatever the
    file, and undoes it."""
    with transaction.atomic():
        before = stored()
        job, result, failure = import_run_now(
            project=project,
            upload=io.BytesIO(upload.content),
            filename=upload.filename,
            options=ImportOptions(),
            created_by=None,
        )
        assert not ImportJob.objects.filter(status=ImportJob.Status.RUNNING).exists()
        if failure is not None:
            assert job.status == ImportJob.Status.FAILED and job.errors == failure.errors
            assert failure.fields == {"file": failure.errors}
            assert stored() == before
            outcome = Outcome(refusals=refusals(failure.errors, upload.filename))
        else:
            assert result is not None and job.status == ImportJob.Status.SUCCEEDED
            after = stored()
            assert {name: after[name] - before[name] for name in after} == {
                "prompts": result.prompts_created,
                "responses": result.responses_created,
                "pairs": result.pairs_created,
                "judgments": result.judgments_created,
            }
            outcome = Outcome(
                result=result,
                prompts=sorted(Prompt.objects.filter(project=project).values_list("content", flat=True)),
                responses=sorted(
                    Response.objects.filter(prompt__project=project).values_list("content", flat=True)
                ),
            )
        transaction.set_rollback(True)
    return outcome


def assert_stores_exactly(outcome: Outcome, upload: Upload) -> None:
    expected = upload.expected
    assert expected is not None
    assert outcome.refusals is None, outcome.refusals
    assert outcome.result is not None
    assert outcome.result.rows == len(expected.prompts)  # one prompt a row
    assert outcome.prompts == sorted(expected.prompts)
    assert outcome.responses == sorted(expected.responses)
    assert outcome.result.pairs_created == expected.pairs


# Files the properties found bugs with -------------------------------------------------------------------

PAIR = {"prompt": "p", "response_a": "a", "response_b": "b"}
CANDIDATES = {"id": "p1", "prompt": "p", "responses": [{"content": "a"}, {"content": "b"}]}


def jsonl(*rows: dict) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def parquet(columns: dict[str, list], **options) -> bytes:
    """``columns`` as a Parquet file; a column named twice when its name ends with a space (Parquet allows it)."""
    buffer = io.BytesIO()
    table = pa.Table.from_arrays(
        [pa.array(values) for values in columns.values()], names=[name.strip() for name in columns]
    )
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


PAIR_PARQUET = {key: [value] for key, value in PAIR.items()}


def with_page_damaged(data: bytes) -> bytes:
    """A Parquet file whose footer reads but whose first page header (just after the magic bytes) does not."""
    return data[:4] + b"\xff" * 4 + data[8:]


def with_text_damaged() -> bytes:
    """A Parquet file that reads but holds a text that is not UTF-8 (stored plainly, so that it can be found)."""
    plain = {"compression": "NONE", "use_dictionary": False, "write_statistics": False}
    data = parquet({**PAIR_PARQUET, "response_a": ["answer a"]}, **plain)
    return data.replace(b"answer a", b"answer \xff")


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# Properties ------------------------------------------------------------------------------------------


# A CSV row shorter than its header, its missing cell a JSON column: AttributeError on None.
@example(upload=Upload("csv", b"prompt,responses\nhello\n"))
# Parquet pages damaged past a readable footer: pyarrow's OSError and ArrowInvalid while reading rows.
@example(upload=Upload("parquet", with_page_damaged(parquet(PAIR_PARQUET))))
# ... and a text in a page that is not UTF-8: UnicodeDecodeError.
@example(upload=Upload("parquet", with_text_damaged()))
# ... and a column's name that is not UTF-8: UnicodeDecodeError while opening the file.
@example(
    upload=Upload(
        "parquet", parquet(PAIR_PARQUET, store_schema=False).replace(b"response_a", b"respons\xd4_a")
    )
)
@examples(share=1.2)
@given(upload=any_bytes())
def test_any_bytes_are_imported_or_refused_naming_their_place(project, upload):
    import_upload(project, upload)


# Metadata holding the text "\u0000" (a backslash, then five characters) was refused as holding a NUL.
@example(
    upload=Upload(
        "jsonl",
        jsonl({**PAIR, "metadata": {"note": "\\u0000 is how JSON writes a NUL"}}),
        expected=Expected(prompts=["p"], responses=["a", "b"], pairs=1),
    )
)
@examples(share=1)
@given(upload=valid_uploads())
def test_a_valid_file_with_any_text_stores_exactly_its_rows(project, upload):
    assert_stores_exactly(import_upload(project, upload), upload)


@examples(share=0.3)  # three text formats, no gzip
@given(upload=encoded_uploads())
def test_a_file_in_another_encoding_is_read_as_utf8_or_refused(project, upload):
    outcome = import_upload(project, upload)
    as_utf8 = upload.content.removeprefix(b"\xef\xbb\xbf")
    if upload.encoding.startswith("utf-16") or not is_utf8(as_utf8):
        # (In UTF-16 every ASCII character comes with a NUL byte: never a file of rows.)
        assert outcome.refusals is not None
    elif upload.encoding.startswith("utf-8") or as_utf8.isascii():
        assert_stores_exactly(outcome, upload)
    # Otherwise latin-1 bytes that happen to be UTF-8 too: read as UTF-8, whatever the writer meant.


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Metadata nested past 255 levels (orjson writes no deeper): TypeError "Recursion limit reached".
@example(
    upload=Upload("jsonl", jsonl({**PAIR, "metadata": {"k": nested(300)}}), place="line 1", field="metadata")
)
# Metadata a Parquet file holds but JSON does not (bytes, decimals): TypeError.
@example(
    upload=Upload(
        "parquet",
        parquet({**PAIR_PARQUET, "metadata": [{"k": b"\x00\xff"}]}),
        place="row 1",
        field="metadata",
    )
)
@example(
    upload=Upload(
        "parquet",
        parquet({**PAIR_PARQUET, "metadata": [{"k": decimal.Decimal("1.5")}]}),
        place="row 1",
        field="metadata",
    )
)
# A message's role a list or an object: TypeError "unhashable type" looking it up.
@example(
    upload=Upload(
        "jsonl",
        jsonl({**CANDIDATES, "prompt": [{"role": {"a": 1}, "content": "p"}]}),
        place="line 1",
        field="prompt",
    )
)
# A CSV column named twice: the last cell won, an empty one included, and the other rows were refused.
@example(
    upload=Upload(
        "csv",
        b'id,prompt,responses, prompt\np1,p,"[{""content"": ""a""}, {""content"": ""b""}]",\n',
        place="line 1",
        field="prompt",
    )
)
# ... and in a Parquet file: the last column won for every row, an empty (None) one included.
@example(
    upload=Upload(
        "parquet",
        parquet(
            {
                "prompt": ["p", "q"],
                "response_a": ["a", "c"],
                "response_b": ["b", "d"],
                "response_a ": ["other", None],
            }
        ),
        place="",
        field="response_a",
    )
)
@examples(share=1.5)
@given(upload=one_wrong_field())
def test_a_wrong_missing_extra_or_doubled_field_is_refused_naming_its_row_and_field(project, upload):
    outcome = import_upload(project, upload)
    if outcome.refusals is None:
        return  # a value the field accepts (a number as text, an optional field left out, ...)
    for refusal in outcome.refusals:
        if refusal.what.startswith("duplicate id"):
            continue  # the id given may be another row's
        if upload.fmt.partition(".")[0] == "json" and refusal.what.startswith(
            ("malformed JSON", "not valid")
        ):
            continue  # a value no JSON reader takes makes the whole document unreadable, from its line on
        if upload.fmt.startswith("parquet") and refusal.what.startswith("not a readable Parquet file"):
            continue  # Parquet types a column, not a row: a type its reader refuses (too deep) is the file's
        assert refusal.place == upload.place, (refusal, upload.place)
        names_field = re.search(rf"'{re.escape(upload.field.strip())}\b", refusal.what)
        shape_changed = refusal.what.startswith(("missing field", "cannot tell the row's shape"))
        assert names_field or shape_changed or refusal.what.startswith(ROW_REASONS), refusal


@examples(share=1)
@given(upload=damaged_uploads())
def test_a_damaged_file_is_imported_or_refused_naming_its_place(project, upload):
    import_upload(project, upload)


@examples(share=0.2)
@given(upload=damaged_uploads() | one_wrong_field() | any_bytes())
def test_an_import_job_ends_at_once_succeeded_or_failed_with_the_reason(project, enqueued, upload):
    with transaction.atomic():
        job = import_job_create(
            project=project,
            upload=io.BytesIO(upload.content),
            filename=upload.filename,
            size=len(upload.content),
            options=ImportOptions(),
            created_by=None,
        )
        import_job_run(job_id=job.pk)
        job.refresh_from_db()
        assert job.status in {ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED}, job.status
        if job.status == ImportJob.Status.FAILED:
            # The reasons of a row error, never "the import stopped" with an exception's own text.
            refusals(job.errors, upload.filename)
            assert stored() == dict.fromkeys(["prompts", "responses", "pairs", "judgments"], 0)
        transaction.set_rollback(True)


def test_malformed_csv_is_placed_on_the_line_it_is_on():
    """DictReader's line count is one behind while a row fails to parse: it named the line before (line 0
    for a bad header)."""
    project = ProjectFactory()
    for content, line in ((b"id,pro\rmpt\n", 1), (b"id,prompt\np1,a\rb\n", 2)):
        with pytest.raises(ImportFailed) as caught:
            items_import(
                project=project, stream=io.BytesIO(content), filename="items.csv", options=ImportOptions()
            )
        assert caught.value.errors[0].startswith(f"items.csv, line {line}: malformed CSV"), (
            caught.value.errors
        )


# Over the API ----------------------------------------------------------------------------------------


def test_a_refusal_over_the_api_is_a_400_naming_the_file_row_and_field(project):
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role="lead")
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(lead)
    content = b'id,prompt,responses\np1,hello,"[{""content"": ""a""}, {""content"": ""b""}]"\np2,again,"{""k"": 1}"\n'
    upload = SimpleUploadedFile("items.csv", content)
    response = client.post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400, response.content
    message = "items.csv, line 3: 'responses' must be a list of at least two items"
    assert response.json() == {
        "error": {"code": "import_failed", "message": message, "fields": {"file": [message]}}
    }
    assert stored() == dict.fromkeys(["prompts", "responses", "pairs", "judgments"], 0)
