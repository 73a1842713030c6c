"""The import service and ``manage.py import_items``: every row shape in every format, pair generation,
imported labels, and every kind of bad input refused whole."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DataError, connection
from django.utils import timezone

from annotate.models import ImportJob, Judgment, Pair, Project, Prompt, Response
from annotate.services import import_storage, imports
from annotate.services.import_rows import ImportOptions
from annotate.services.import_storage import bulk_insert
from annotate.services.imports import ImportFailed, import_job_create, import_job_run, items_import
from palate.errors import ApplicationError
from palate.storage import UPLOADS, store_read_bytes
from tests.annotate.import_files import jsonl
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

FORMATS = ["jsonl", "json", "csv", "parquet", "jsonl.gz", "json.gz", "csv.gz", "parquet.gz"]


# Files -----------------------------------------------------------------------------------------------


def encode_rows(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """The rows as a file of ``fmt``: CSV cells hold nested values as JSON text, Parquet holds them as
    lists and structs."""
    base, _, compression = fmt.partition(".")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if base == "jsonl":
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    elif base == "json":
        data = json.dumps(rows, indent=2).encode()
    elif base == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    key: json.dumps(value) if isinstance(value, list | dict) else value
                    for key, value in row.items()
                }
            )
        data = text.getvalue().encode()
    else:
        # Column by column, so that a column only some rows have is typed from the rows that have it.
        buffer = io.BytesIO()
        pq.write_table(
            pa.Table.from_pydict({column: [row.get(column) for row in rows] for column in columns}), buffer
        )
        data = buffer.getvalue()
    return gzip.compress(data) if compression == "gz" else data


def write_rows(folder: Path, rows: list[dict[str, Any]], fmt: str = "jsonl", stem: str = "items") -> Path:
    path = folder / f"{stem}.{fmt}"
    path.write_bytes(encode_rows(rows, fmt))
    return path


HASHED = "sha1:…"


def given_id(external_id: str) -> str:
    """An id from the file as it is; an id the importer derived from the content, after checking its form, as
    HASHED (which hash is the importer's business)."""
    if external_id.startswith("sha1:"):
        assert re.fullmatch(r"sha1:[0-9a-f]{40}", external_id), external_id
        return HASHED
    return external_id


def table_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (Prompt, Response, Pair, Judgment)}


# The two interfaces ---------------------------------------------------------------------------------


class ServiceImporter:
    def run(self, project: Project, path: Path, **options: Any) -> dict[str, int]:
        with path.open("rb") as stream:
            return items_import(
                project=project, stream=stream, filename=path.name, options=ImportOptions(**options)
            ).as_dict()

    def refused(self, project: Project, path: Path, **options: Any) -> str:
        with pytest.raises(ImportFailed) as caught:
            self.run(project, path, **options)
        return "\n".join(caught.value.errors)


class CommandImporter:
    @staticmethod
    def arguments(options: dict[str, Any]) -> list[str]:
        arguments = []
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                arguments.append(flag)
            elif value is not False:
                arguments += [flag, str(value)]
        return arguments

    def run(self, project: Project, path: Path, **options: Any) -> dict[str, int]:
        out = io.StringIO()
        call_command(
            "import_items",
            project.slug,
            str(path),
            "--no-progress",
            *self.arguments(options),
            stdout=out,
            stderr=io.StringIO(),
        )
        # "rows: 2, prompts created: 2, ..." back into the service's counts.
        parts = (part.split(": ") for part in out.getvalue().strip().split(", "))
        return {key.replace(" ", "_"): int(value.replace(",", "")) for key, value in parts}

    def refused(self, project: Project, path: Path, **options: Any) -> str:
        err = io.StringIO()
        with pytest.raises(CommandError) as caught:
            call_command(
                "import_items",
                project.slug,
                str(path),
                "--no-progress",
                *self.arguments(options),
                stdout=io.StringIO(),
                stderr=err,
            )
        return f"{err.getvalue()}\n{caught.value}"


@pytest.fixture(params=["service", "command"])
def importer(request) -> ServiceImporter | CommandImporter:
    return ServiceImporter() if request.param == "service" else CommandImporter()


@pytest.fixture
def project() -> Project:
    return ProjectFactory()


def stored(project: Project, *, ordered: bool = True) -> dict[str, list]:
    """What the project holds, in plain values, with responses and pairs under their prompt's text. Pairs
    of candidate responses have no meaningful A/B order: ``ordered=False`` compares unordered couples."""
    prompts = [
        (given_id(prompt.external_id), prompt.content, prompt.messages, prompt.category, prompt.metadata)
        for prompt in Prompt.objects.filter(project=project)
    ]
    responses = [
        (response.prompt.content, given_id(response.external_id), response.system, response.content)
        for response in Response.objects.filter(prompt__project=project).select_related("prompt")
    ]
    pairs = []
    for pair in Pair.objects.filter(project=project).select_related("prompt", "response_a", "response_b"):
        responses_of_pair = (pair.response_a.content, pair.response_b.content)
        pairs.append(
            (
                pair.prompt.content,
                responses_of_pair if ordered else frozenset(responses_of_pair),
                pair.external_id,
                pair.is_gold,
                pair.gold_choice,
            )
        )
    return {
        "prompts": sorted(prompts, key=repr),
        "responses": sorted(responses),
        "pairs": sorted(pairs, key=pair_order),
    }


def pair_order(pair: tuple) -> tuple:
    prompt_id, responses_of_pair, external_id, *_ = pair
    return prompt_id, sorted(responses_of_pair), external_id


# Every shape in every format -------------------------------------------------------------------------

HAIKU = "Leaves fall, slow and red\nthe wind carries them away\nautumn says goodbye"
TERSE_CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi."},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is 2+2?"},
]
SAY_HI = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say hi."}]
JOKE = [{"role": "user", "content": "Tell a joke."}]
RIDDLE = [{"role": "user", "content": "Ask me a riddle."}]
QUOTED = 'Crisp air, "amber" light, and a comma.'

