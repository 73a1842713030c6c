"""The quality dashboard over HTTP: the agreement API, the page, its drill-down and CSV downloads, and plotly
served from the installed package."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.test import Client
from rest_framework.test import APIClient

from annotate.models import AgreementSnapshot, Membership
from annotate.services.agreement import agreement_snapshot_refresh
from tests.annotate.quality_data import GOLD_PAIRS, ORDINARY_PAIRS, Crafted, crafted_project, judge
from tests.annotate.test_api import assert_error_shape
from tests.factories import MembershipFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = ["annotator", "lead", "engineer", "outsider", "anonymous", "admin"]


@pytest.fixture
def crafted() -> Crafted:
    project = crafted_project()
    for role in ("lead", "engineer"):
        MembershipFactory(project=project.project, user=UserFactory(username=f"the-{role}"), role=role)
    MembershipFactory(user=UserFactory(username="outsider"), role=Membership.Role.LEAD)
    UserFactory(username="site-admin", is_staff=True, is_superuser=True)
    return project


def user_for(role: str):
    from django.contrib.auth import get_user_model

    username = {"annotator": "ann", "lead": "the-lead", "engineer": "the-engineer"}.get(role, role)
    return get_user_model().objects.get(username="site-admin" if role == "admin" else username)


def api(role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(user_for(role))
    return client


def page(role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(user_for(role))
    return client


# The API -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"), list(zip(ROLES, (403, 200, 200, 404, 401, 200), strict=True)), ids=ROLES
)
def test_the_agreement_endpoint_is_for_leads_and_engineers(crafted, role, expected):
    response = api(role).get(f"/api/projects/{crafted.project.pk}/agreement/")

    assert response.status_code == expected, response.content
    if expected >= 400:
        assert_error_shape(response, expected)
        assert not AgreementSnapshot.objects.exists()


@pytest.mark.parametrize(
    ("role", "expected"), list(zip(ROLES, (403, 202, 202, 404, 401, 202), strict=True)), ids=ROLES
)
def test_the_refresh_endpoint_is_for_leads_and_engineers(
    crafted, role, expected, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(role).post(f"/api/projects/{crafted.project.pk}/agreement/refresh/")

    assert response.status_code == expected, response.content
    if expected >= 400:
        assert_error_shape(response, expected)
        assert callbacks == []
    else:
        assert response.json()["queued"] is True
        assert len(callbacks) == 1  # enqueued only once the transaction commits


def test_the_agreement_endpoint_computes_a_first_snapshot_then_reads_the_latest(crafted):
    first = api("lead").get(f"/api/projects/{crafted.project.pk}/agreement/").json()
    second = api("engineer").get(f"/api/projects/{crafted.project.pk}/agreement/").json()

    assert AgreementSnapshot.objects.count() == 1
    assert first == second
    assert set(first) == {
        "computed_at", "judgment_count", "last_judgment_at", "seconds", "summary", "alpha", "criteria",
        "percent_agreement", "fleiss", "kappa", "annotators", "groups", "contested", "over_time", "thresholds",
        "flags", "training_gate", "adjudication",
    }  # fmt: skip
    assert first["judgment_count"] == first["summary"]["judgments"] == 5 * ORDINARY_PAIRS + 4 * GOLD_PAIRS
    assert set(first["alpha"]) == {"nominal", "ordinal", "interval"}
    assert -1 <= first["alpha"]["nominal"]["estimate"] <= 1
    lefty = next(row for row in first["annotators"] if row["username"] == "lefty")
    assert lefty["left_share"] == 1.0 and lefty["flags"] == ["position_bias"]
    assert first["training_gate"]["ok"] is False
    assert {flag["kind"] for flag in first["flags"]} >= {"position_bias", "gold_accuracy"}


def test_the_api_reports_flags_against_the_current_thresholds(crafted):
    agreement_snapshot_refresh(project_id=crafted.project.pk)
    crafted.project.max_position_bias = 1.0
    crafted.project.min_gold_accuracy = 0.0
    crafted.project.target_alpha = -1.0
    crafted.project.save()

    body = api("lead").get(f"/api/projects/{crafted.project.pk}/agreement/").json()

    assert body["flags"] == [] and body["training_gate"] == {"ok": True, "reasons": []}
    assert AgreementSnapshot.objects.count() == 1


def test_a_refresh_with_nothing_new_queues_nothing(crafted, django_capture_on_commit_callbacks):
    agreement_snapshot_refresh(project_id=crafted.project.pk)

    with django_capture_on_commit_callbacks() as callbacks:
        response = api("lead").post(f"/api/projects/{crafted.project.pk}/agreement/refresh/")

    assert response.status_code == 202
    assert response.json()["queued"] is False
    assert callbacks == []


# The page ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"), list(zip(ROLES, (403, 200, 200, 404, 302, 200), strict=True)), ids=ROLES
)
def test_the_quality_page_is_for_leads_and_engineers(crafted, role, expected):
    response = page(role).get(f"/projects/{crafted.project.slug}/quality/")

    assert response.status_code == expected


def test_the_quality_page_shows_the_headline_the_flags_and_the_charts(crafted):
    response = page("lead").get(f"/projects/{crafted.project.slug}/quality/")

    html = response.content.decode()
    alpha = AgreementSnapshot.objects.get().data["alpha"]["nominal"]["estimate"]
    assert f"{alpha:.3f}" in html
    assert "Training gate" in html and "Closed" in html
    row = r'<tr class="flagged">\s*<td class="cell-title" data-value="{0}">{0}<span class="badge flag">{1}</span></td>'
    assert re.search(row.format("lefty", "Position bias"), html)
    assert re.search(row.format("guesser", "Gold accuracy"), html)
    assert not re.search(r'<tr class="flagged">\s*<td class="cell-title" data-value="ann">', html)
    for chart in ("chart-over-time", "chart-kappa", "chart-position"):
        assert f'id="{chart}"' in html
    assert 'id="quality-data"' in html
    assert f'href="/projects/{crafted.project.slug}/quality/"' in html and ">Quality</a>" in html
    assert not re.search(r"https?://|//cdn", html.split("<body", 1)[0], re.IGNORECASE)


def test_the_quality_tab_is_not_offered_to_annotators(crafted):
    html = page("annotator").get(f"/projects/{crafted.project.slug}/").content.decode()

    assert "/quality/" not in html


def test_the_page_loads_plotly_from_the_installed_package(crafted, settings):
    html = page("engineer").get(f"/projects/{crafted.project.slug}/quality/").content.decode()

    scripts = re.findall(r'<script src="([^"]+)"', html)
    plotly_url = f"{django_settings.STATIC_URL}vendor/plotly.min.js"
    assert plotly_url in scripts
    for script in scripts:
        assert script.startswith(django_settings.STATIC_URL), script
        assert finders.find(script.removeprefix(django_settings.STATIC_URL)), script
    found = finders.find("vendor/plotly.min.js")
    assert found and found.endswith("plotly/package_data/plotly.min.js")

    # Served locally: WhiteNoise (as under runserver) finds it through the finder.
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    response = Client().get(plotly_url)
    assert response.status_code == 200
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()


def test_the_refresh_button_queues_a_refresh_after_commit(crafted, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = page("lead").post(f"/projects/{crafted.project.slug}/quality/refresh/", follow=True)

    assert response.redirect_chain[-1][0] == f"/projects/{crafted.project.slug}/quality/"
    assert "A refresh is queued" in response.content.decode()
    assert len(callbacks) == 1


def test_an_empty_project_has_a_quality_page_too():
    membership = MembershipFactory(role=Membership.Role.LEAD)
    client = Client()
    client.force_login(membership.user)

    response = client.get(f"/projects/{membership.project.slug}/quality/")

    assert response.status_code == 200
    assert "Not measurable yet" in response.content.decode()


# Drill-down --------------------------------------------------------------------------------------------


def test_the_drill_down_shows_every_vote_and_escapes_scripts(crafted):
    pair = PairFactory(
        prompt__project=crafted.project,
        prompt__content="Which is <b>safer</b>?",
        response_a__content="<script>alert('a')</script> **bold**",
        response_b__content="Plain <img src=x onerror=alert(1)>",
    )
    judge(
        pair, crafted.users["ann"], "a", 2, swapped=True, minutes=1, rationale="<script>alert('r')</script>"
    )
    judge(pair, crafted.users["ben"], "b", 1, swapped=False, minutes=1, rationale="B is *kinder*")

    response = page("lead").get(
        f"/projects/{crafted.project.slug}/quality/pairs/{pair.pk}/", HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    html = response.content.decode()
    # Raw HTML in untrusted text is shown as text, never run.
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&lt;img" in html
    assert "<strong>bold</strong>" in html and "<em>kinder</em>" in html
    assert "ann" in html and "ben" in html
    assert "A is better" in html and "B is better" in html
    assert "<html" not in html  # a partial, not a page


def test_the_drill_down_refuses_pairs_of_other_projects_and_annotators(crafted):
    other = PairFactory()

    assert page("lead").get(f"/projects/{crafted.project.slug}/quality/pairs/{other.pk}/").status_code == 404
    pair = crafted.pairs[0]
    assert (
        page("annotator").get(f"/projects/{crafted.project.slug}/quality/pairs/{pair.pk}/").status_code == 403
    )


# CSV ---------------------------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize(
    "table", ["alpha", "annotators", "kappa", "criteria", "groups", "contested", "over-time"]
)
def test_every_table_downloads_as_csv(crafted, table):
    rows = read_csv(page("engineer").get(f"/projects/{crafted.project.slug}/quality/{table}.csv"))

    assert rows[0]
    if table != "groups":  # no group attributes in the crafted project
        assert len(rows) > 1


def test_the_annotator_csv_has_one_row_per_annotator_with_flags(crafted):
    rows = read_csv(page("lead").get(f"/projects/{crafted.project.slug}/quality/annotators.csv"))

    header, *body = rows
    assert header[0] == "username" and header[-1] == "flags"
    by_name = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert set(by_name) == {"ann", "ben", "cat", "guesser", "lefty"}
    assert by_name["lefty"]["flags"] == "position_bias"
    assert float(by_name["lefty"]["left_share"]) == 1.0
    assert by_name["guesser"]["flags"] == "gold_accuracy"


def test_csv_cells_cannot_become_spreadsheet_formulas(crafted):
    pair = PairFactory(prompt__project=crafted.project, prompt__content="=HYPERLINK('http://evil')")
    for name in ("ann", "ben"):
        judge(pair, crafted.users[name], "a" if name == "ann" else "b", 1, swapped=False, minutes=1)

    rows = read_csv(page("lead").get(f"/projects/{crafted.project.slug}/quality/contested.csv"))

    prompts = [row[-1] for row in rows[1:]]
    assert "'=HYPERLINK('http://evil')" in prompts


def test_csv_downloads_check_the_role_and_the_table(crafted):
    assert (
        page("annotator").get(f"/projects/{crafted.project.slug}/quality/annotators.csv").status_code == 403
    )
    assert page("lead").get(f"/projects/{crafted.project.slug}/quality/secrets.csv").status_code == 404
