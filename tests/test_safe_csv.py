"""Every CSV Palate writes goes through palate/safe_csv.py: text a spreadsheet would run as a formula comes out
with a leading ', numbers the product computed stay numbers. Checked on the writer, on each download that
carries imported text (the leaderboard from the API, the page and the public link; the quality tables), and
on the source, so that a new CSV cannot bypass the writer."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotate.services.leaderboard import leaderboard_public_link_set
from palate.safe_csv import csv_text, guarded_cell
from tests.stored_payloads import FORMULAS, MARKUP, Stored, stored_payload_project

ROOT = Path(__file__).resolve().parent.parent
# Source folders of the product (tests, benchmarks and the virtual environment are not the product).
PRODUCT = ("annotate", "palate", "rewardtrain", "scripts")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("-2+3", "'-2+3"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-2.3", "'-2.3"),  # text, even when it looks like a number: it came from someone
        ("plain = text", "plain = text"),
        ("", ""),
        (-2.3, -2.3),  # a number the product computed stays a number
        (-7, -7),
        (None, None),
    ],
)
def test_a_cell_is_guarded_only_when_it_is_text_a_spreadsheet_would_run(cell, written):
    assert guarded_cell(cell) == written


def test_the_document_reads_back_as_text_and_numbers():
    text = csv_text([["system", "rating"], ['=HYPERLINK("http://x")', -2.3], [None, 1000]])
    assert list(csv.reader(io.StringIO(text))) == [
        ["system", "rating"],
        ['\'=HYPERLINK("http://x")', "-2.3"],
        ["", "1000"],
    ]


def test_no_csv_is_written_outside_the_guarded_writer():
    writers = re.compile(r"\bcsv\.(writer|DictWriter)\(|\bfrom csv import\b")
    found = []
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative == "palate/safe_csv.py":
                continue
            if writers.search(path.read_text()):
                found.append(relative)
    assert found == []


# The leaderboard's three CSV downloads -----------------------------------------------------------------


def _rows(response) -> list[list[str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


def _download(stored: Stored, where: str):
    if where == "api":
        client = APIClient()
        client.force_authenticate(stored.engineer)
        return client.get(f"/api/projects/{stored.project.pk}/leaderboard/?format=csv")
    if where == "public link":
        token = leaderboard_public_link_set(project=stored.project, enabled=True).leaderboard_public_token
        return Client().get(f"/leaderboard/public/{token}/?download=csv")
    client = Client()
    client.force_login(stored.lead)
    return client.get(f"/projects/{stored.project.slug}/{where}")


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["api", "leaderboard/?download=csv", "public link"])
def test_the_leaderboard_csv_guards_imported_system_names(where):
    header, *rows = _rows(_download(stored_payload_project(), where))
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert {row["system"] for row in table} == {"'" + formula for formula in FORMULAS} | {MARKUP, "plain"}
    for row in table:  # the numbers stay numbers
        assert row["rank"].isdigit() and float(row["rating"]) > 0 and float(row["lower"]) > 0


@pytest.mark.django_db
def test_the_quality_tables_guard_imported_text():
    header, *rows = _rows(_download(stored_payload_project(), "quality/contested.csv"))
    prompts = [row[header.index("prompt")] for row in rows]
    assert any(prompt.startswith("'" + FORMULAS[0]) for prompt in prompts), prompts
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)