SHAPES: dict[str, dict[str, Any]] = {
    "candidates": {
        "rows": [
            {
                "id": "p1",
                "prompt": "Write a haiku about autumn.",
                "category": "poetry",
                "metadata": {"source": "unit"},
                "responses": [
                    {"id": "r1", "system": "alpha", "content": HAIKU},
                    {"id": "r2", "system": "beta", "content": QUOTED},
                    {"id": "r3", "system": "gamma", "content": "I would rather not."},
                ],
            },
            {
                "id": "p2",
                "messages": TERSE_CHAT,
                "responses": [
                    {"id": "r1", "system": "alpha", "content": "4"},
                    {"id": "r2", "system": "beta", "content": "Four."},
                ],
            },
        ],
        "ordered": False,
        "prompts": [
            ("p1", "Write a haiku about autumn.", None, "poetry", {"source": "unit"}),
            ("p2", "What is 2+2?", TERSE_CHAT, "", {}),
        ],
        "responses": [
            ("Write a haiku about autumn.", "r1", "alpha", HAIKU),
            ("Write a haiku about autumn.", "r2", "beta", QUOTED),
            ("Write a haiku about autumn.", "r3", "gamma", "I would rather not."),
            ("What is 2+2?", "r1", "alpha", "4"),
            ("What is 2+2?", "r2", "beta", "Four."),
        ],
        "pairs": [
            ("Write a haiku about autumn.", frozenset({HAIKU, QUOTED}), "", False, ""),
            ("Write a haiku about autumn.", frozenset({HAIKU, "I would rather not."}), "", False, ""),
            ("Write a haiku about autumn.", frozenset({QUOTED, "I would rather not."}), "", False, ""),
            ("What is 2+2?", frozenset({"4", "Four."}), "", False, ""),
        ],
    },
    "ready-pairs": {
        # Two rows on the same prompt: one prompt, four responses, two pairs.
        "rows": [
            {
                "id": "pair-1",
                "prompt": "Name a prime number.",
                "response_a": "7",
                "response_b": "9",
                "system_a": "alpha",
                "system_b": "beta",
                "gold": "a",
            },
            {
                "prompt": "Name a prime number.",
                "response_a": "Two.",
                "response_b": "Eleven",
                "system_a": "gamma",
                "system_b": "alpha",
            },
        ],
        "ordered": True,
        "prompts": [(HASHED, "Name a prime number.", None, "", {})],
        "responses": [
            ("Name a prime number.", HASHED, "alpha", "7"),
            ("Name a prime number.", HASHED, "beta", "9"),
            ("Name a prime number.", HASHED, "gamma", "Two."),
            ("Name a prime number.", HASHED, "alpha", "Eleven"),
        ],
        "pairs": [
            ("Name a prime number.", ("7", "9"), "pair-1", True, "a"),
            ("Name a prime number.", ("Two.", "Eleven"), "", False, ""),
        ],
    },
    "trl-text-explicit-prompt": {
        "rows": [
            {"id": "pref-1", "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
            {"prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "Milan."},
        ],
        "ordered": True,
        "prompts": [
            (HASHED, "Capital of France?", None, "", {}),
            (HASHED, "Capital of Italy?", None, "", {}),
        ],
        "responses": [
            ("Capital of France?", HASHED, "", "Paris."),
            ("Capital of France?", HASHED, "", "Lyon."),
            ("Capital of Italy?", HASHED, "", "Rome."),
            ("Capital of Italy?", HASHED, "", "Milan."),
        ],
        "pairs": [
            ("Capital of France?", ("Paris.", "Lyon."), "pref-1", True, "a"),
            ("Capital of Italy?", ("Rome.", "Milan."), "", True, "a"),
        ],
    },
    "trl-text-implicit-prompt": {
        # The prompt is the shared leading text, cut back to a word boundary ("Answer: 4" -> "Answer: ").
        "rows": [
            {"chosen": "The sky is blue because of Rayleigh scattering.", "rejected": "The sky is green."},
            {"chosen": "Answer: 42 is right.", "rejected": "Answer: 41 is wrong."},
        ],
        "ordered": True,
        "prompts": [
            (HASHED, "The sky is ", None, "", {}),
            (HASHED, "Answer: ", None, "", {}),
        ],
        "responses": [
            ("The sky is ", HASHED, "", "blue because of Rayleigh scattering."),
            ("The sky is ", HASHED, "", "green."),
            ("Answer: ", HASHED, "", "42 is right."),
            ("Answer: ", HASHED, "", "41 is wrong."),
        ],
        "pairs": [
            ("The sky is ", ("blue because of Rayleigh scattering.", "green."), "", True, "a"),
            ("Answer: ", ("42 is right.", "41 is wrong."), "", True, "a"),
        ],
    },
    "trl-conversation-implicit-prompt": {
        # The prompt is the shared leading messages; its text is the last user turn.
        "rows": [
            {
                "chosen": [*SAY_HI, {"role": "assistant", "content": "Hi there!"}],
                "rejected": [*SAY_HI, {"role": "assistant", "content": "No."}],
            }
        ],
        "ordered": True,
        "prompts": [(HASHED, "Say hi.", SAY_HI, "", {})],
        "responses": [("Say hi.", HASHED, "", "Hi there!"), ("Say hi.", HASHED, "", "No.")],
        "pairs": [("Say hi.", ("Hi there!", "No."), "", True, "a")],
    },
    "trl-conversation-explicit-prompt": {
        "rows": [
            {
                "id": "conv-1",
                "prompt": JOKE,
                "chosen": [{"role": "assistant", "content": "Why did the chicken cross the road?"}],
                "rejected": [{"role": "assistant", "content": "No."}],
            },
            {
                "messages": RIDDLE,
                "chosen": [{"role": "assistant", "content": "What has keys but no locks?"}],
                "rejected": [{"role": "assistant", "content": "Riddles are silly."}],
            },
        ],
        "ordered": True,
        "prompts": [
            (HASHED, "Tell a joke.", JOKE, "", {}),
            (HASHED, "Ask me a riddle.", RIDDLE, "", {}),
        ],
        "responses": [
            ("Tell a joke.", HASHED, "", "Why did the chicken cross the road?"),
            ("Tell a joke.", HASHED, "", "No."),
            ("Ask me a riddle.", HASHED, "", "What has keys but no locks?"),
            ("Ask me a riddle.", HASHED, "", "Riddles are silly."),
        ],
        "pairs": [
            ("Tell a joke.", ("Why did the chicken cross the road?", "No."), "conv-1", True, "a"),
            ("Ask me a riddle.", ("What has keys but no locks?", "Riddles are silly."), "", True, "a"),
        ],
    },
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_it_imports_each_shape_from_each_format(importer, project, tmp_path, shape, fmt):
    expected = SHAPES[shape]
    path = write_rows(tmp_path, expected["rows"], fmt)

    counts = importer.run(project, path)

    assert stored(project, ordered=expected["ordered"]) == {
        "prompts": sorted(expected["prompts"], key=repr),
        "responses": sorted(expected["responses"]),
        "pairs": sorted(expected["pairs"], key=pair_order),
    }
    assert counts == {
        "rows": len(expected["rows"]),
        "prompts_created": len(expected["prompts"]),
        "prompts_existing": 0,
        "responses_created": len(expected["responses"]),
        "responses_existing": 0,
        "pairs_created": len(expected["pairs"]),
        "pairs_existing": 0,
        "gold_pairs_created": sum(pair[3] for pair in expected["pairs"]),
        "judgments_created": 0,
    }


def test_it_imports_into_one_project_only(importer, project, tmp_path):
    other = ProjectFactory()
    importer.run(project, write_rows(tmp_path, SHAPES["candidates"]["rows"]))

    assert Prompt.objects.filter(project=other).count() == 0
    assert Pair.objects.filter(project=other).count() == 0
    assert set(Pair.objects.values_list("prompt__project", flat=True)) == {project.pk}


def test_an_item_without_an_id_gets_one_derived_from_its_content(tmp_path):
    path = write_rows(tmp_path, SHAPES["trl-text-explicit-prompt"]["rows"])
    first, second = ProjectFactory(), ProjectFactory()

    ServiceImporter().run(first, path)
    ServiceImporter().run(second, path)

    def ids(project: Project) -> dict[str, str]:
        return dict(Prompt.objects.filter(project=project).values_list("content", "external_id"))

    assert ids(first) == ids(second)
    assert len(set(ids(first).values())) == 2
    assert {given_id(external_id) for external_id in ids(first).values()} == {HASHED}


def test_it_reads_a_json_object_with_an_items_list(project, tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"items": SHAPES["candidates"]["rows"]}))

    ServiceImporter().run(project, path)

    assert [prompt[0] for prompt in stored(project)["prompts"]] == ["p1", "p2"]


def test_it_takes_the_format_from_the_option_over_the_file_name(project, tmp_path):
    path = tmp_path / "export.txt"
    path.write_bytes(encode_rows(SHAPES["candidates"]["rows"], "csv"))

    counts = ServiceImporter().run(project, path, format="csv")

    assert counts["prompts_created"] == 2


# Pair generation -------------------------------------------------------------------------------------


def candidate_rows(prompts: int, systems: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"p{number}",
            "prompt": f"Question {number}?",
            "responses": [
                {"id": f"r{index}", "system": system, "content": f"Answer {index} to question {number}."}
                for index, system in enumerate(systems)
            ],
        }
        for number in range(prompts)
    ]


