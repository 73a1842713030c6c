"""Leaderboards: the service against the rating math on the same arrays, filters, both-bad handling, the API's
permissions, parameters and CSV, the page and its public link, and active comparison selection."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotate.models import Judgment, Membership, Pair, Project
from annotate.services.assignment import pair_claim_next
from annotate.services.leaderboard import (
    Battles,
    leaderboard_compute,
    leaderboard_public_link_set,
    project_battles,
)
from annotate.services.selection import (
    REFRESH_EVERY_JUDGMENTS,
    pair_priorities_due,
    pair_priorities_projects_due,
    pair_priorities_refresh,
)
from annotate.stats.ratings import (
    SEPARATION_L2,
    Outcome,
    build_outcome_table,
    fit_crowd_bt,
    fit_ratings,
    online_elo,
)
from annotate.stats.selection import (
    PRIOR_PRECISION,
    difference_variance,
    fisher_covariance,
    order_uncertainty,
    pair_priorities,
)
from palate.errors import ApplicationError
from tests.factories import (
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SYSTEMS = ["alpha", "beta", "delta", "gamma"]  # sorted: the service numbers systems in this order
STRENGTH = {"alpha": 1.2, "beta": 0.4, "gamma": -0.3, "delta": -1.1}
CODE = {"a": Outcome.A_WINS, "b": Outcome.B_WINS, "tie": Outcome.TIE, "both_bad": Outcome.BOTH_BAD}


def make_pair(project: Project, system_a: str, system_b: str, category: str = "") -> Pair:
    prompt = PromptFactory(project=project, category=category)
    return PairFactory(
        prompt=prompt,
        response_a=ResponseFactory(prompt=prompt, system=system_a),
        response_b=ResponseFactory(prompt=prompt, system=system_b),
    )


@dataclass
class Vote:
    system_a: str
    system_b: str
    choice: str
    annotator: int
    category: str
    helpfulness: str | None


@dataclass
class Crafted:
    project: Project
    annotators: list[Any]
    votes: list[Vote]
    lead: Any
    engineer: Any


def craft(both_bad_as_tie: bool = True, pairs: int = 60, seed: int = 3) -> Crafted:
    """Four systems, three annotators (two in fr-FR), two categories; each pair judged by two annotators,
    votes drawn from Bradley-Terry with ties and both-bad votes, helpfulness usually agreeing with the choice."""
    project = ProjectFactory(criteria=["helpfulness", "safety"], both_bad_as_tie=both_bad_as_tie)
    locales = ["fr-FR", "fr-FR", "en-GB"]
    annotators = []
    for locale in locales:
        user = UserFactory()
        MembershipFactory(
            user=user, project=project, role=Membership.Role.ANNOTATOR, attributes={"locale": locale}
        )
        annotators.append(user)
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    engineer = MembershipFactory(project=project, role=Membership.Role.ENGINEER).user
    generator = random.Random(seed)
    votes: list[Vote] = []
    judgments = []
    for number in range(pairs):
        system_a, system_b = generator.sample(SYSTEMS, 2)
        category = "coding" if number % 3 == 0 else "chat"
        pair = make_pair(project, system_a, system_b, category)
        for annotator in generator.sample(range(3), 2):
            draw = generator.random()
            if draw < 0.1:
                choice = "tie"
            elif draw < 0.16:
                choice = "both_bad"
            else:
                difference = STRENGTH[system_a] - STRENGTH[system_b]
                choice = "a" if generator.random() < 1 / (1 + np.exp(-difference)) else "b"
            helpfulness = choice if generator.random() < 0.8 else generator.choice(["a", "b", "tie"])
            if number % 17 == 5:
                helpfulness = None  # judged before the criterion existed
            criteria = {} if helpfulness is None else {"helpfulness": helpfulness, "safety": "tie"}
            votes.append(Vote(system_a, system_b, choice, annotator, category, helpfulness))
            judgments.append(
                Judgment(pair=pair, annotator=annotators[annotator], choice=choice, criteria=criteria)
            )
    Judgment.objects.bulk_create(judgments)
    return Crafted(project, annotators, votes, lead, engineer)


def arrays(votes: list[Vote], *, criterion: bool = False) -> tuple[np.ndarray, ...]:
    kept = [vote for vote in votes if not criterion or vote.helpfulness is not None]
    model_a = np.array([SYSTEMS.index(vote.system_a) for vote in kept])
    model_b = np.array([SYSTEMS.index(vote.system_b) for vote in kept])
    outcome = np.array([CODE[vote.helpfulness if criterion else vote.choice] for vote in kept])
    annotator = np.array([vote.annotator for vote in kept])
    return model_a, model_b, outcome, annotator


def by_system(board: dict) -> dict[str, dict]:
    return {row["system"]: row for row in board["rows"]}


# ------------------------------------------------------------------------------------------------------------
# The service
# ------------------------------------------------------------------------------------------------------------


def test_ratings_equal_the_math_on_the_same_arrays():
    crafted = craft()
    board = leaderboard_compute(project=crafted.project)
    model_a, model_b, outcome, annotator = arrays(crafted.votes)
    expected = fit_ratings(build_outcome_table(model_a, model_b, outcome, 4), systems=SYSTEMS)
    rows = by_system(board)
    assert board["judgments"] == len(crafted.votes) and board["skipped"] == {}
    for index, system in enumerate(SYSTEMS):
        assert rows[system]["rating"] == pytest.approx(expected.rating[index], abs=0.006)
        assert rows[system]["lower"] == pytest.approx(expected.lower[index], abs=0.006)
        assert rows[system]["upper"] == pytest.approx(expected.upper[index], abs=0.006)
        assert rows[system]["rank"] == expected.rank[index]
        assert rows[system]["battles"] == expected.battles[index]
        assert rows[system]["win_rate"] == pytest.approx(expected.win_rate[index], abs=1e-4)
    # Rows run from the best rating down, and the matrices follow the rows.
    assert [row["rating"] for row in board["rows"]] == sorted(
        (row["rating"] for row in board["rows"]), reverse=True
    )
    assert board["systems"] == [row["system"] for row in board["rows"]]
    order = [SYSTEMS.index(system) for system in board["systems"]]
    assert np.allclose(board["predicted_win_rate"], expected.win_probability[np.ix_(order, order)], atol=1e-4)

    crowd = fit_crowd_bt(
        model_a, model_b, outcome, annotator, 4, systems=SYSTEMS, l2=SEPARATION_L2, tolerance=1e-6
    )
    for index, system in enumerate(SYSTEMS):
        assert rows[system]["crowd_bt_rating"] == pytest.approx(crowd.ratings.rating[index], abs=0.006)
    assert board["crowd_bt"]["annotators"] == 3

    trajectory = online_elo(model_a, model_b, outcome, 4, k_factor=4.0)
    series = {line["system"]: line["rating"] for line in board["over_time"]["series"]}
    assert board["over_time"]["judgments"][-1] == len(crafted.votes)
    for index, system in enumerate(SYSTEMS):
        assert series[system][-1] == pytest.approx(trajectory.ratings[index], abs=0.006)
    assert all(board["over_time"]["at"])


def test_the_observed_matrix_counts_each_meeting_and_leaves_pairs_that_never_met_empty():
    project = ProjectFactory()
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    for choice in ("a", "a", "b", "tie"):
        Judgment.objects.create(pair=make_pair(project, "alpha", "beta"), annotator=annotator, choice=choice)
    Judgment.objects.create(pair=make_pair(project, "beta", "gamma"), annotator=annotator, choice="a")
    board = leaderboard_compute(project=project)
    position = {system: index for index, system in enumerate(board["systems"])}
    observed = board["observed_win_rate"]
    assert observed[position["alpha"]][position["beta"]] == pytest.approx(2.5 / 4)
    assert observed[position["beta"]][position["alpha"]] == pytest.approx(1.5 / 4)
    assert observed[position["alpha"]][position["gamma"]] is None
    assert board["battle_matrix"][position["alpha"]][position["beta"]] == 4


def test_imported_labels_and_judgments_that_cannot_count_are_left_out_and_counted():
    project = ProjectFactory()
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    Judgment.objects.create(pair=make_pair(project, "alpha", "beta"), annotator=annotator, choice="a")
    Judgment.objects.create(pair=make_pair(project, "alpha", "beta"), annotator=annotator, choice="b")
    Judgment.objects.create(
        pair=make_pair(project, "alpha", "beta"), annotator=None, origin=Judgment.Origin.IMPORTED, choice="a"
    )
    Judgment.objects.create(pair=make_pair(project, "alpha", "alpha"), annotator=annotator, choice="a")
    Judgment.objects.create(pair=make_pair(project, "", "beta"), annotator=annotator, choice="a")
    board = leaderboard_compute(project=project)
    assert board["judgments"] == 2
    assert board["skipped"] == {"same_system": 1, "no_system": 1}
    assert any("same system" in warning for warning in board["warnings"])
    assert any("no system name" in warning for warning in board["warnings"])


def test_a_criterion_rates_the_votes_on_that_criterion():
    crafted = craft()
    board = leaderboard_compute(project=crafted.project, criterion="helpfulness")
    model_a, model_b, outcome, _ = arrays(crafted.votes, criterion=True)
    expected = fit_ratings(build_outcome_table(model_a, model_b, outcome, 4), systems=SYSTEMS)
    rows = by_system(board)
    for index, system in enumerate(SYSTEMS):
        assert rows[system]["rating"] == pytest.approx(expected.rating[index], abs=0.006)
    missing = sum(vote.helpfulness is None for vote in crafted.votes)
    assert missing and board["skipped"] == {"no_vote": missing}
    assert board["judgments"] == len(crafted.votes) - missing


def test_a_criterion_where_one_side_always_wins_rates_it_first():
    project = ProjectFactory(criteria=["safety"])
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    for index in range(6):
        # Overall, beta wins; on safety, alpha wins (with one loss, so the ratings are identified).
        safety = "b" if index == 0 else "a"
        Judgment.objects.create(
            pair=make_pair(project, "alpha", "beta"),
            annotator=annotator,
            choice="b",
            criteria={"safety": safety},
        )
    assert leaderboard_compute(project=project)["rows"][0]["system"] == "beta"
    assert leaderboard_compute(project=project, criterion="safety")["rows"][0]["system"] == "alpha"


def test_a_group_keeps_only_the_votes_of_annotators_with_that_attribute():
    crafted = craft()
    board = leaderboard_compute(project=crafted.project, group="locale=fr-FR")
    french = [vote for vote in crafted.votes if vote.annotator in (0, 1)]
    model_a, model_b, outcome, _ = arrays(french)
    expected = fit_ratings(build_outcome_table(model_a, model_b, outcome, 4), systems=SYSTEMS)
    assert board["judgments"] == len(french)
    rows = by_system(board)
    for index, system in enumerate(SYSTEMS):
        assert rows[system]["rating"] == pytest.approx(expected.rating[index], abs=0.006)
    assert leaderboard_compute(project=crafted.project, group="locale=en-GB")["judgments"] == len(
        crafted.votes
    ) - len(french)


def test_a_category_keeps_only_its_prompts():
    crafted = craft()
    board = leaderboard_compute(project=crafted.project, category="coding")
    coding = [vote for vote in crafted.votes if vote.category == "coding"]
    model_a, model_b, outcome, _ = arrays(coding)
    expected = fit_ratings(build_outcome_table(model_a, model_b, outcome, 4), systems=SYSTEMS)
    assert board["judgments"] == len(coding)
    rows = by_system(board)
    for index, system in enumerate(SYSTEMS):
        assert rows[system]["rating"] == pytest.approx(expected.rating[index], abs=0.006)


def test_the_filters_list_criteria_groups_categories_and_systems():
    crafted = craft(pairs=6)
    filters = leaderboard_compute(project=crafted.project)["filters"]
    assert filters["criteria"] == ["helpfulness", "safety"]
    assert filters["groups"] == ["locale=en-GB", "locale=fr-FR"]
    assert filters["group_keys"] == ["locale"]
    assert filters["categories"] == ["chat", "coding"]
    assert filters["systems"] == SYSTEMS


@pytest.mark.parametrize("both_bad_as_tie", [True, False])
def test_both_bad_follows_the_project_setting(both_bad_as_tie):
    crafted = craft(both_bad_as_tie=both_bad_as_tie)
    board = leaderboard_compute(project=crafted.project)
    both_bad = sum(vote.choice == "both_bad" for vote in crafted.votes)
    assert both_bad
    model_a, model_b, outcome, _ = arrays(crafted.votes)
    expected = fit_ratings(
        build_outcome_table(model_a, model_b, outcome, 4, both_bad_as_tie=both_bad_as_tie), systems=SYSTEMS
    )
    rows = by_system(board)
    for index, system in enumerate(SYSTEMS):
        assert rows[system]["rating"] == pytest.approx(expected.rating[index], abs=0.006)
    if both_bad_as_tie:
        assert board["judgments"] == len(crafted.votes) and "both_bad" not in board["skipped"]
    else:
        assert (
            board["judgments"] == len(crafted.votes) - both_bad and board["skipped"]["both_bad"] == both_bad
        )


def test_elo_davidson_bootstrap_anchor_and_split_by_all_produce_a_board():
    crafted = craft()
    elo = leaderboard_compute(project=crafted.project, method="elo", rounds=20)
    assert elo["options"]["interval"] == "bootstrap" and len(elo["rows"]) == 4
    assert all(row["lower"] <= row["rating"] <= row["upper"] for row in elo["rows"])
    davidson = leaderboard_compute(project=crafted.project, ties="davidson")
    assert davidson["tie_parameter"] is not None and davidson["tie_parameter"] > 0
    bootstrap = leaderboard_compute(project=crafted.project, interval="bootstrap", rounds=50)
    assert all(row["lower"] <= row["rating"] <= row["upper"] for row in bootstrap["rows"])
    anchored = leaderboard_compute(project=crafted.project, anchor="gamma")
    assert by_system(anchored)["gamma"]["rating"] == pytest.approx(1000.0)
    split = leaderboard_compute(project=crafted.project, split_by="locale")
    groups = {group["group"]: group for group in split["by_group"]["groups"]}
    assert set(groups) == {"locale=fr-FR", "locale=en-GB"}
    assert groups["locale=fr-FR"]["annotators"] == 2
    weighted = leaderboard_compute(project=crafted.project, weighting="crowd_bt")
    assert all(row["rating"] == row["crowd_bt_rating"] for row in weighted["rows"])


def test_an_empty_project_says_there_is_nothing_to_rate():
    board = leaderboard_compute(project=ProjectFactory())
    assert board["rows"] == [] and board["judgments"] == 0
    assert any("nothing to rate" in warning for warning in board["warnings"])


def test_disconnected_systems_give_a_warning_not_a_failure():
    project = ProjectFactory()
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    for choice in ("a", "b", "a"):
        Judgment.objects.create(pair=make_pair(project, "alpha", "beta"), annotator=annotator, choice=choice)
        Judgment.objects.create(pair=make_pair(project, "gamma", "delta"), annotator=annotator, choice=choice)
    board = leaderboard_compute(project=project)
    assert len(board["rows"]) == 4
    assert any("disconnected" in warning for warning in board["warnings"])
    assert all(np.isfinite(row["rating"]) for row in board["rows"])


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"method": "glicko"}, "method"),
        ({"interval": "jackknife"}, "interval"),
        ({"method": "elo", "interval": "sandwich"}, "interval"),
        ({"ties": "davidson", "method": "elo"}, "ties"),
        ({"rounds": 0}, "rounds"),
        ({"weighting": "crowd_bt", "interval": "bootstrap"}, "weighting"),
        ({"criterion": "honesty"}, "criterion"),
        ({"group": "locale"}, "group"),
        ({"group": "locale=de-DE"}, "group"),
        ({"category": "poetry"}, "category"),
        ({"anchor": "omega"}, "anchor"),
        ({"split_by": "expertise"}, "split_by"),
    ],
)
def test_bad_options_are_refused_naming_the_field(options, field):
    crafted = craft(pairs=4)
    with pytest.raises(ApplicationError) as failure:
        leaderboard_compute(project=crafted.project, **options)
    assert field in failure.value.fields


def test_battles_arrive_in_judgment_order_as_integers():
    crafted = craft(pairs=10)
    battles = project_battles(project=crafted.project)
    assert isinstance(battles, Battles)
    assert battles.systems == SYSTEMS
    assert np.all(np.diff(battles.judgment_id) > 0)
    assert battles.model_a.dtype == np.int64
    expected_a, expected_b, expected_outcome, _ = arrays(crafted.votes)
    assert battles.model_a.tolist() == expected_a.tolist()
    assert battles.model_b.tolist() == expected_b.tolist()
    assert battles.outcome.tolist() == expected_outcome.tolist()


# ------------------------------------------------------------------------------------------------------------
# The API
# ------------------------------------------------------------------------------------------------------------


def api_client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_the_api_answers_leads_engineers_and_admins_and_refuses_everyone_else():
    crafted = craft(pairs=8)
    url = f"/api/projects/{crafted.project.pk}/leaderboard/"
    outsider = MembershipFactory(role=Membership.Role.LEAD).user
    admin = UserFactory(is_staff=True, is_superuser=True)
    for user in (crafted.lead, crafted.engineer, admin):
        response = api_client(user).get(url)
        assert response.status_code == 200, response.content
        assert {row["system"] for row in response.json()["rows"]} == set(SYSTEMS)
    forbidden = api_client(crafted.annotators[0]).get(url)
    assert forbidden.status_code == 403
    assert "alpha" not in forbidden.content.decode()
    assert api_client(outsider).get(url).status_code == 404
    assert api_client().get(url).status_code == 401
    assert api_client(crafted.lead).get("/api/projects/999999/leaderboard/").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("method=glicko", "method"),
        ("interval=nope", "interval"),
        ("rounds=0", "rounds"),
        ("rounds=many", "rounds"),
        ("ties=third", "ties"),
        ("weighting=heavy", "weighting"),
        ("method=elo&interval=sandwich", "interval"),
        ("criterion=honesty", "criterion"),
        ("group=locale%3Dde-DE", "group"),
        ("category=poetry", "category"),
        ("anchor=omega", "anchor"),
        ("format=csv&method=glicko", "method"),
        ("method=", "method"),
        ("weighting=&ties=davidson", "weighting"),
        ("rounds=", "rounds"),
    ],
)
def test_the_api_refuses_bad_parameters_with_400_naming_the_field(query, field):
    crafted = craft(pairs=4)
    response = api_client(crafted.lead).get(f"/api/projects/{crafted.project.pk}/leaderboard/?{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert field in error["fields"] and error["message"]


def test_the_api_takes_its_parameters_from_the_query_string():
    crafted = craft()
    response = api_client(crafted.engineer).get(
        f"/api/projects/{crafted.project.pk}/leaderboard/?criterion=helpfulness&group=locale%3Dfr-FR&category=chat&ties=davidson&anchor=beta"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["options"]["criterion"] == "helpfulness"
    assert body["options"]["group"] == "locale=fr-FR"
    assert body["options"]["category"] == "chat"
    assert body["options"]["ties"] == "davidson"
    assert by_system(body)["beta"]["rating"] == pytest.approx(1000.0)
    expected = sum(
        vote.annotator in (0, 1) and vote.category == "chat" and vote.helpfulness is not None
        for vote in crafted.votes
    )
    assert body["judgments"] == expected


def test_the_api_downloads_csv():
    crafted = craft(pairs=8)
    response = api_client(crafted.lead).get(f"/api/projects/{crafted.project.pk}/leaderboard/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    lines = response.content.decode().strip().splitlines()
    assert (
        lines[0]
        == "rank,system,rating,lower,upper,battles,win_rate,crowd_bt_rating,crowd_bt_lower,crowd_bt_upper,crowd_bt_rank"
    )
    assert len(lines) == 5
    assert lines[1].split(",")[0] == "1"


def test_an_options_request_for_the_csv_describes_the_endpoint_in_json():
    crafted = craft(pairs=4)
    response = api_client(crafted.lead).options(f"/api/projects/{crafted.project.pk}/leaderboard/?format=csv")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["name"]


# ------------------------------------------------------------------------------------------------------------
# The page and the public link
# ------------------------------------------------------------------------------------------------------------


def page_client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_the_page_renders_for_leads_and_engineers_with_table_charts_and_downloads():
    crafted = craft()
    url = f"/projects/{crafted.project.slug}/leaderboard/"
    for user in (crafted.lead, crafted.engineer):
        response = page_client(user).get(url)
        assert response.status_code == 200
        html = response.content.decode()
        for system in SYSTEMS:
            assert system in html
        assert "vendor/plotly.min.js" in html and 'id="leaderboard-data"' in html
        assert 'id="chart-observed"' in html and 'id="chart-predicted"' in html and 'id="chart-time"' in html
        assert "Crowd-BT" in html and "download=csv" in html and "download=json" in html
        assert 'name="criterion"' in html and 'name="group"' in html and 'name="category"' in html
    assert "Create a public link" in page_client(crafted.lead).get(url).content.decode()
    assert "Create a public link" not in page_client(crafted.engineer).get(url).content.decode()
    tab = page_client(crafted.engineer).get(f"/projects/{crafted.project.slug}/").content.decode()
    assert url in tab


def test_the_page_refuses_annotators_and_hides_from_outsiders():
    crafted = craft(pairs=4)
    url = f"/projects/{crafted.project.slug}/leaderboard/"
    assert page_client(crafted.annotators[0]).get(url).status_code == 403
    assert page_client(MembershipFactory(role=Membership.Role.LEAD).user).get(url).status_code == 404
    anonymous = page_client().get(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    overview = page_client(crafted.annotators[0]).get(f"/projects/{crafted.project.slug}/").content.decode()
    assert url not in overview


def test_the_page_shows_filters_warnings_groups_and_bad_options():
    crafted = craft()
    url = f"/projects/{crafted.project.slug}/leaderboard/"
    response = page_client(crafted.lead).get(url + "?split_by=locale&criterion=helpfulness")
    html = response.content.decode()
    assert response.status_code == 200
    assert "By locale" in html and "locale=fr-FR" in html
    assert "left out" in html  # judgments without a helpfulness vote
    bad = page_client(crafted.lead).get(url + "?anchor=omega")
    assert bad.status_code == 400 and "unknown anchor" in bad.content.decode()
    download = page_client(crafted.lead).get(url + "?download=csv&category=coding")
    assert download["Content-Type"].startswith("text/csv") and download.content.decode().startswith("rank,")
    as_json = page_client(crafted.lead).get(url + "?download=json")
    assert as_json.json()["rows"][0]["rank"] == 1


def test_the_public_link_works_only_with_the_right_token_and_only_while_set():
    crafted = craft()
    assert page_client().get("/leaderboard/public/anything/").status_code == 404
    link = f"/projects/{crafted.project.slug}/leaderboard/public-link/"
    assert page_client(crafted.engineer).post(link, {"action": "enable"}).status_code == 403
    assert page_client(crafted.lead).post(link, {"action": "enable"}).status_code == 302
    crafted.project.refresh_from_db()
    token = crafted.project.leaderboard_public_token
    assert len(token) >= 32
    public = page_client().get(f"/leaderboard/public/{token}/")
    assert public.status_code == 200
    html = public.content.decode()
    for system in SYSTEMS:
        assert system in html
    # Nothing about annotators beyond aggregates: no names, no groups, no group filters.
    for annotator in crafted.annotators:
        assert annotator.username not in html
    assert "locale" not in html and 'name="group"' not in html
    assert public["X-Robots-Tag"] == "noindex, nofollow"
    assert page_client().get(f"/leaderboard/public/{token}/?group=locale%3Dfr-FR").status_code == 200
    assert (
        page_client().get(f"/leaderboard/public/{token}/?download=csv").content.decode().startswith("rank,")
    )
    public_json = page_client().get(f"/leaderboard/public/{token}/?download=json").json()
    assert public_json["filters"]["groups"] == [] and public_json["options"]["group"] is None
    assert page_client().get(f"/leaderboard/public/{token}x/").status_code == 404

    assert page_client(crafted.lead).post(link, {"action": "disable"}).status_code == 302
    crafted.project.refresh_from_db()
    assert crafted.project.leaderboard_public_token == ""
    assert page_client().get(f"/leaderboard/public/{token}/").status_code == 404


def test_a_new_public_link_revokes_the_old_one():
    project = ProjectFactory()
    first = leaderboard_public_link_set(project=project, enabled=True).leaderboard_public_token
    second = leaderboard_public_link_set(project=project, enabled=True).leaderboard_public_token
    assert first != second
    assert page_client().get(f"/leaderboard/public/{first}/").status_code == 404
    assert page_client().get(f"/leaderboard/public/{second}/").status_code == 200


def test_plotly_is_served_from_the_installed_package():
    from django.contrib.staticfiles import finders

    found = finders.find("vendor/plotly.min.js")
    assert found and found.endswith("plotly/package_data/plotly.min.js")


# ------------------------------------------------------------------------------------------------------------
# Active comparison selection
# ------------------------------------------------------------------------------------------------------------


def test_the_scores_prefer_close_and_uncertain_system_pairs():
    covariance = np.diag([1.0, 1.0, 0.01, 0.01])
    theta = np.array([0.0, 0.1, 0.0, 0.1])
    variance = difference_variance([0, 2], [1, 3], covariance)
    assert variance == pytest.approx([2.0, 0.02])
    gain = pair_priorities([0, 2], [1, 3], [1, 1], theta, covariance, rank_aware=False)
    assert gain[0] > gain[1]
    # Equally uncertain, but one system clearly better: its vote teaches less.
    lopsided = pair_priorities([0], [1], [1], np.array([0.0, 0.1, 0, 0]), np.eye(4), rank_aware=False)
    far = pair_priorities([0], [1], [1], np.array([0.0, 4.0, 0, 0]), np.eye(4), rank_aware=False)
    assert far[0] < lopsided[0]


def test_priorities_favour_systems_whose_order_is_still_in_doubt():
    covariance = np.eye(4) * 0.05
    # (0, 1) are level; (2, 3) are as uncertain but 2 is clearly ahead, so their order is settled.
    theta = np.array([0.0, 0.0, 1.5, -1.5])
    priority = pair_priorities([0, 2], [1, 3], [1, 1], theta, covariance)
    assert priority[0] > 10 * priority[1]
    plain = pair_priorities([0, 2], [1, 3], [1, 1], theta, covariance, rank_aware=False)
    assert plain[1] > 0 and priority[1] < plain[1]
    assert order_uncertainty([0.0, 1.0, 5.0], [1.0, 1.0, 1.0]) == pytest.approx(
        [1.0, 0.3173, 5.7e-7], rel=1e-2
    )
    assert order_uncertainty([0.0, 1.0], [0.0, 0.0]).tolist() == [1.0, 0.0]


def test_the_model_covariance_shrinks_with_comparisons_and_stays_wide_without_them():
    battles = np.zeros((3, 3))
    battles[0, 1] = battles[1, 0] = 100
    covariance = fisher_covariance(battles, np.zeros(3))
    # Var(theta_0 - theta_1) = 2 / (2 n p (1 - p) + prior precision).
    assert difference_variance([0], [1], covariance)[0] == pytest.approx(2 / (50 + PRIOR_PRECISION))
    assert difference_variance([0], [2], covariance)[0] > 100


def test_priorities_interleave_system_pairs_and_put_full_pairs_last():
    covariance = np.diag([1.0, 1.0, 0.6, 0.6])
    theta = np.zeros(4)
    # Three pairs of systems (0, 1), two of (2, 3), one full pair of (0, 1).
    system_a = np.array([0, 1, 0, 2, 2, 0])
    system_b = np.array([1, 0, 1, 3, 3, 1])
    open_slots = np.array([3, 3, 3, 3, 3, 0])
    priority = pair_priorities(system_a, system_b, open_slots, theta, covariance)
    assert priority[5] == -1.0
    # Within a system pair, later pairs wait for the votes queued ahead of them.
    assert priority[0] > priority[1] > priority[2]
    assert priority[3] > priority[4]
    # The most uncertain system pair comes first, but its third pair yields to the other pair's first.
    assert priority[0] > priority[3] > priority[2]


def test_refresh_writes_priorities_preferring_the_least_known_systems():
    project = ProjectFactory(assignment_strategy="uncertain_systems", overlap=2)
    annotators = [MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user for _ in range(2)]
    judgments = []
    for number in range(20):
        pair = make_pair(project, "alpha", "beta")
        for annotator in annotators:
            judgments.append(Judgment(pair=pair, annotator=annotator, choice="a" if number % 3 else "b"))
    Judgment.objects.bulk_create(judgments)
    Pair.objects.filter(project=project).update(slots_taken=2, judgment_count=2)
    known = make_pair(project, "alpha", "beta")
    unknown = make_pair(project, "alpha", "gamma")
    full = Pair.objects.filter(project=project).exclude(pk__in=[known.pk, unknown.pk]).first()

    changed = pair_priorities_refresh(project=project)
    assert changed > 0
    priorities = dict(Pair.objects.filter(project=project).values_list("pk", "priority"))
    assert priorities[full.pk] == -1.0
    assert priorities[unknown.pk] > priorities[known.pk] > 0
    # A second refresh with nothing new writes nothing.
    assert pair_priorities_refresh(project=project) == 0


def test_refresh_leaves_other_strategies_alone():
    project = ProjectFactory(assignment_strategy="fill")
    pair = make_pair(project, "alpha", "beta")
    assert pair_priorities_refresh(project=project) == 0
    pair.refresh_from_db()
    assert pair.priority == 0.0


def test_claims_hand_out_the_highest_priority_open_pair_first():
    project = ProjectFactory(assignment_strategy="uncertain_systems", overlap=1)
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    other = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    judgments = []
    for number in range(12):
        pair = make_pair(project, "alpha", "beta")
        judgments.append(Judgment(pair=pair, annotator=other, choice="a" if number % 4 else "b"))
    Judgment.objects.bulk_create(judgments)
    Pair.objects.filter(project=project).update(slots_taken=1, judgment_count=1)
    open_known = make_pair(project, "alpha", "beta")
    open_unknown = make_pair(project, "beta", "gamma")
    pair_priorities_refresh(project=project)
    first = pair_claim_next(project=project, annotator=annotator)
    assert first.pair_id == open_unknown.pk
    second = pair_claim_next(project=project, annotator=annotator, after=first.pk)
    assert second.pair_id == open_known.pk


def test_refreshes_are_due_after_enough_new_judgments():
    project = ProjectFactory(assignment_strategy="uncertain_systems")
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    pairs = [make_pair(project, "alpha", "beta") for _ in range(REFRESH_EVERY_JUDGMENTS)]
    assert project.pk in pair_priorities_projects_due()  # never refreshed
    pair_priorities_refresh(project=project)
    assert not pair_priorities_due(project=project)
    Judgment.objects.bulk_create(
        [Judgment(pair=pair, annotator=annotator, choice="a") for pair in pairs[:-1]]
    )
    assert not pair_priorities_due(project=project)
    assert pair_priorities_due(project=project, now=10**12)  # a few new ones, and the last refresh is old
    Judgment.objects.create(pair=pairs[-1], annotator=annotator, choice="b")
    assert pair_priorities_due(project=project)
    assert ProjectFactory(assignment_strategy="fill").pk not in pair_priorities_projects_due()
