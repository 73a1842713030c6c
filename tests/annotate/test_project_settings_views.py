"""The project creation and settings pages: who may open them, the API's validation with the API's messages,
and the confirmation a change needs when stored judgments use what it removes."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from annotate.models import Membership, Project
from annotate.services.projects import CONFIG_FIELDS
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = ["annotator", "engineer", "lead", "outsider", "admin"]


@pytest.fixture
def project() -> Project:
    return ProjectFactory(
        allowed_choices=["left", "right", "tie", "both_bad"], criteria=["helpfulness", "safety"]
    )


def user_with_role(project: Project, role: str):
    if role == "admin":
        return UserFactory(username="site-admin", is_staff=True, is_superuser=True)
    if role == "outsider":
        return MembershipFactory(role=Membership.Role.LEAD).user
    return MembershipFactory(project=project, role=role).user


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def settings_form(project: Project, **changes) -> dict:
    """The settings form as a browser posts it, unchanged but for ``changes``."""
    form = {
        "name": project.name,
        "guidelines": project.guidelines,
        "criteria": "\n".join(project.criteria),
        "allowed_choices": [c for c in project.allowed_choices if c not in ("left", "right")],
        **{
            key: str(getattr(project, key))
            for key in CONFIG_FIELDS
            if key not in ("guidelines", "criteria", "allowed_choices")
        },
    }
    form.update(changes)
    return form


def shown_error(response) -> str:
    match = re.search(r'<div class="message error" role="alert">(.*?)</div>', response.content.decode())
    assert match, response.content.decode()[:2000]
    return unescape(match.group(1))


@pytest.mark.parametrize("role", ROLES)
def test_only_leads_and_site_admins_open_the_settings(project, role):
    response = page_client(user_with_role(project, role)).get(f"/projects/{project.slug}/settings/")

    expected = {"lead": 200, "admin": 200, "outsider": 404}.get(role, 403)
    assert response.status_code == expected


@pytest.mark.parametrize("role", ["annotator", "engineer", "outsider"])
def test_members_without_the_lead_role_cannot_change_settings(project, role):
    response = page_client(user_with_role(project, role)).post(
        f"/projects/{project.slug}/settings/", settings_form(project, overlap="9")
    )

    assert response.status_code in (403, 404)
    project.refresh_from_db()
    assert project.overlap != 9


def test_a_lead_saves_every_setting(project):
    client = page_client(user_with_role(project, "lead"))
    form = settings_form(
        project,
        name="Renamed",
        guidelines="# Be kind",
        criteria="helpfulness\nsafety\nconcision\n",
        allowed_choices=["tie", "both_bad"],
        strength_scale="3",
        rationale="required",
        overlap="5",
        gold_rate="0.2",
        lease_seconds="600",
        assignment_order="breadth_first",
        edit_window_seconds="0",
        target_alpha="0.8",
        min_gold_accuracy="0.9",
        max_position_bias="0.7",
    )

    response = client.post(f"/projects/{project.slug}/settings/", form)

    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.guidelines, project.criteria, project.allowed_choices) == (
        "Renamed",
        "# Be kind",
        ["helpfulness", "safety", "concision"],
        ["left", "right", "tie", "both_bad"],
    )
    assert (project.strength_scale, project.rationale, project.overlap, project.gold_rate) == (
        3,
        "required",
        5,
        0.2,
    )
    assert (project.lease_seconds, project.assignment_order, project.edit_window_seconds) == (
        600,
        "breadth_first",
        0,
    )
    assert (project.target_alpha, project.min_gold_accuracy, project.max_position_bias) == (0.8, 0.9, 0.7)


@pytest.mark.parametrize(
    ("form_changes", "api_body"),
    [
        ({"overlap": "0"}, {"overlap": 0}),
        ({"gold_rate": "1.5"}, {"gold_rate": 1.5}),
        ({"lease_seconds": "10"}, {"lease_seconds": 10}),
        ({"strength_scale": "6"}, {"strength_scale": 6}),
        ({"rationale": "sometimes"}, {"rationale": "sometimes"}),
        ({"criteria": "a\na"}, {"criteria": ["a", "a"]}),
        ({"criteria": "x" * 51}, {"criteria": ["x" * 51]}),
        ({"allowed_choices": ["maybe"]}, {"allowed_choices": ["left", "right", "maybe"]}),
        ({"max_position_bias": "0.4"}, {"max_position_bias": 0.4}),
        ({"name": ""}, {"name": ""}),
    ],
)
def test_the_page_refuses_what_the_api_refuses_with_the_same_message(project, form_changes, api_body):
    lead = user_with_role(project, "lead")
    before = Project.objects.filter(pk=project.pk).values().get()

    api_response = api_client(lead).patch(f"/api/projects/{project.pk}/", api_body, format="json")
    page_response = page_client(lead).post(
        f"/projects/{project.slug}/settings/", settings_form(project, **form_changes)
    )

    assert api_response.status_code == 400
    assert page_response.status_code == 400
    assert shown_error(page_response) == api_response.json()["error"]["message"]
    assert Project.objects.filter(pk=project.pk).values().get() == before


def test_removing_a_choice_that_judgments_use_asks_first_and_says_how_many(project):
    for _ in range(3):
        JudgmentFactory(pair=PairFactory(prompt__project=project), choice="tie")
    client = page_client(user_with_role(project, "lead"))
    form = settings_form(project, allowed_choices=["both_bad"])

    asked = client.post(f"/projects/{project.slug}/settings/", form)

    assert asked.status_code == 200
    text = unescape(asked.content.decode())
    assert "3 judgments chose 'tie'; removing it" in text
    project.refresh_from_db()
    assert "tie" in project.allowed_choices

    confirmed = client.post(f"/projects/{project.slug}/settings/", {**form, "confirm": "yes"})

    assert confirmed.status_code == 302
    project.refresh_from_db()
    assert project.allowed_choices == ["left", "right", "both_bad"]


def test_removing_a_criterion_or_shortening_the_scale_states_its_consequences(project):
    project.strength_scale = 3
    project.save()
    JudgmentFactory(pair=PairFactory(prompt__project=project), criteria={"safety": "a"}, strength=3)
    client = page_client(user_with_role(project, "lead"))

    asked = client.post(
        f"/projects/{project.slug}/settings/",
        settings_form(project, criteria="helpfulness", strength_scale="2"),
    )

    text = unescape(asked.content.decode())
    assert "1 judgment answered the criterion 'safety'" in text
    assert "1 judgment gave a strength above 2" in text
    project.refresh_from_db()
    assert (project.criteria, project.strength_scale) == (["helpfulness", "safety"], 3)


def test_a_change_no_judgment_depends_on_saves_at_once(project):
    JudgmentFactory(pair=PairFactory(prompt__project=project), choice="a")

    response = page_client(user_with_role(project, "lead")).post(
        f"/projects/{project.slug}/settings/", settings_form(project, allowed_choices=[], criteria="")
    )

    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.allowed_choices, project.criteria) == (["left", "right"], [])


def test_a_user_who_may_create_projects_creates_one_and_leads_it():
    creator = UserFactory()
    creator.user_permissions.add(Permission.objects.get(codename="add_project"))

    response = page_client(creator).post(
        "/projects/new/",
        {
            "name": "Summaries",
            "slug": "",
            "criteria": "helpfulness",
            "allowed_choices": ["tie"],
            "overlap": "2",
            "strength_scale": "0",
            "rationale": "optional",
            "gold_rate": "0",
            "lease_seconds": "900",
            "assignment_order": "depth_first",
            "edit_window_seconds": "600",
            "target_alpha": "0.667",
            "min_gold_accuracy": "0.8",
            "max_position_bias": "0.65",
        },
    )

    project = Project.objects.get(slug="summaries")
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.slug}/import/"
    assert (project.criteria, project.allowed_choices, project.overlap) == (
        ["helpfulness"],
        ["left", "right", "tie"],
        2,
    )
    assert Membership.objects.get(project=project).user == creator


def test_creating_a_project_refuses_a_taken_address_as_the_api_does(project):
    admin = UserFactory(is_staff=True, is_superuser=True)
    body = {"name": "Again", "slug": project.slug}

    api_response = api_client(admin).post("/api/projects/", body, format="json")
    page_response = page_client(admin).post("/projects/new/", body)

    assert api_response.status_code == 409
    assert shown_error(page_response) == api_response.json()["error"]["message"]
    assert Project.objects.filter(name="Again").count() == 0


def test_people_without_the_permission_cannot_create_projects(project):
    lead = user_with_role(project, "lead")

    assert page_client(lead).get("/projects/new/").status_code == 403
    assert page_client(lead).post("/projects/new/", {"name": "Sneaky"}).status_code == 403
    assert not Project.objects.filter(name="Sneaky").exists()
    assert "/projects/new/" not in page_client(lead).get("/").content.decode()


def test_the_empty_project_links_its_lead_to_the_settings(project):
    text = page_client(user_with_role(project, "lead")).get(f"/projects/{project.slug}/").content.decode()

    assert f'<a href="/projects/{project.slug}/settings/">project settings</a>' in text


def test_the_api_sets_and_shows_the_settings_the_page_adds(project):
    body = {"edit_window_seconds": 0, "target_alpha": 0.8, "min_gold_accuracy": 0.9, "max_position_bias": 0.7}

    response = api_client(user_with_role(project, "lead")).patch(
        f"/api/projects/{project.pk}/", body, format="json"
    )

    assert response.status_code == 200
    assert {key: response.json()[key] for key in body} == body
    project.refresh_from_db()
    assert {key: getattr(project, key) for key in body} == body