def pairs_by_prompt(project: Project) -> dict[str, list[tuple[str, str]]]:
    """Each prompt's pairs as (A's external id, B's external id), in creation order."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for prompt_id, a, b in (
        Pair.objects.filter(project=project)
        .order_by("id")
        .values_list("prompt__external_id", "response_a__external_id", "response_b__external_id")
    ):
        grouped.setdefault(prompt_id, []).append((a, b))
    return grouped


def test_it_pairs_every_two_responses_of_a_prompt_by_default(project, tmp_path):
    ServiceImporter().run(
        project, write_rows(tmp_path, candidate_rows(10, ["alpha", "beta", "gamma", "delta"]))
    )

    grouped = pairs_by_prompt(project)
    every_couple = {frozenset(couple) for couple in itertools.combinations(["r0", "r1", "r2", "r3"], 2)}
    assert len(grouped) == 10
    for pairs in grouped.values():
        assert len(pairs) == 6
        assert {frozenset(pair) for pair in pairs} == every_couple
    # Which response is A must not follow the id order, or the id order would leak into A/B statistics.
    all_pairs = [pair for pairs in grouped.values() for pair in pairs]
    assert any(a < b for a, b in all_pairs)
    assert any(a > b for a, b in all_pairs)


def test_random_pairing_draws_pairs_per_prompt_different_pairs(project, tmp_path):
    path = write_rows(tmp_path, candidate_rows(10, ["alpha", "beta", "gamma", "delta", "epsilon"]))

    counts = ServiceImporter().run(project, path, pairing="random", pairs_per_prompt=3, seed=1)

    grouped = pairs_by_prompt(project)
    assert counts["pairs_created"] == 30
    assert len(grouped) == 10
    for pairs in grouped.values():
        assert len({frozenset(pair) for pair in pairs}) == 3
    # A random draw: not the same three couples for every prompt.
    assert len({frozenset(frozenset(pair) for pair in pairs) for pairs in grouped.values()}) > 1


def test_random_pairing_keeps_every_pair_when_a_prompt_has_fewer_than_asked(project, tmp_path):
    path = write_rows(tmp_path, candidate_rows(2, ["alpha", "beta", "gamma"]))

    ServiceImporter().run(project, path, pairing="random", pairs_per_prompt=5)

    assert [len(pairs) for pairs in pairs_by_prompt(project).values()] == [3, 3]


def test_cross_system_only_never_pairs_two_responses_of_one_system(project, tmp_path):
    path = write_rows(tmp_path, candidate_rows(3, ["alpha", "alpha", "beta", "beta"]))

    ServiceImporter().run(project, path, cross_system_only=True)

    systems = Pair.objects.filter(project=project).values_list("response_a__system", "response_b__system")
    assert len(systems) == 3 * 4
    assert all(a != b for a, b in systems)


def test_cross_system_only_combines_with_random_pairing(project, tmp_path):
    path = write_rows(tmp_path, candidate_rows(3, ["alpha", "alpha", "beta", "beta"]))

    ServiceImporter().run(project, path, cross_system_only=True, pairing="random", pairs_per_prompt=2)

    grouped = pairs_by_prompt(project)
    systems = Pair.objects.filter(project=project).values_list("response_a__system", "response_b__system")
    assert [len(pairs) for pairs in grouped.values()] == [2, 2, 2]
    assert all(a != b for a, b in systems)


def test_the_same_seed_draws_the_same_pairs_and_another_seed_other_pairs(importer, tmp_path):
    path = write_rows(tmp_path, candidate_rows(10, ["alpha", "beta", "gamma", "delta", "epsilon"]))
    first, again, other = ProjectFactory(), ProjectFactory(), ProjectFactory()

    importer.run(first, path, pairing="random", pairs_per_prompt=2, seed=7)
    importer.run(again, path, pairing="random", pairs_per_prompt=2, seed=7)
    importer.run(other, path, pairing="random", pairs_per_prompt=2, seed=8)

    assert pairs_by_prompt(first) == pairs_by_prompt(again)
    assert pairs_by_prompt(first) != pairs_by_prompt(other)


def test_the_pairs_drawn_do_not_depend_on_how_the_file_is_chunked(tmp_path, monkeypatch):
    path = write_rows(tmp_path, candidate_rows(10, ["alpha", "beta", "gamma", "delta"]))
    whole, chunked = ProjectFactory(), ProjectFactory()

    ServiceImporter().run(whole, path, pairing="random", pairs_per_prompt=2, seed=3)
    monkeypatch.setattr(imports, "CHUNK_ROWS", 3)
    ServiceImporter().run(chunked, path, pairing="random", pairs_per_prompt=2, seed=3)

    assert pairs_by_prompt(whole) == pairs_by_prompt(chunked)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"pairing": "random"}, "pairs_per_prompt"),
        ({"pairing": "some"}, "pairing"),
        ({"label_as": "maybe"}, "label_as"),
        ({"format": "xlsx"}, "format"),
    ],
)
def test_it_refuses_invalid_options_naming_the_option(project, tmp_path, options, field):
    path = write_rows(tmp_path, SHAPES["candidates"]["rows"])

    with pytest.raises(ApplicationError) as caught:
        ServiceImporter().run(project, path, **options)

    assert field in caught.value.fields
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}


# Labels in preference data ---------------------------------------------------------------------------

PREFERENCES = SHAPES["trl-text-explicit-prompt"]["rows"]


def test_label_as_gold_makes_gold_pairs_with_the_chosen_response_as_a(importer, project, tmp_path):
    counts = importer.run(project, write_rows(tmp_path, PREFERENCES), label_as="gold")

    pairs = Pair.objects.filter(project=project).select_related("response_a", "response_b")
    assert {
        (pair.response_a.content, pair.response_b.content, pair.is_gold, pair.gold_choice) for pair in pairs
    } == {
        ("Paris.", "Lyon.", True, "a"),
        ("Rome.", "Milan.", True, "a"),
    }
    assert Judgment.objects.count() == 0
    assert (counts["gold_pairs_created"], counts["judgments_created"]) == (2, 0)


def test_label_as_judgment_records_an_imported_judgment_and_no_gold(importer, project, tmp_path):
    counts = importer.run(project, write_rows(tmp_path, PREFERENCES), label_as="judgment")

    assert not Pair.objects.filter(project=project, is_gold=True).exists()
    assert set(Pair.objects.values_list("gold_choice", flat=True)) == {""}
    judgments = Judgment.objects.select_related("pair__response_a")
    assert {(j.pair.response_a.content, j.choice, j.origin, j.annotator_id) for j in judgments} == {
        ("Paris.", "a", Judgment.Origin.IMPORTED, None),
        ("Rome.", "a", Judgment.Origin.IMPORTED, None),
    }
    assert (counts["gold_pairs_created"], counts["judgments_created"]) == (0, 2)


def test_label_as_none_drops_the_label(importer, project, tmp_path):
    counts = importer.run(project, write_rows(tmp_path, PREFERENCES), label_as="none")

    assert Pair.objects.filter(project=project).count() == 2
    assert not Pair.objects.filter(is_gold=True).exists()
    assert Judgment.objects.count() == 0
    assert (counts["gold_pairs_created"], counts["judgments_created"]) == (0, 0)


# Bad input -------------------------------------------------------------------------------------------

GOOD_ROW = {
    "id": "p1",
    "prompt": "Hello?",
    "responses": [{"id": "r1", "content": "Hi."}, {"id": "r2", "content": "Hey."}],
}
TWO_RESPONSES = GOOD_ROW["responses"]
GOOD_JSONL = jsonl(GOOD_ROW)


def corrupted(data: bytes) -> bytes:
    """gzip data with a damaged deflate stream (not merely cut short)."""
    damaged = bytearray(gzip.compress(data))
    damaged[15] ^= 0xFF
    return bytes(damaged)


BAD_INPUTS = [
    pytest.param(
        "items.jsonl",
        jsonl(GOOD_ROW, b'{"id": "p2", "prompt": '),
        {},
        "items.jsonl, line 2: malformed JSON",
        id="malformed-json-line",
    ),
    pytest.param(
        "items.json",
        b'[\n{"id": "p1",\n"prompt" "x"}]',
        {},
        "items.json, line 3: malformed JSON",
        id="malformed-json-document",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(GOOD_ROW, {"id": "p2", "responses": TWO_RESPONSES}),
        {},
        "items.jsonl, line 2: missing field 'prompt' (or 'messages')",
        id="missing-prompt",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"prompt": "Q?", "chosen": "Yes."}),
        {},
        "items.jsonl, line 1: missing field 'rejected'",
        id="missing-rejected",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "prompt": "Q?", "responses": [{"id": "r1"}, {"id": "r2", "content": "x"}]}),
        {},
        "items.jsonl, line 1: 'responses[0]': missing field 'content'",
        id="missing-response-content",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "prompt": {"text": "Q?"}, "responses": TWO_RESPONSES}),
        {},
        "items.jsonl, line 1: 'prompt' must be text, got dict",
        id="wrong-type-prompt",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "prompt": "Q?", "responses": [{"content": ["a"]}, {"content": "b"}]}),
        {},
        "items.jsonl, line 1: 'responses[0]': 'content' must be text, got list",
        id="wrong-type-response",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "messages": [{"role": "robot", "content": "Q?"}], "responses": TWO_RESPONSES}),
        {},
        "items.jsonl, line 1: 'messages[0]'.role must be one of",
        id="wrong-message-role",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"prompt": "Q?", "chosen": "Yes.", "rejected": [{"role": "assistant", "content": "No."}]}),
        {},
        "items.jsonl, line 1: 'chosen' and 'rejected' must both be text or both be conversations",
        id="mixed-preference-types",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(
            {
                "id": "p2",
                "prompt": "Q?",
                "responses": [{"id": "r1", "content": "a"}, {"id": "r1", "content": "b"}],
            }
        ),
        {},
        "items.jsonl, line 1: 'responses[1]': duplicate response id 'r1' (also responses[0])",
        id="duplicate-response-ids",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(GOOD_ROW, {**GOOD_ROW, "prompt": "Another?"}),
        {},
        "items.jsonl, line 2: duplicate id 'p1' (first used at line 1)",
        id="duplicate-ids",
    ),
    pytest.param(
        "items, from a team.json",
        json.dumps([{**GOOD_ROW, "id": "p0"}, GOOD_ROW, {**GOOD_ROW, "prompt": "Another?"}]).encode(),
        {},
        "items, from a team.json, item 3: duplicate id 'p1' (first used at item 2)",
        id="duplicate-ids-json",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({**GOOD_ROW, "prompt": "x" * 21}),
        {"IMPORT_MAX_TEXT_CHARS": 20},
        "items.jsonl, line 1: 'prompt' is 21 characters, over the limit of 20",
        id="oversize-text",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "prompt": "Q?", "responses": [{"content": "x" * 21}, {"content": "b"}]}),
        {"IMPORT_MAX_TEXT_CHARS": 20},
        "items.jsonl, line 1: 'responses[0]': 'content' is 21 characters, over the limit of 20",
        id="oversize-response",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(GOOD_ROW, {"id": "p2", "prompt": "y" * 300, "responses": TWO_RESPONSES}),
        {"IMPORT_MAX_LINE_BYTES": 200},
        "items.jsonl, line 2: line is longer than the limit of 200 bytes",
        id="oversize-line",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(*({**GOOD_ROW, "id": f"p{number}"} for number in range(10))),
        {"IMPORT_MAX_FILE_BYTES": 500},
        "items.jsonl: file is larger than the import limit of 500 bytes",
        id="oversize-file",
    ),
    pytest.param(
        "items.jsonl.gz",
        gzip.compress(jsonl(*({**GOOD_ROW, "id": f"p{number}"} for number in range(40)))),
        {"IMPORT_MAX_FILE_BYTES": 1000},
        "items.jsonl.gz: the decompressed file is larger than the import limit of 1,000 bytes",
        id="oversize-decompressed-file",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(*({**GOOD_ROW, "id": f"p{number}"} for number in range(4))),
        {"IMPORT_MAX_ROWS": 3},
        "items.jsonl: more than 3 rows, the import limit",
        id="too-many-rows",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"prompt": "Q?", "response_a": "a\u0000b", "response_b": "c"}),
        {},
        "items.jsonl, line 1: 'response_a' contains a NUL character (\\u0000), which cannot be stored",
        id="nul-in-text",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"messages": [{"role": "user", "content": "\u0000"}], "responses": TWO_RESPONSES}),
        {},
        "items.jsonl, line 1: 'messages[0]'.content contains a NUL character (\\u0000), which cannot be stored",
        id="nul-in-message",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({**GOOD_ROW, "metadata": {"source": "x\u0000"}}),
        {},
        "items.jsonl, line 1: 'metadata' contains a NUL character (\\u0000), which cannot be stored",
        id="nul-in-metadata",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"prompt": "Q?", "response_a": "a", "response_b": "b", "system_a": "s" * 201}),
        {},
        "items.jsonl, line 1: 'system_a' is longer than 200 characters",
        id="long-system-name",
    ),
    pytest.param("items.jsonl", b"", {}, "items.jsonl: the file is empty", id="empty-file"),
    pytest.param("items.jsonl", b"\n  \n\n", {}, "items.jsonl: the file is empty", id="blank-lines-only"),
    pytest.param("items.json", b"[]", {}, "items.json: the file is empty", id="empty-json-list"),
    pytest.param(
        "items.csv", b"id,prompt,responses\r\n", {}, "items.csv: the file is empty", id="csv-header-only"
    ),
    pytest.param(
        "items.jsonl",
        GOOD_JSONL + b'{"id": "p2", "prompt": "caf\xe9", "responses": []}\n',
        {},
        "items.jsonl, line 2: not valid UTF-8 (byte 0xe9",
        id="undecodable-bytes",
    ),
    pytest.param(
        "items.json",
        b'[\n{"id": "p2", "prompt": "caf\xe9"}]',
        {},
        "items.json, line 2: not valid UTF-8 (byte 0xe9",
        id="undecodable-bytes-json",
    ),
    pytest.param(
        "items.jsonl",
        jsonl(GOOD_ROW, [1, 2]),
        {},
        "items.jsonl, line 2: each row must be an object, got list",
        id="not-an-object",
    ),
    pytest.param(
        "items.json",
        b'{"id": "p1"}',
        {},
        "items.json: a JSON file must hold a list of rows",
        id="json-not-a-list",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "prompt": "Q?"}),
        {},
        "items.jsonl, line 1: cannot tell the row's shape",
        id="unknown-shape",
    ),
    pytest.param(
        "items.jsonl",
        jsonl({"id": "p2", "prompt": "Q?", "responses": [{"content": "Only one."}]}),
        {},
        "items.jsonl, line 1: 'responses' must be a list of at least two items",
        id="one-response",
    ),
    pytest.param(
        "items.jsonl.gz",
        gzip.compress(GOOD_JSONL * 50)[:-12],
        {},
        "items.jsonl.gz: the gzip data is corrupt or truncated",
        id="truncated-gzip",
    ),
    pytest.param(
        "items.jsonl.gz",
        corrupted(GOOD_JSONL * 50),
        {},
        "items.jsonl.gz: the gzip data is corrupt or truncated",
        id="corrupt-gzip",
    ),
    pytest.param(
        "items.parquet",
        b"PAR1 this is not parquet at all PAR1",
        {},
        "items.parquet: not a readable Parquet file",
        id="unreadable-parquet",
    ),
    pytest.param(
        "items.csv",
        b"id,prompt\r\np1,Hello?,surplus\r\n",
        {},
        "items.csv, line 2: more values than the 2 columns of the header",
        id="csv-too-many-values",
    ),
    pytest.param(
        "items.csv",
        b'id,messages\r\np1,"[{""role"": ""user"""\r\n',
        {},
        "items.csv, line 2: column 'messages' looks like JSON but is malformed",
        id="csv-malformed-json-cell",
    ),
    pytest.param(
        "items.txt",
        GOOD_JSONL,
        {},
        "items.txt: cannot tell the format from the file name",
        id="unknown-format",
    ),
]


