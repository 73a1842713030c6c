"""The data browser: a project's pairs with filters, full-text search and keyset pages, and one pair's page
with every judgment; for leads, engineers and site admins, never for annotators."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotate import selectors_pair_pages as pair_pages
from annotate.api.pair_serializers import PairFilterInput
from annotate.models import Membership, Pair, Project
from annotate.selectors_pair_pages import pair_page
from annotate.selectors_pairs import PAIR_FILTERS
from annotate.services.assignment import project_pair_counters_rebuild
from annotate.services.search_documents import search_documents_fill
from tests.factories import (
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@dataclass
class Browsed:
    project: Project
    pairs: dict[str, Pair]
    users: dict[str, object]


def _pair(project: Project, name: str, prompt: str, a: tuple[str, str], b: tuple[str, str], **extra) -> Pair:
    category = extra.pop("category", "coding")
    question = PromptFactory(project=project, content=prompt, category=category)
    return PairFactory(
        prompt=question,
        external_id=name,
        response_a=ResponseFactory(prompt=question, system=a[0], content=a[1]),
        response_b=ResponseFactory(prompt=question, system=b[0], content=b[1]),
        **extra,
    )


@pytest.fixture
def browsed() -> Browsed:
    return browsed_project()


def browsed_project() -> Browsed:
    """Five pairs, one of each kind: unanimous, majority and split votes, a single vote, an unjudged gold
    pair; annotators ann, ben and cat, a lead, an engineer, an outsider and a site admin."""
    project = ProjectFactory(slug="browsed", overlap=3, criteria=["helpfulness"], strength_scale=3)
    users = {name: UserFactory(username=name) for name in ("ann", "ben", "cat", "lead", "engineer")}
    for name in ("ann", "ben", "cat"):
        MembershipFactory(project=project, user=users[name], role=Membership.Role.ANNOTATOR)
    MembershipFactory(project=project, user=users["lead"], role=Membership.Role.LEAD)
    MembershipFactory(project=project, user=users["engineer"], role=Membership.Role.ENGINEER)
    users["outsider"] = UserFactory(username="outsider")
    MembershipFactory(user=users["outsider"], role=Membership.Role.LEAD)  # of another project
    users["admin"] = UserFactory(username="site-admin", is_staff=True, is_superuser=True)
    pairs = {
        "unanimous": _pair(
            project,
            "unanimous",
            "How do I sort a list in **Python**?",
            ("alpha", "Use sorted(items) for a new list."),
            ("beta", "Call items.sort() to sort in place."),
        ),
        "majority": _pair(
            project,
            "majority",
            "Write a haiku about autumn leaves.",
            ("alpha", "Red leaves drift and fall."),
            ("gamma", "Autumn wind, cold rain."),
            category="writing",
        ),
        "split": _pair(
            project,
            "split",
            "What is the capital of Australia?",
            ("beta", "Canberra is the capital."),
            ("gamma", "Sydney, the largest city."),
            category="geography",
        ),
        "single": _pair(
            project,
            "single",
            "Translate 'good morning' into French.",
            ("alpha", "Bonjour."),
            ("beta", "Bonsoir."),
            category="writing",
        ),
        "gold": _pair(
            project,
            "gold",
            "Describe the animal in the picture.",
            ("delta", "The quick brown foxes jump over the lazy dog."),
            ("alpha", "A cat sleeping."),
            is_gold=True,
            gold_choice="a",
        ),
    }
    votes = {
        "unanimous": [("ann", "a"), ("ben", "a"), ("cat", "a")],
        "majority": [("ann", "a"), ("ben", "a"), ("cat", "b")],
        "split": [("ann", "a"), ("ben", "b")],
        "single": [("cat", "tie")],
    }
    for name, cast in votes.items():
        for who, choice in cast:
            JudgmentFactory(
                pair=pairs[name],
                annotator=users[who],
                choice=choice,
                strength=2 if choice in ("a", "b") else None,
                criteria={"helpfulness": choice},
                rationale=f"{who} thinks {choice} <script>window.bad = 1</script>",
            )
    JudgmentFactory(pair=pairs["gold"], annotator=None, origin="imported", choice="a")  # not a human vote
    project_pair_counters_rebuild(project=project)
    search_documents_fill(project_id=project.pk)  # as the task does after an import
    return Browsed(project=project, pairs=pairs, users=users)


def _client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _listed(browsed: Browsed, **query) -> list[str]:
    response = _client(browsed.users["lead"]).get(reverse("project-pairs", args=["browsed"]), query)
    assert response.status_code == 200, response.content.decode()[:2000]
    return [pair.external_id for pair in response.context["page"].rows]


ALL = ["unanimous", "majority", "split", "single", "gold"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ALL),
        ({"status": "unjudged"}, ["gold"]),
        ({"status": "in_progress"}, ["split", "single"]),
        ({"status": "open"}, ["split", "single", "gold"]),
        ({"status": "complete"}, ["unanimous", "majority"]),
        ({"system": "gamma"}, ["majority", "split"]),
        ({"system": "delta"}, ["gold"]),
        ({"system": "nobody"}, []),
        ({"category": "writing"}, ["majority", "single"]),
        ({"gold": "yes"}, ["gold"]),
        ({"gold": "false"}, ["unanimous", "majority", "split", "single"]),
        ({"agreement": "unanimous"}, ["unanimous"]),
        ({"agreement": "majority"}, ["majority"]),
        ({"agreement": "split"}, ["split"]),
        ({"contested": "yes"}, ["majority", "split"]),
        ({"contested": "no"}, ["unanimous", "single", "gold"]),
        ({"annotator": "cat"}, ["unanimous", "majority", "single"]),
        ({"annotator": "lead"}, []),
        ({"status": "complete", "system": "gamma", "contested": "yes"}, ["majority"]),
        ({"category": "writing", "annotator": "ann"}, ["majority"]),
        ({"status": "", "gold": "", "q": "  "}, ALL),
    ],
)
def test_each_filter_narrows_the_pairs_to_those_it_describes(browsed, query, expected):
    assert _listed(browsed, **query) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("sorting", ["unanimous"]),  # stemmed, in both responses and the prompt
        ("python", ["unanimous"]),  # in the prompt only, through its markdown
        ("Canberra", ["split"]),  # response A only
        ("Sydney", ["split"]),  # response B only
        ('"brown foxes"', ["gold"]),
        ('"foxes brown"', []),  # a phrase keeps its order
        ("brown -lazy", []),
        ("haiku or bonjour", ["majority", "single"]),
        ("autumn", ["majority"]),  # prompt and both responses: listed once
        ("zebra", []),
        ("the", []),  # a stop word alone matches nothing rather than everything
        ("((( & | !", []),  # web-search syntax never fails to parse
    ],
)
def test_search_finds_words_in_the_prompt_or_either_response(browsed, q, expected):
    assert _listed(browsed, q=q) == expected


def test_search_and_filters_combine(browsed):
    assert _listed(browsed, q="capital or haiku", contested="yes") == ["majority", "split"]
    assert _listed(browsed, q="capital or haiku", status="complete") == ["majority"]
    assert _listed(browsed, q="capital or haiku", system="alpha") == ["majority"]


def test_search_does_not_reach_into_other_projects(browsed):
    other = ProjectFactory(slug="elsewhere")
    _pair(other, "elsewhere", "Canberra again", ("alpha", "Canberra"), ("beta", "Canberra"))
    search_documents_fill(project_id=other.pk)
    assert _listed(browsed, q="canberra") == ["split"]


@pytest.mark.parametrize("q", ["", "answer"])
def test_keyset_pages_walk_forward_and_back_without_gaps_or_repeats(q):
    project = ProjectFactory()
    names = [f"p{index:02d}" for index in range(7)]
    for name in names:
        _pair(project, name, f"Prompt {name}", ("alpha", "An answer."), ("beta", "Another answer."))
    search_documents_fill(project_id=project.pk)
    seen, after = [], None
    while True:
        page = pair_page(project=project, filters={}, query=q, after=after, size=3)
        seen.append([pair.external_id for pair in page.rows])
        if page.after_id is None:
            break
        after = page.after_id
    assert seen == [names[0:3], names[3:6], names[6:7]]
    back = pair_page(project=project, filters={}, query=q, before=page.before_id, size=3)
    assert [pair.external_id for pair in back.rows] == names[3:6]
    assert back.before_id is not None and back.after_id is not None
    first = pair_page(project=project, filters={}, query=q, before=back.before_id, size=3)
    assert [pair.external_id for pair in first.rows] == names[0:3]
    assert first.before_id is None and first.after_id == first.rows[-1].pk
    # Places outside the project's ids: everything is after 0 and before the largest id there is.
    assert [
        p.external_id for p in pair_page(project=project, filters={}, query=q, after=0, size=3).rows
    ] == names[:3]
    last = pair_page(project=project, filters={}, query=q, before=2**62, size=3)
    assert [pair.external_id for pair in last.rows] == names[4:7]


def test_a_walk_out_of_time_says_how_far_it_looked_and_the_next_page_goes_on_from_there(monkeypatch):
    monkeypatch.setattr(pair_pages, "WALK_SECONDS", -1.0)  # every walk stops after its first window
    monkeypatch.setattr(pair_pages, "WALK_FIRST_WINDOW", 2)
    project = ProjectFactory()
    pairs = [
        _pair(project, f"p{index}", "Prompt", ("alpha", "one"), ("beta" if index % 4 else "gamma", "two"))
        for index in range(9)
    ]
    shown, walked, after = [], [], None
    for _ in range(10):
        page = pair_page(project=project, filters={"system": "gamma"}, after=after, size=5)
        shown += [pair.external_id for pair in page.rows]
        walked.append(page.walked_to)
        if page.after_id is None:
            break
        after = page.after_id
    assert shown == ["p0", "p4", "p8"]
    assert walked[0] == pairs[1].pk and walked[-1] is None


def test_the_page_links_to_the_next_and_previous_pages_keeping_the_filters(browsed):
    project = browsed.project
    prompt = PromptFactory(project=project, content="filler", category="bulk")
    for index in range(55):
        PairFactory(prompt=prompt, external_id=f"bulk-{index:02d}")
    client = _client(browsed.users["lead"])
    url = reverse("project-pairs", args=["browsed"])
    first = client.get(url, {"category": "bulk"})
    assert len(first.context["page"].rows) == 50
    assert first.context["before_url"] is None
    second = client.get(url + first.context["after_url"])
    assert [pair.external_id for pair in second.context["page"].rows] == [
        f"bulk-{index:02d}" for index in range(50, 55)
    ]
    assert second.context["after_url"] is None
    assert "category=bulk" in second.context["before_url"]
    back = client.get(url + second.context["before_url"])
    assert back.context["page"].rows[0].external_id == "bulk-00"


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"status": "finished"}, "status", "'finished' is not one of unjudged, in_progress, open, complete"),
        ({"agreement": "some"}, "agreement", "'some' is not one of unanimous, majority, split"),
        ({"gold": "maybe"}, "gold", "must be yes or no"),
        ({"contested": "2"}, "contested", "must be yes or no"),
        ({"annotator": "nobody-here"}, "annotator", "no user is called 'nobody-here'"),
        ({"after": "abc"}, "after", "valid integer"),
        ({"after": "-1"}, "after", "greater than or equal to 0"),
        ({"before": "9" * 20}, "before", "less than or equal to 9223372036854775807"),
        ({"after": "3", "before": "9"}, "before", "not both"),
        ({"colour": "red"}, "colour", "unknown filter"),
        ({"q": "x" * 301}, "q", "no more than 300"),
        ({"system": "s" * 201}, "system", "no more than 200"),
    ],
)
def test_a_bad_filter_gets_a_clear_error_naming_it(browsed, query, field, words):
    response = _client(browsed.users["lead"]).get(reverse("project-pairs", args=["browsed"]), query)
    assert response.status_code == 400
    body = response.content.decode()
    assert "These filters cannot be used" in body
    assert f"{field}:" in body and words in body.replace("&#x27;", "'")
    assert "page" not in response.context or response.context.get("page") is None


@pytest.mark.parametrize(
    ("who", "status"),
    [("lead", 200), ("engineer", 200), ("admin", 200), ("ann", 403), ("outsider", 404)],
)
def test_only_leads_engineers_and_site_admins_may_browse(browsed, who, status):
    client = _client(browsed.users[who])
    pair = browsed.pairs["split"]
    assert client.get(reverse("project-pairs", args=["browsed"])).status_code == status
    assert client.get(reverse("project-pair", args=["browsed", pair.pk])).status_code == status


def test_anonymous_visitors_are_sent_to_log_in(browsed):
    response = Client().get(reverse("project-pairs", args=["browsed"]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_tab_shows_for_readers_and_not_for_annotators(browsed):
    link = f'href="{reverse("project-pairs", args=["browsed"])}"'
    overview = reverse("project-detail", args=["browsed"])
    assert link in _client(browsed.users["engineer"]).get(overview).content.decode()
    assert link not in _client(browsed.users["ann"]).get(overview).content.decode()


def test_the_list_costs_the_same_few_queries_for_a_full_page(browsed, django_assert_max_num_queries):
    client = _client(browsed.users["lead"])
    url = reverse("project-pairs", args=["browsed"])
    client.get(url)  # the session and the cached suggestions, once
    queries = ({}, {"q": "filler or sorting", "annotator": "ann", "contested": "no"})

    def counted(captured) -> int:
        # The walk reads one window of ids more each time the ids double (the project's ids are not
        # contiguous when other tests' rows came in between): those are left out of the count.
        return sum('"annotate_pair"."id" BETWEEN' not in query["sql"] for query in captured.captured_queries)

    few = []
    for query in queries:
        with CaptureQueriesContext(connection) as captured:
            client.get(url, query)
        few.append(counted(captured))
    prompt = PromptFactory(project=browsed.project, content="filler")
    with connection.cursor() as cursor:  # other projects' pairs came in between: a gap in this one's ids
        cursor.execute("SELECT pg_get_serial_sequence('annotate_pair', 'id')")
        sequence = cursor.fetchone()[0]
        cursor.execute("SELECT setval(%s::regclass, nextval(%s::regclass) + 10000)", [sequence, sequence])
    for index in range(60):
        pair = PairFactory(prompt=prompt, external_id=f"more-{index}")
        for who in ("ann", "ben"):
            JudgmentFactory(pair=pair, annotator=browsed.users[who], choice="a" if index % 2 else "b")
    project_pair_counters_rebuild(project=browsed.project)
    search_documents_fill(project_id=browsed.project.pk)
    for query, count in zip(queries, few, strict=True):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, query)
        assert counted(captured) <= min(count, 14), [
            query["sql"][:200] for query in captured.captured_queries
        ]
        assert len(response.context["page"].rows) == 50
    with django_assert_max_num_queries(6):
        client.get(reverse("project-pair", args=["browsed", browsed.pairs["majority"].pk]))


def test_the_pair_page_shows_the_pair_and_every_judgment(browsed):
    pair = browsed.pairs["majority"]
    response = _client(browsed.users["engineer"]).get(reverse("project-pair", args=["browsed", pair.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Write a haiku about autumn leaves." in body
    assert "Red leaves drift and fall." in body and "Autumn wind, cold rain." in body
    assert "alpha" in body and "gamma" in body
    for who, choice in (("ann", "a"), ("ben", "a"), ("cat", "b")):
        assert f"{who} thinks {choice}" in body
    assert body.count("helpfulness:") == 3
    assert "<script>window.bad" not in body  # rationales go through the sanitising path
    assert "Majority" in body and "(contested)" in body
    settle = reverse("project-pair-settle", args=["browsed", pair.pk])
    assert settle not in body  # engineers read; leads settle
    lead_page = _client(browsed.users["lead"]).get(reverse("project-pair", args=["browsed", pair.pk]))
    assert settle in lead_page.content.decode()


def test_the_pair_page_states_gold_and_counts_only_human_votes(browsed):
    pair = browsed.pairs["gold"]
    body = _client(browsed.users["lead"]).get(reverse("project-pair", args=["browsed", pair.pk])).content
    text = body.decode()
    assert "the expected answer is “A is better”" in text
    assert "imported label" in text
    assert "Fewer than two judgments" in text


def test_a_pair_of_another_project_is_not_found(browsed):
    elsewhere = _pair(ProjectFactory(), "x", "Other", ("a", "one"), ("b", "two"))
    response = _client(browsed.users["lead"]).get(reverse("project-pair", args=["browsed", elsewhere.pk]))
    assert response.status_code == 404


def test_the_list_escapes_untrusted_prompts(browsed):
    _pair(browsed.project, "hostile", "<img src=x onerror=alert(1)>", ("alpha", "a"), ("beta", "b"))
    body = _client(browsed.users["lead"]).get(reverse("project-pairs", args=["browsed"])).content.decode()
    assert "<img src=x" not in body and "&lt;img src=x" in body


def test_every_filter_has_a_field_in_the_one_serializer():
    assert set(PAIR_FILTERS) <= set(PairFilterInput().fields)


def test_the_list_shows_the_start_of_a_long_prompt(browsed):
    _pair(browsed.project, "long", "word " * 500, ("alpha", "a"), ("beta", "b"))
    response = _client(browsed.users["lead"]).get(reverse("project-pairs", args=["browsed"]))
    preview = response.context["page"].rows[-1].prompt_preview
    assert preview == ("word " * 28).strip() + "…"
    assert len(preview) <= 140