@pytest.mark.parametrize(("filename", "content", "limits", "message"), BAD_INPUTS)
def test_it_refuses_bad_input_naming_the_place_and_writes_nothing(
    importer, project, tmp_path, settings, filename, content, limits, message
):
    # Data from an earlier import, so that "nothing written" means "nothing changed".
    ServiceImporter().run(project, write_rows(tmp_path, [{**GOOD_ROW, "id": "earlier"}], stem="earlier"))
    before = table_counts()
    for name, value in limits.items():
        setattr(settings, name, value)
    path = tmp_path / filename
    path.write_bytes(content)

    errors = importer.refused(project, path)

    assert message in errors
    assert table_counts() == before


@pytest.mark.parametrize(
    ("fmt", "place"),
    [
        ("jsonl", "items.jsonl, line 2"),
        ("json", "items.json, item 2"),
        ("csv", "items.csv, line 3"),
        ("parquet", "items.parquet, row 2"),
        ("csv.gz", "items.csv.gz, line 3"),
        ("parquet.gz", "items.parquet.gz, row 2"),
    ],
)
def test_each_format_names_the_row_of_an_error_in_its_own_terms(project, tmp_path, fmt, place):
    path = write_rows(tmp_path, [GOOD_ROW, {"id": "p2", "responses": TWO_RESPONSES}], fmt)

    errors = ServiceImporter().refused(project, path)

    assert errors == f"{place}: missing field 'prompt' (or 'messages')"
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}


def test_it_reports_every_bad_row_not_only_the_first(project, tmp_path):
    rows = [
        GOOD_ROW,
        {"id": "p2", "prompt": "Q?"},
        {**GOOD_ROW, "id": "p3"},
        {"id": "p4", "responses": TWO_RESPONSES},
    ]

    with pytest.raises(ImportFailed) as caught:
        ServiceImporter().run(project, write_rows(tmp_path, rows))

    assert [error.split(":")[0] for error in caught.value.errors] == [
        "items.jsonl, line 2",
        "items.jsonl, line 4",
    ]
    assert "2" in caught.value.message and "nothing was imported" in caught.value.message


def test_an_error_in_the_last_row_undoes_the_chunks_already_written(project, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    rows = [
        *({**GOOD_ROW, "id": f"p{number}"} for number in range(10)),
        {"id": "last", "responses": TWO_RESPONSES},
    ]
    prompts_seen_during_import = []

    def progress(rows_read: int, bytes_read: int) -> None:
        prompts_seen_during_import.append(Prompt.objects.filter(project=project).count())

    with pytest.raises(ImportFailed) as caught, write_rows(tmp_path, rows).open("rb") as stream:
        items_import(
            project=project, stream=stream, filename="items.jsonl", options=ImportOptions(), progress=progress
        )

    assert caught.value.errors == ["items.jsonl, line 11: missing field 'prompt' (or 'messages')"]
    # Chunks are stored while the file is read, in the import's transaction. The storage works a chunk or
    # two behind (see import_storage.ChunkWriter): when the fifth chunk was written, the third was stored at least.
    assert max(prompts_seen_during_import) >= 6
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}


def test_a_conflict_found_in_a_later_chunk_undoes_the_earlier_chunks(project, tmp_path, monkeypatch):
    ServiceImporter().run(project, write_rows(tmp_path, [{**GOOD_ROW, "id": "old"}], stem="first"))
    before = table_counts()
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    rows = [
        *({**GOOD_ROW, "id": f"p{number}"} for number in range(4)),
        {**GOOD_ROW, "id": "old", "prompt": "Changed?"},
    ]

    errors = ServiceImporter().refused(project, write_rows(tmp_path, rows))

    assert errors == "items.jsonl, line 5: id 'old' was imported before with a different prompt"
    assert table_counts() == before


def _rows_apart(first: dict, again: dict, distance: int) -> list[dict]:
    """``first``, then ``again`` as the first row of the chunk ``distance`` chunks later (of two rows)."""
    fillers = [
        {**GOOD_ROW, "id": f"f{number}", "prompt": f"Filler {number}?"} for number in range(2 * distance - 1)
    ]
    return [first, *fillers, again]


# Without a row id the prompt is known by its content, and so can come back in the same file.
UNNAMED = {"prompt": "Same?", "responses": TWO_RESPONSES}


@pytest.mark.parametrize("distance", [1, 2, 3], ids=["next-chunk", "two-chunks-on", "three-chunks-on"])
def test_a_prompt_met_again_chunks_later_is_stored_once(project, tmp_path, monkeypatch, distance):
    """A chunk's lookup sees the database up to the chunk before the previous one, and the previous
    chunk's new rows are checked from memory: either way a prompt, its responses and its pair met again
    are recognised."""
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    rows = _rows_apart(UNNAMED, UNNAMED, distance)

    counts = ServiceImporter().run(project, write_rows(tmp_path, rows))

    assert (counts["prompts_created"], counts["prompts_existing"]) == (len(rows) - 1, 1)
    assert (counts["responses_created"], counts["responses_existing"]) == (2 * (len(rows) - 1), 2)
    assert (counts["pairs_created"], counts["pairs_existing"]) == (len(rows) - 1, 1)
    assert Pair.objects.filter(project=project).count() == len(rows) - 1


@pytest.mark.parametrize("distance", [1, 2, 3], ids=["next-chunk", "two-chunks-on", "three-chunks-on"])
def test_a_response_id_reused_for_other_content_chunks_later_is_refused(
    project, tmp_path, monkeypatch, distance
):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    changed = {**UNNAMED, "responses": [{"id": "r1", "content": "Changed."}, TWO_RESPONSES[1]]}
    rows = _rows_apart(UNNAMED, changed, distance)

    errors = ServiceImporter().refused(project, write_rows(tmp_path, rows))

    assert (
        errors
        == f"items.jsonl, line {len(rows)}: response id 'r1' was imported before with different content"
    )
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}


def test_a_database_error_while_rows_are_stored_fails_the_import_and_keeps_nothing(
    project, tmp_path, monkeypatch
):
    """The storage's thread meets an error (here a statement that fails, as a full disk or a lost
    connection would): the import raises it as Django's error, stops, and rolls every chunk back."""
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    copy = import_storage._CopyTarget.copy
    copies = []

    def failing_third_copy(self, cursor, ids, rows):
        copies.append(self.statement)
        if len(copies) == 3:
            cursor.execute("SELECT 1 / 0")
        return copy(self, cursor, ids, rows)

    monkeypatch.setattr(import_storage._CopyTarget, "copy", failing_third_copy)
    rows = [{**GOOD_ROW, "id": f"p{number}", "prompt": f"Question {number}?"} for number in range(8)]

    with pytest.raises(DataError, match="division by zero"):
        ServiceImporter().run(project, write_rows(tmp_path, rows))

    assert len(copies) == 3  # nothing was sent after the error
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}
    assert Project.objects.filter(pk=project.pk).exists()  # the connection works on


# Re-imports ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_importing_the_same_file_twice_creates_nothing_the_second_time(importer, project, tmp_path, shape):
    path = write_rows(tmp_path, SHAPES[shape]["rows"])
    first = importer.run(project, path)
    before = stored(project)

    second = importer.run(project, path)

    assert stored(project) == before
    assert second == {
        "rows": first["rows"],
        "prompts_created": 0,
        "prompts_existing": first["prompts_created"],
        "responses_created": 0,
        "responses_existing": first["responses_created"],
        "pairs_created": 0,
        "pairs_existing": first["pairs_created"],
        "gold_pairs_created": 0,
        "judgments_created": 0,
    }


def test_reimporting_labels_as_judgments_does_not_duplicate_them(project, tmp_path):
    path = write_rows(tmp_path, PREFERENCES)
    ServiceImporter().run(project, path, label_as="judgment")

    second = ServiceImporter().run(project, path, label_as="judgment")

    assert second["judgments_created"] == 0
    assert Judgment.objects.count() == 2


def test_a_file_that_adds_responses_to_an_imported_prompt_adds_only_the_new_pairs(project, tmp_path):
    ServiceImporter().run(project, write_rows(tmp_path, [GOOD_ROW], stem="first"))
    grown = {**GOOD_ROW, "responses": [*TWO_RESPONSES, {"id": "r3", "content": "Hello there."}]}

    counts = ServiceImporter().run(project, write_rows(tmp_path, [grown], stem="second"))

    assert (counts["responses_created"], counts["responses_existing"]) == (1, 2)
    assert (counts["pairs_created"], counts["pairs_existing"]) == (2, 1)
    assert Pair.objects.filter(project=project).count() == 3


@pytest.mark.parametrize(
    ("first_row", "second_row", "message"),
    [
        pytest.param(
            GOOD_ROW,
            {**GOOD_ROW, "prompt": "Goodbye?"},
            "items.jsonl, line 1: id 'p1' was imported before with a different prompt",
            id="prompt",
        ),
        pytest.param(
            GOOD_ROW,
            {**GOOD_ROW, "responses": [TWO_RESPONSES[0], {"id": "r2", "content": "Changed."}]},
            "items.jsonl, line 1: response id 'r2' was imported before with different content",
            id="response",
        ),
        pytest.param(
            {"id": "pref-1", "prompt": "Q?", "chosen": "Yes.", "rejected": "No."},
            {"id": "pref-1", "prompt": "Q?", "chosen": "Yes.", "rejected": "Maybe."},
            "items.jsonl, line 1: pair id 'pref-1' was imported before for different responses",
            id="pair",
        ),
    ],
)
def test_it_refuses_an_id_reimported_with_different_content(
    importer, project, tmp_path, first_row, second_row, message
):
    importer.run(project, write_rows(tmp_path, [first_row], stem="first"))
    before = stored(project)

    errors = importer.refused(project, write_rows(tmp_path, [second_row]))

    assert message in errors
    assert stored(project) == before


# The command's own errors ----------------------------------------------------------------------------


def test_the_command_refuses_an_unknown_project(tmp_path):
    path = write_rows(tmp_path, [GOOD_ROW])

    with pytest.raises(CommandError, match="no project with slug 'nowhere'"):
        call_command("import_items", "nowhere", str(path), "--no-progress")


def test_the_command_refuses_a_missing_file(project, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_items", project.slug, str(tmp_path / "absent.jsonl"), "--no-progress")


def test_the_command_refuses_random_pairing_without_a_number_of_pairs(project, tmp_path):
    path = write_rows(tmp_path, [GOOD_ROW])

    with pytest.raises(CommandError, match="pairs_per_prompt"):
        call_command("import_items", project.slug, str(path), "--no-progress", "--pairing", "random")

    assert Prompt.objects.count() == 0


# Jobs ------------------------------------------------------------------------------------------------


def create_job(project: Project, content: bytes, filename: str = "items.jsonl", **options: Any) -> ImportJob:
    return import_job_create(
        project=project,
        upload=io.BytesIO(content),
        filename=filename,
        size=len(content),
        options=ImportOptions(**options),
        created_by=None,
    )


def test_an_import_job_is_enqueued_only_after_commit(project, enqueued, django_capture_on_commit_callbacks):
    content = encode_rows(SHAPES["candidates"]["rows"], "jsonl")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = create_job(project, content)
        assert enqueued.job_ids == []

    assert len(callbacks) == 1
    callbacks[0]()
    assert enqueued.job_ids == [job.pk]
    assert job.status == ImportJob.Status.QUEUED
    assert (Path(settings.MEDIA_ROOT) / job.stored_path).read_bytes() == content
    assert Prompt.objects.count() == 0


def test_running_an_import_job_imports_the_file_and_records_the_counts(
    project, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = create_job(
            project, encode_rows(SHAPES["candidates"]["rows"], "jsonl"), pairing="random", pairs_per_prompt=1
        )
    stored_path = Path(settings.MEDIA_ROOT) / job.stored_path

    import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.counts["prompts_created"] == 2
    assert job.counts["pairs_created"] == 2  # the job's options were used: one pair per prompt
    assert job.rows_done == 2
    assert job.progress == 1.0
    assert job.started_at is not None and job.finished_at >= job.started_at
    assert job.errors == [] and job.error == "" and job.attempts == 1
    assert job.stored_path == ""
    assert not stored_path.exists()
    assert Pair.objects.filter(project=project).count() == 2


@pytest.mark.parametrize("filename", ["items.jsonl.gz", "items.parquet"])
def test_in_an_object_store_the_upload_goes_there_the_job_reads_it_back_and_it_goes_when_the_job_ends(
    project, enqueued, s3_stores, settings, filename
):
    fmt = filename.removesuffix(".gz").rsplit(".", 1)[1]
    content = encode_rows(SHAPES["candidates"]["rows"], fmt)
    if filename.endswith(".gz"):
        content = gzip.compress(content)

    job = create_job(project, content, filename=filename, pairing="random", pairs_per_prompt=1)

    assert job.stored_path.startswith("imports/") and s3_stores.keys() == [job.stored_path]
    assert store_read_bytes(UPLOADS, job.stored_path) == content
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert job.counts["pairs_created"] == 2 and job.stored_path == ""
    assert s3_stores.keys() == [] and not Path(settings.MEDIA_ROOT).exists()


def test_an_import_job_on_a_bad_file_fails_with_the_errors_and_writes_nothing(project, enqueued):
    job = create_job(project, jsonl(GOOD_ROW, {"id": "p2", "prompt": "Q?"}))

    import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.errors == [
        "items.jsonl, line 2: cannot tell the row's shape: expected 'responses' (a prompt with candidates), "
        "'response_a'/'response_b' (a ready pair) or 'chosen'/'rejected' (preference data)"
    ]
    assert job.error == job.errors[0]
    assert job.stored_path == "" and not list((Path(settings.MEDIA_ROOT) / "imports").iterdir())
    assert job.counts == {}
    assert job.finished_at is not None
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}


def test_a_second_run_of_the_same_import_job_does_nothing(project, enqueued):
    job = create_job(project, encode_rows(SHAPES["candidates"]["rows"], "jsonl"))
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    before = (table_counts(), job.status, job.counts, job.finished_at)

    assert import_job_run(job_id=job.pk) is None

    job.refresh_from_db()
    assert (table_counts(), job.status, job.counts, job.finished_at) == before


def test_an_import_job_claimed_by_another_worker_is_left_alone(project, enqueued):
    job = create_job(project, encode_rows(SHAPES["candidates"]["rows"], "jsonl"))
    now = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING,
        attempts=1,
        worker="w1 pid 1 on elsewhere",
        heartbeat_at=now,
        started_at=now,
    )

    assert import_job_run(job_id=job.pk) is None

    assert Prompt.objects.count() == 0
    assert (Path(settings.MEDIA_ROOT) / job.stored_path).exists()


def test_it_refuses_to_queue_a_file_over_the_import_limit(project, enqueued, settings):
    settings.IMPORT_MAX_FILE_BYTES = 10

    with pytest.raises(ApplicationError) as caught:
        create_job(project, GOOD_JSONL)

    assert "over the import limit of 10 bytes" in caught.value.message
    assert caught.value.fields == {"file": ["file too large"]}
    assert ImportJob.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_an_import_refreshes_the_planners_statistics(tmp_path):
    from django.db import connection

    project = ProjectFactory()
    rows = [
        {"id": f"q{n}", "prompt": f"Q{n}?", "response_a": f"A{n}.", "response_b": f"B{n}."} for n in range(40)
    ]

    ServiceImporter().run(project, write_rows(tmp_path, rows))

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'annotate_pair'")
        assert cursor.fetchone()[0] == 40
        cursor.execute("SELECT attname FROM pg_stats WHERE tablename = 'annotate_response'")
        assert {"prompt_id", "system"} <= {name for (name,) in cursor.fetchall()}


@pytest.mark.parametrize(
    ("model", "columns", "index"),
    [
        (Prompt, ["external_id", "id", "fingerprint"], "prompt_external_id_unique_in_project"),
        (Pair, ["external_id", "response_a_id", "response_b_id"], "pair_external_id_unique_in_project"),
    ],
)
def test_stored_ids_are_looked_up_one_index_probe_each_in_a_project_the_planner_believes_empty(
    project, model, columns, index
):
    """An import fills a project after its last ANALYZE. Reading the project's range of an index and
    filtering it would reread every row of the import's earlier chunks for each chunk (quadratic)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_prompt, annotate_response, annotate_pair")
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    prompt_ids = bulk_insert(
        Prompt,
        ["project_id", "external_id", "content", "messages", "category", "metadata", "fingerprint", "created_at"],
        [(project.pk, f"id-{n}", "Question", None, "", {}, "f" * 40, moment) for n in range(3000)],
    )  # fmt: skip
    first, *others = bulk_insert(
        Response,
        ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
        [(prompt_ids[0], f"r{n}", "", f"Answer {n}", {}, "f" * 40, moment) for n in range(3001)],
    )
    bulk_insert(
        Pair,
        ["project_id", "prompt_id", "response_a_id", "response_b_id", "external_id", "is_gold", "gold_choice", "created_at"],
        [(project.pk, prompt_id, first, other, f"id-{n}", False, "", moment)
         for n, (prompt_id, other) in enumerate(zip(prompt_ids, others, strict=True))],
    )  # fmt: skip
    sql = import_storage._stored_by_external_id_sql(model, columns, key_shared=model is Prompt)

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, [[f"id-{n}" for n in range(5000)], project.pk])
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert f"Index Scan using {index}" in plan or f"Index Only Scan using {index}" in plan, plan
    assert "= wanted.external_id" in plan.split("Index Cond:", 1)[-1].splitlines()[0], plan


def test_bulk_insert_stores_values_of_every_column_type_as_given(project):
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    conversation = [{"role": "user", "content": 'Tab\there, "quotes", \\ and\nnewline, ünïcödé'}]
    [prompt_id] = bulk_insert(
        Prompt,
        [
            "project_id",
            "external_id",
            "content",
            "messages",
            "category",
            "metadata",
            "fingerprint",
            "created_at",
        ],
        [(project.pk, "q1", "Tab\there\\n", conversation, "", {"k": [1, None, True]}, "f" * 40, moment)],
    )
    response_ids = bulk_insert(
        Response,
        ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
        [(prompt_id, f"r{n}", "", f"Answer\r\n{n}", {}, "f" * 40, moment) for n in range(2)],
    )
    [pair_id] = bulk_insert(
        Pair,
        ["project_id", "prompt_id", "response_a_id", "response_b_id", "external_id", "is_gold", "gold_choice", "created_at"],
        [(project.pk, prompt_id, *response_ids, "", True, "tie", moment)],
    )  # fmt: skip
    bulk_insert(
        Judgment,
        ["pair_id", "annotator_id", "origin", "choice", "strength", "criteria", "rationale", "shown_swapped",
         "duration_ms", "created_at", "updated_at"],
        [(pair_id, None, "imported", "a", 3, {"safety": "tie"}, "", True, None, moment, moment)],
    )  # fmt: skip

    prompt = Prompt.objects.get(pk=prompt_id)
    assert (prompt.content, prompt.messages, prompt.metadata) == (
        "Tab\there\\n",
        conversation,
        {"k": [1, None, True]},
    )
    assert [r.content for r in Response.objects.filter(pk__in=response_ids)] == ["Answer\r\n0", "Answer\r\n1"]
    pair = Pair.objects.get(pk=pair_id)
    assert (pair.is_gold, pair.gold_choice, pair.created_at) == (True, "tie", moment)
    judgment = Judgment.objects.get(pair=pair)
    assert (judgment.strength, judgment.criteria, judgment.shown_swapped, judgment.duration_ms) == (
        3,
        {"safety": "tie"},
        True,
        None,
    )


EMPTY_RESPONSE_ROWS = [
    {"id": "pairs", "prompt": "Say nothing.", "response_a": "", "response_b": "Nothing."},
    {"id": "candidates", "prompt": "Stay quiet.", "responses": [{"content": ""}, {"content": "Shh."}]},
    {"id": "trl", "prompt": "Be brief.", "chosen": "Brief.", "rejected": ""},
    {
        "id": "trl-chat",
        "prompt": [{"role": "user", "content": "Answer?"}],
        "chosen": [{"role": "assistant", "content": ""}],
        "rejected": [{"role": "assistant", "content": "Yes."}],
    },
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_an_empty_response_is_a_response_in_every_shape(project, tmp_path, fmt):
    for row in EMPTY_RESPONSE_ROWS:
        if fmt == "csv" and isinstance(row.get("prompt"), list):
            continue  # (CSV rows hold one shape per file's columns; the chat row is covered by the others)
        ServiceImporter().run(project, write_rows(tmp_path, [row], fmt, stem=row["id"]))
    pairs = Pair.objects.filter(project=project).select_related("prompt", "response_a", "response_b")
    empty = {
        pair.prompt.content: (pair.response_a.content, pair.response_b.content)
        for pair in pairs
        if "" in (pair.response_a.content, pair.response_b.content)
    }
    expected = {"Say nothing.": ("", "Nothing."), "Stay quiet.": ("", "Shh."), "Be brief.": ("Brief.", "")}
    assert {prompt: empty[prompt] for prompt in expected} == expected
    assert Response.objects.filter(prompt__project=project, content="").count() == (3 if fmt == "csv" else 4)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "p", "response_a": ["a"], "response_b": "b"}, "'response_a' must be text, got list"),
        ({"prompt": "p", "response_a": "a", "response_b": True}, "'response_b' must be text, got bool"),
        (
            {"prompt": "p", "responses": [{"content": ""}, {"content": {"text": "b"}}]},
            "'responses[1]': 'content' must be text, got dict",
        ),
    ],
)
def test_a_response_that_is_not_text_is_refused_naming_the_row_and_the_field(project, tmp_path, row, message):
    errors = ServiceImporter().refused(project, write_rows(tmp_path, [row]))

    assert errors == f"items.jsonl, line 1: {message}"
    assert table_counts() == {"Prompt": 0, "Response": 0, "Pair": 0, "Judgment": 0}
