"""The REST API: tokens, who may call what, the one error shape, imports over HTTP and paginated listings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.services import user_token_create
from annotate.models import (
    Adjudication,
    Assignment,
    Export,
    ImportJob,
    Judgment,
    Membership,
    Pair,
    PairFlag,
    Project,
    ProjectApiToken,
    Prompt,
)
from annotate.services import assignment
from annotate.services.api_tokens import api_token_create
from annotate.services.imports import import_job_run
from tests.factories import MembershipFactory, PairFactory, ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
ROLES = ["annotator", "lead", "engineer", "outsider", "anonymous", "admin"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The default hasher takes a good part of a second per password, by design; these tests make many."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def items_file(rows: int = 2, responses: int = 2, name: str = "items.jsonl") -> SimpleUploadedFile:
    lines = [
        json.dumps(
            {
                "id": f"p{number}",
                "prompt": f"Question {number}?",
                "responses": [
                    {
                        "id": f"r{index}",
                        "system": f"system-{index}",
                        "content": f"Answer {index} to {number}.",
                    }
                    for index in range(responses)
                ],
            }
        )
        for number in range(rows)
    ]
    return SimpleUploadedFile(name, ("\n".join(lines) + "\n").encode(), content_type="application/x-ndjson")


def assert_error_shape(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert sorted(error) == ["code", "fields", "message"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    assert all(
        isinstance(messages, list) and all(isinstance(m, str) for m in messages)
        for messages in error["fields"].values()
    )
    if code is not None:
        assert error["code"] == code
    return error


@dataclass
class World:
    """One project with a member of each role, an outsider (who leads another project), a site admin, a
    bystander annotator to remove, a user to add, and an import job."""

    project: Project
    users: dict[str, Any]
    bystander: Any
    newcomer: Any
    job: ImportJob
    # Set by the ``full_world`` fixture, for the endpoints that need them.
    submit_assignment: Assignment | None = None
    skip_assignment: Assignment | None = None
    judgment: Judgment | None = None
    export: Export | None = None
    api_token: ProjectApiToken | None = None

    def client(self, role: str) -> APIClient:
        client = APIClient()
        if role != "anonymous":
            client.force_authenticate(self.users[role])
        return client


@pytest.fixture
def world() -> World:
    project = ProjectFactory(gold_rate=0.1)
    users = {
        role: MembershipFactory(project=project, role=role).user for role in ("annotator", "lead", "engineer")
    }
    users["outsider"] = MembershipFactory(role=Membership.Role.LEAD).user
    users["admin"] = UserFactory(is_staff=True, is_superuser=True)
    bystander = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    job = ImportJob.objects.create(project=project, filename="old.jsonl", status=ImportJob.Status.SUCCEEDED)
    return World(project=project, users=users, bystander=bystander, newcomer=UserFactory(), job=job)


@pytest.fixture
def full_world(world) -> World:
    """The world plus what the workspace and export endpoints act on: the annotator holds two leases (one to
    submit, one to skip) and made one judgment (to edit); the project has an export that has not run."""
    pairs = [PairFactory(prompt__project=world.project) for _ in range(5)]
    expires_at = timezone.now() + timedelta(minutes=15)
    annotator = world.users["annotator"]
    world.submit_assignment, world.skip_assignment, world.flag_assignment = (
        Assignment.objects.create(
            project=world.project, pair=pair, annotator=annotator, expires_at=expires_at
        )
        for pair in (pairs[0], pairs[1], pairs[3])
    )
    world.judgment = Judgment.objects.create(pair=pairs[2], annotator=annotator, choice="a")
    world.flag = PairFlag.objects.create(
        pair=pairs[4], annotator=world.bystander, category="broken", created_at=timezone.now()
    )
    world.settled_pair = pairs[2]
    Adjudication.objects.create(pair=pairs[2], label="a", decided_at=timezone.now())
    world.export = Export.objects.create(
        project=world.project, version=1, status=Export.Status.QUEUED, formats=["jsonl"]
    )
    world.api_token, _ = api_token_create(
        project=world.project, name="sampler", created_by=world.users["lead"]
    )
    return world


def call(world: World, role: str, endpoint: str, client: APIClient | None = None):
    client = client or world.client(role)
    project_url = f"/api/projects/{world.project.pk}/"
    if endpoint == "projects-list":
        return client.get("/api/projects/")
    if endpoint == "projects-create":
        return client.post("/api/projects/", {"name": "Another project"}, format="json")
    if endpoint == "project-get":
        return client.get(project_url)
    if endpoint == "project-patch":
        return client.patch(project_url, {"overlap": 5}, format="json")
    if endpoint == "members-list":
        return client.get(f"{project_url}members/")
    if endpoint == "members-add":
        return client.post(
            f"{project_url}members/",
            {"username": world.newcomer.username, "role": "annotator"},
            format="json",
        )
    if endpoint == "members-remove":
        return client.delete(f"{project_url}members/{world.bystander.username}/")
    if endpoint == "api-tokens-list":
        return client.get(f"{project_url}api-tokens/")
    if endpoint == "api-tokens-create":
        return client.post(f"{project_url}api-tokens/", {"name": "ci"}, format="json")
    if endpoint == "api-token-revoke":
        return client.delete(f"{project_url}api-tokens/{world.api_token.pk}/")
    if endpoint == "imports-create":
        return client.post(f"{project_url}imports/", {"file": items_file()}, format="multipart")
    if endpoint == "import-get":
        return client.get(f"/api/imports/{world.job.pk}/")
    if endpoint == "prompts-list":
        return client.get(f"{project_url}prompts/")
    if endpoint == "pairs-list":
        return client.get(f"{project_url}pairs/")
    if endpoint == "agreement-get":
        return client.get(f"{project_url}agreement/")
    if endpoint == "agreement-refresh":
        return client.post(f"{project_url}agreement/refresh/")
    if endpoint == "next-pair":
        return client.get(f"{project_url}next/")
    if endpoint == "judgments-recent":
        return client.get(f"{project_url}judgments/recent/")
    if endpoint == "progress-get":
        return client.get(f"{project_url}progress/")
    if endpoint == "judgments-submit":
        return client.post(
            "/api/judgments/", {"assignment": world.submit_assignment.pk, "choice": "left"}, format="json"
        )
    if endpoint == "judgment-edit":
        return client.patch(f"/api/judgments/{world.judgment.pk}/", {"choice": "tie"}, format="json")
    if endpoint == "assignment-skip":
        return client.post(
            f"/api/assignments/{world.skip_assignment.pk}/skip/", {"reason": "unsure"}, format="json"
        )
    if endpoint == "assignment-flag":
        return client.post(
            f"/api/assignments/{world.flag_assignment.pk}/flag/", {"category": "duplicate"}, format="json"
        )
    if endpoint == "judgments-mine":
        return client.get(f"{project_url}judgments/mine/")
    if endpoint == "flags-list":
        return client.get(f"{project_url}flags/")
    if endpoint == "flag-dismiss":
        return client.post(f"{project_url}flags/{world.flag.pk}/dismiss/")
    if endpoint == "adjudication-get":
        return client.get(f"{project_url}pairs/{world.settled_pair.pk}/adjudication/")
    if endpoint == "adjudication-put":
        return client.put(
            f"{project_url}pairs/{world.settled_pair.pk}/adjudication/", {"label": "tie"}, format="json"
        )
    if endpoint == "leaderboard-get":
        return client.get(f"{project_url}leaderboard/")
    if endpoint == "exports-list":
        return client.get(f"{project_url}exports/")
    if endpoint == "exports-create":
        return client.post(f"{project_url}exports/", {"formats": ["jsonl"]}, format="json")
    if endpoint == "export-get":
        return client.get(f"/api/exports/{world.export.pk}/")
    if endpoint == "export-download":
        return client.get(f"/api/exports/{world.export.pk}/download/")
    raise AssertionError(endpoint)


# Expected status per endpoint, in ROLES order: annotator, lead, engineer, outsider, anonymous, admin.
# Outsiders get 404 (a project's existence is private); creating projects needs a permission that only the
# site admin has here.
PERMISSIONS = {
    "projects-list": (200, 200, 200, 200, 401, 200),
    "projects-create": (403, 403, 403, 403, 401, 201),
    "project-get": (200, 200, 200, 404, 401, 200),
    "project-patch": (403, 200, 403, 404, 401, 200),
    "members-list": (403, 200, 403, 404, 401, 200),
    "members-add": (403, 201, 403, 404, 401, 201),
    "members-remove": (403, 204, 403, 404, 401, 204),
    # Project API tokens: engineers may see which exist (never a secret); only leads make or revoke them.
    "api-tokens-list": (403, 200, 200, 404, 401, 200),
    "api-tokens-create": (403, 201, 403, 404, 401, 201),
    "api-token-revoke": (403, 204, 403, 404, 401, 204),
    "imports-create": (403, 201, 403, 404, 401, 201),
    "import-get": (403, 200, 403, 404, 401, 200),
    "prompts-list": (403, 200, 200, 404, 401, 200),
    "pairs-list": (403, 200, 200, 404, 401, 200),
    "agreement-get": (403, 200, 200, 404, 401, 200),
    "agreement-refresh": (403, 202, 202, 404, 401, 202),
    # The workspace is the annotators': a lease or judgment of someone else's is "no such" (404) to others.
    "next-pair": (200, 403, 403, 404, 401, 403),
    "judgments-recent": (200, 403, 403, 404, 401, 200),
    "progress-get": (200, 403, 403, 404, 401, 200),
    "judgments-submit": (201, 404, 404, 404, 401, 404),
    "judgment-edit": (200, 404, 404, 404, 401, 404),
    "assignment-skip": (204, 404, 404, 404, 401, 404),
    "assignment-flag": (201, 404, 404, 404, 401, 404),
    "judgments-mine": (200, 403, 403, 404, 401, 200),
    # Flags and settling are the leads'.
    "flags-list": (403, 200, 403, 404, 401, 200),
    "flag-dismiss": (403, 200, 403, 404, 401, 200),
    "adjudication-get": (403, 200, 403, 404, 401, 200),
    "adjudication-put": (403, 200, 403, 404, 401, 200),
    # System names are for leads and engineers only.
    "leaderboard-get": (403, 200, 200, 404, 401, 200),
    "exports-list": (403, 200, 200, 404, 401, 200),
    "exports-create": (403, 202, 202, 404, 401, 202),
    "export-get": (403, 200, 200, 404, 401, 200),
    # The export has not run yet: readers learn that (409); nobody else learns it exists.
    "export-download": (403, 409, 409, 404, 401, 409),
}


WRITES = {
    "projects-create",
    "project-patch",
    "members-add",
    "members-remove",
    "imports-create",
    "api-tokens-create",
    "api-token-revoke",
}


def state(world: World) -> tuple:
    world.project.refresh_from_db()
    return (
        world.project.overlap,
        Project.objects.count(),
        sorted(Membership.objects.values_list("project_id", "user_id", "role")),
        ImportJob.objects.count(),
        Prompt.objects.count(),
        sorted(ProjectApiToken.objects.values_list("id", "revoked_at")),
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", PERMISSIONS)
def test_each_endpoint_lets_each_role_do_only_what_it_may(full_world, endpoint, role):
    world = full_world
    before = state(world)

    response = call(world, role, endpoint)

    expected = PERMISSIONS[endpoint][ROLES.index(role)]
    assert response.status_code == expected, response.content
    if expected >= 400:
        assert_error_shape(response, expected)
    # A refusal changes nothing; an allowed write changes something.
    assert (state(world) != before) == (expected < 400 and endpoint in WRITES)


HOT_ENDPOINTS = ("next-pair", "judgments-submit")


@pytest.mark.parametrize("role", [role for role in ROLES if role != "anonymous"])
@pytest.mark.parametrize("endpoint", HOT_ENDPOINTS)
def test_next_and_submit_with_a_user_token_give_each_role_what_the_table_says(full_world, endpoint, role):
    """Over HTTP, with a real token header rather than a forced login."""
    world = full_world
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user_token_create(user=world.users[role])[1]}")
    judgments = Judgment.objects.count()

    response = call(world, role, endpoint, client=client)

    expected = PERMISSIONS[endpoint][ROLES.index(role)]
    assert response.status_code == expected, response.content
    if expected >= 400:
        assert_error_shape(response, expected)
    assert Judgment.objects.count() == judgments + (endpoint == "judgments-submit" and expected == 201)


@pytest.mark.parametrize("endpoint", HOT_ENDPOINTS)
@pytest.mark.parametrize("problem", ["unknown", "inactive", "malformed"])
def test_next_and_submit_refuse_a_bad_token_as_every_endpoint_does(full_world, endpoint, problem):
    world = full_world
    annotator = world.users["annotator"]
    _, key = user_token_create(user=annotator)
    if problem == "unknown":
        key = "0" * 40
    elif problem == "inactive":
        annotator.is_active = False
        annotator.save(update_fields=["is_active"])
    elif problem == "malformed":
        key = "two words"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    before = (Assignment.objects.count(), Judgment.objects.count())

    response = call(world, "annotator", endpoint, client=client)
    # What a regular endpoint answers to the same header.
    regular = client.get("/api/projects/")

    error = assert_error_shape(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == regular["WWW-Authenticate"] == "Token"
    assert error["message"] == regular.json()["error"]["message"]
    assert (Assignment.objects.count(), Judgment.objects.count()) == before


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/projects/{huge}/next/", 404), ("/api/projects/{project}/next/?after={huge}", 400)],
)
def test_next_answers_an_id_too_large_for_the_database_as_any_unknown_id(full_world, path, status):
    response = full_world.client("annotator").get(path.format(huge=2**63, project=full_world.project.pk))

    assert_error_shape(response, status)


def test_the_progress_line_counts_the_remaining_pairs_at_most_every_30_seconds(full_world, monkeypatch):
    world = full_world
    client = world.client("annotator")
    url = f"/api/projects/{world.project.pk}/next/"
    clock = [1000.0]
    monkeypatch.setattr(assignment.time, "monotonic", lambda: clock[0])

    first = client.get(url).json()["progress"]["remaining"]
    PairFactory(prompt__project=world.project)
    cached = client.get(url).json()["progress"]["remaining"]
    clock[0] += assignment.REMAINING_CACHE_SECONDS + 1
    counted = client.get(url).json()["progress"]["remaining"]

    assert (first, cached, counted) == (5, 5, 6)  # the world's five pairs, then one more


@pytest.mark.django_db
def test_an_annotators_progress_counts_the_open_pairs_they_have_neither_judged_nor_skipped():
    project = ProjectFactory(overlap=2, strength_scale=0, criteria=[])
    annotator, colleague, outsider = UserFactory(), UserFactory(), UserFactory()
    for user in (annotator, colleague):
        MembershipFactory(user=user, project=project)
    for _ in range(4):
        PairFactory(prompt__project=project)
    client, other = APIClient(), APIClient()
    client.force_authenticate(annotator)
    other.force_authenticate(colleague)
    progress_url = f"/api/projects/{project.pk}/progress/"
    next_url = f"/api/projects/{project.pk}/next/"

    before = client.get(progress_url).json()
    first = client.get(next_url).json()
    judged = client.post(
        "/api/judgments/", {"assignment": first["assignment"], "choice": "left"}, format="json"
    )
    assert judged.status_code == 201, judged.content
    second = client.get(next_url).json()
    client.post(f"/api/assignments/{second['assignment']}/skip/", {}, format="json")
    # Two judgments complete a pair the annotator never saw: it is no longer left for anyone.
    for _ in range(2):
        lease = other.get(next_url).json()
        other.post("/api/judgments/", {"assignment": lease["assignment"], "choice": "tie"}, format="json")
    after = client.get(progress_url).json()

    assert before == {"remaining_for_you": 4, "done_total": 0}
    assert after["done_total"] == 1
    # Of four pairs: one judged and one skipped by the annotator; the colleague's two judgments went to
    # those same pairs or to others, and no pair has two judgments yet unless both judged it.
    touched = {first["pair"], second["pair"]}
    complete = {pair.pk for pair in project.pairs.all() if pair.judgment_count >= project.overlap}
    assert after["remaining_for_you"] == 4 - len(touched | complete)

    outsider_client = APIClient()
    outsider_client.force_authenticate(outsider)
    assert outsider_client.get(progress_url).status_code in (403, 404)


def test_every_api_endpoint_is_in_the_permission_table():
    from annotate.api.urls import urlpatterns

    methods = {
        name: {
            method
            for method in ("get", "post", "patch", "delete", "put")
            if hasattr(pattern.callback.view_class, method)
        }
        for pattern in urlpatterns
        for name in [pattern.name]
    }
    covered = {
        "api-projects": {"get", "post"},
        "api-project": {"get", "patch"},
        "api-members": {"get", "post"},
        "api-member": {"delete"},
        "api-api-tokens": {"get", "post"},
        "api-api-token": {"delete"},
        "api-imports": {"post"},
        "api-import": {"get"},
        "api-prompts": {"get"},
        "api-pairs": {"get"},
        "api-agreement": {"get"},
        "api-agreement-refresh": {"post"},
        "api-next": {"get"},
        "api-judgments-recent": {"get"},
        "api-progress": {"get"},
        "api-judgments": {"post"},
        "api-judgment": {"patch"},
        "api-assignment-skip": {"post"},
        "api-assignment-flag": {"post"},
        "api-judgments-mine": {"get"},
        "api-flags": {"get"},
        "api-flag-dismiss": {"post"},
        "api-pair-adjudication": {"get", "put"},
        "api-leaderboard": {"get"},
        "api-exports": {"get", "post"},
        "api-export": {"get"},
        "api-export-download": {"get"},
    }
    assert methods == covered
    assert len(PERMISSIONS) == sum(len(operations) for operations in covered.values())


@pytest.mark.parametrize("endpoint", PERMISSIONS)
def test_a_project_api_token_is_refused_by_every_endpoint_but_scoring(full_world, endpoint):
    """The token's own project, made by its lead: still refused (403 token_scope), and nothing changes. It
    acts as nobody, not as the lead who made it (tests/rewardtrain/test_api_tokens.py covers scoring)."""
    world = full_world
    _, secret = api_token_create(project=world.project, name="scorer", created_by=world.users["lead"])
    before = state(world)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    response = call(world, "token", endpoint, client=client)

    error = assert_error_shape(response, 403, "token_scope")
    assert "only scores" in error["message"]
    assert state(world) == before


def test_a_site_admin_gets_404_for_a_project_that_does_not_exist(world):
    response = world.client("admin").get("/api/projects/999999/")

    assert_error_shape(response, 404, "not_found")


# What each role sees ---------------------------------------------------------------------------------


def test_annotators_do_not_see_gold_rate_or_other_configuration(world):
    detail = world.client("annotator").get(f"/api/projects/{world.project.pk}/").json()
    listed = world.client("annotator").get("/api/projects/").json()["results"]

    for payload in (detail, *listed):
        assert payload["role"] == "annotator"
        assert "gold_rate" not in payload
        assert "overlap" not in payload
        assert "system" not in json.dumps(payload)
    assert [project["id"] for project in listed] == [world.project.pk]


def test_leads_and_engineers_see_the_gold_rate(world):
    for role in ("lead", "engineer", "admin"):
        payload = world.client(role).get(f"/api/projects/{world.project.pk}/").json()
        assert payload["gold_rate"] == 0.1
        assert payload["role"] == role


def test_the_project_list_shows_only_the_users_projects_with_their_role(world):
    other = ProjectFactory(name="Zeta")
    MembershipFactory(project=other, user=world.users["annotator"], role=Membership.Role.ENGINEER)
    ProjectFactory(name="Hidden")

    listed = world.client("annotator").get("/api/projects/").json()

    assert listed["count"] == 2
    assert {(project["name"], project["role"]) for project in listed["results"]} == {
        (world.project.name, "annotator"),
        ("Zeta", "engineer"),
    }


def test_a_site_admin_sees_every_project(world):
    ProjectFactory(name="Hidden")

    listed = world.client("admin").get("/api/projects/").json()

    assert listed["count"] == Project.objects.count() == 3
    assert {project["role"] for project in listed["results"]} == {"admin"}


def test_an_outsider_sees_an_empty_project_list():
    outsider = UserFactory()
    ProjectFactory()
    client = APIClient()
    client.force_authenticate(outsider)

    assert client.get("/api/projects/").json()["count"] == 0


def test_annotators_cannot_read_pairs_where_systems_are_shown(world):
    world.client("lead").post(
        f"/api/projects/{world.project.pk}/imports/", {"file": items_file()}, format="multipart"
    )

    for_lead = world.client("lead").get(f"/api/projects/{world.project.pk}/pairs/").json()
    for_annotator = world.client("annotator").get(f"/api/projects/{world.project.pk}/pairs/")

    systems = {pair[side]["system"] for pair in for_lead["results"] for side in ("response_a", "response_b")}
    assert systems == {"system-0", "system-1"}
    assert_error_shape(for_annotator, 403, "permission_denied")
    assert "system" not in for_annotator.content.decode()


# Projects and members --------------------------------------------------------------------------------


def test_a_user_allowed_to_create_projects_creates_one_and_leads_it():
    from django.contrib.auth.models import Permission

    creator = UserFactory()
    creator.user_permissions.add(
        Permission.objects.get(codename="add_project", content_type__app_label="annotate")
    )
    client = APIClient()
    client.force_authenticate(creator)

    response = client.post(
        "/api/projects/", {"name": "Summaries", "overlap": 2, "criteria": ["helpfulness"]}, format="json"
    )

    assert response.status_code == 201, response.content
    project = Project.objects.get(pk=response.json()["id"])
    assert (project.name, project.slug, project.overlap, project.criteria) == (
        "Summaries",
        "summaries",
        2,
        ["helpfulness"],
    )
    assert Membership.objects.get(project=project).user == creator
    assert response.json()["role"] == "lead"


def test_a_lead_updates_the_configuration(world):
    response = world.client("lead").patch(
        f"/api/projects/{world.project.pk}/",
        {"overlap": 5, "allowed_choices": ["left", "right"]},
        format="json",
    )

    assert response.status_code == 200
    world.project.refresh_from_db()
    assert (world.project.overlap, world.project.allowed_choices) == (5, ["left", "right"])


def test_it_refuses_a_configuration_that_breaks_a_cross_field_rule(world):
    response = world.client("lead").patch(
        f"/api/projects/{world.project.pk}/", {"allowed_choices": ["left", "tie"]}, format="json"
    )

    error = assert_error_shape(response, 400, "invalid")
    assert list(error["fields"]) == ["allowed_choices"]


def test_a_lead_adds_a_member_with_attributes_and_changes_their_role(world):
    url = f"/api/projects/{world.project.pk}/members/"
    client = world.client("lead")

    added = client.post(
        url,
        {"username": world.newcomer.username, "role": "annotator", "attributes": {"locale": "fr-FR"}},
        format="json",
    )
    changed = client.post(url, {"username": world.newcomer.username, "role": "engineer"}, format="json")

    assert (added.status_code, changed.status_code) == (201, 200)
    membership = Membership.objects.get(project=world.project, user=world.newcomer)
    assert (membership.role, membership.attributes) == ("engineer", {"locale": "fr-FR"})
    listed = client.get(url).json()
    assert {member["username"]: member["role"] for member in listed}[world.newcomer.username] == "engineer"


def test_it_refuses_to_add_an_unknown_username_naming_the_field(world):
    response = world.client("lead").post(
        f"/api/projects/{world.project.pk}/members/",
        {"username": "nobody-by-that-name", "role": "annotator"},
        format="json",
    )

    error = assert_error_shape(response, 400, "unknown_user")
    assert list(error["fields"]) == ["username"]
    assert "nobody-by-that-name" in error["message"]


def test_it_refuses_to_remove_the_last_lead(world):
    lead = world.users["lead"]

    response = world.client("lead").delete(f"/api/projects/{world.project.pk}/members/{lead.username}/")

    assert_error_shape(response, 409, "last_lead")
    assert Membership.objects.filter(project=world.project, user=lead, role=Membership.Role.LEAD).exists()


def test_it_refuses_to_demote_the_last_lead(world):
    lead = world.users["lead"]

    response = world.client("lead").post(
        f"/api/projects/{world.project.pk}/members/",
        {"username": lead.username, "role": "annotator"},
        format="json",
    )

    assert_error_shape(response, 409, "last_lead")
    assert Membership.objects.get(project=world.project, user=lead).role == Membership.Role.LEAD


def test_a_lead_may_leave_when_another_lead_remains(world):
    MembershipFactory(project=world.project, user=world.newcomer, role=Membership.Role.LEAD)
    lead = world.users["lead"]

    response = world.client("lead").delete(f"/api/projects/{world.project.pk}/members/{lead.username}/")

    assert response.status_code == 204
    assert not Membership.objects.filter(project=world.project, user=lead).exists()


def test_members_of_a_project_without_a_lead_can_still_be_changed_and_removed(world):
    # A project made by a site admin for others (created_by=None) starts with no lead.
    project = ProjectFactory()
    first, second = (
        MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user for _ in range(2)
    )
    admin = world.client("admin")

    changed = admin.post(
        f"/api/projects/{project.pk}/members/",
        {"username": first.username, "role": "engineer"},
        format="json",
    )
    removed = admin.delete(f"/api/projects/{project.pk}/members/{second.username}/")

    assert (changed.status_code, removed.status_code) == (200, 204)
    assert list(Membership.objects.filter(project=project).values_list("user", "role")) == [
        (first.pk, "engineer")
    ]


def test_removing_someone_who_is_not_a_member_is_a_404(world):
    response = world.client("lead").delete(
        f"/api/projects/{world.project.pk}/members/{world.newcomer.username}/"
    )

    assert_error_shape(response, 404, "not_found")


# One error shape -------------------------------------------------------------------------------------


def test_every_error_has_the_same_shape(world, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    project_url = f"/api/projects/{world.project.pk}/"
    lead, annotator = world.client("lead"), world.client("annotator")

    invalid = lead.patch(project_url, {"overlap": 0, "rationale": "sometimes"}, format="json")
    assert set(assert_error_shape(invalid, 400, "invalid")["fields"]) == {"overlap", "rationale"}
    no_file = lead.post(f"{project_url}imports/", {}, format="multipart")
    assert list(assert_error_shape(no_file, 400, "invalid")["fields"]) == ["file"]
    bad_filter = lead.get(f"{project_url}pairs/", {"gold": "perhaps"})
    assert list(assert_error_shape(bad_filter, 400)["fields"]) == ["gold"]
    assert_error_shape(world.client("anonymous").get(project_url), 401, "not_authenticated")
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error_shape(bad_token.get("/api/projects/"), 401, "authentication_failed")
    assert_error_shape(annotator.patch(project_url, {"overlap": 5}, format="json"), 403, "permission_denied")
    assert_error_shape(world.client("outsider").get(project_url), 404, "not_found")
    assert_error_shape(lead.get(f"{project_url}prompts/", {"page": 9}), 404, "not_found")
    assert_error_shape(lead.put(project_url, {}, format="json"), 405, "method_not_allowed")
    assert_error_shape(
        world.client("admin").post(
            "/api/projects/", {"name": "Copy", "slug": world.project.slug}, format="json"
        ),
        409,
        "conflict",
    )
    assert_error_shape(lead.delete(f"{project_url}members/{world.users['lead'].username}/"), 409, "last_lead")
    token_client = APIClient()
    assert_error_shape(
        token_client.post("/api/auth/token/", {"username": "x"}, format="json"), 400, "invalid"
    )
    assert_error_shape(
        token_client.post("/api/auth/token/", {"username": "x", "password": "y"}, format="json"),
        401,
        "authentication_failed",
    )
    assert_error_shape(
        token_client.post("/api/auth/token/", {"username": "x", "password": "y"}, format="json"),
        429,
        "throttled",
    )


# Tokens ----------------------------------------------------------------------------------------------


def test_a_token_from_the_token_endpoint_authenticates():
    user = UserFactory()
    client = APIClient()

    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "username", "expires_at"} and body["username"] == user.username
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get("/api/projects/").status_code == 200
    again = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    # One token per login: each can be revoked without the other.
    assert again.json()["token"] != body["token"]
    assert AuthToken.objects.filter(user=user).count() == 2


@pytest.mark.parametrize("username", ["known", "unknown"])
def test_a_wrong_password_or_unknown_user_is_a_401(username):
    user = UserFactory(username="known")

    response = APIClient().post(
        "/api/auth/token/", {"username": username, "password": "not it"}, format="json"
    )

    error = assert_error_shape(response, 401, "authentication_failed")
    assert error["message"] == "wrong username or password"
    assert not AuthToken.objects.filter(user=user).exists()


def test_after_too_many_failures_even_the_right_password_is_refused(settings):
    user = UserFactory()
    client = APIClient()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        failed = client.post(
            "/api/auth/token/", {"username": user.username, "password": "guess"}, format="json"
        )
        assert failed.status_code == 401
    # The failure that reaches the limit is already refused as such.
    last = client.post("/api/auth/token/", {"username": user.username, "password": "guess"}, format="json")
    assert_error_shape(last, 429, "throttled")

    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )

    assert_error_shape(response, 429, "throttled")
    assert not AuthToken.objects.filter(user=user).exists()


def test_failures_below_the_limit_do_not_block_the_right_password(settings):
    user = UserFactory()
    client = APIClient()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        client.post("/api/auth/token/", {"username": user.username, "password": "guess"}, format="json")

    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200


# Imports over HTTP -----------------------------------------------------------------------------------


def test_a_small_import_runs_in_the_request_and_reports_the_counts(world, enqueued):
    url = f"/api/projects/{world.project.pk}/imports/"

    response = world.client("lead").post(
        url, {"file": items_file(rows=3, responses=3), "seed": 4}, format="multipart"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["progress"] == 1.0
    assert body["counts"]["prompts_created"] == 3
    assert body["counts"]["responses_created"] == 9
    assert body["counts"]["pairs_created"] == 9
    assert body["options"]["seed"] == 4
    assert Pair.objects.filter(project=world.project).count() == 9
    assert enqueued.job_ids == []


def test_a_bad_import_is_a_400_listing_each_line_and_writes_nothing(world):
    url = f"/api/projects/{world.project.pk}/imports/"
    bad = SimpleUploadedFile(
        "items.jsonl",
        b'{"id": "p1", "prompt": "Q?", "responses": [{"content": "a"}, {"content": "b"}]}\n'
        b'{"id": "p2", "prompt": "Q?"}\n'
        b"not json\n",
    )

    response = world.client("lead").post(url, {"file": bad}, format="multipart")

    error = assert_error_shape(response, 400, "import_failed")
    assert [message.split(":")[0] for message in error["fields"]["file"]] == [
        "items.jsonl, line 2",
        "items.jsonl, line 3",
    ]
    assert Prompt.objects.count() == 0
    failed = ImportJob.objects.exclude(pk=world.job.pk).get()
    assert (failed.status, failed.errors) == (ImportJob.Status.FAILED, error["fields"]["file"])


def test_it_refuses_invalid_import_options_naming_the_option(world):
    url = f"/api/projects/{world.project.pk}/imports/"

    response = world.client("lead").post(url, {"file": items_file(), "pairing": "random"}, format="multipart")

    error = assert_error_shape(response, 400, "invalid")
    assert list(error["fields"]) == ["pairs_per_prompt"]
    assert ImportJob.objects.count() == 1


def test_it_refuses_an_upload_over_the_import_limit(world, settings):
    settings.IMPORT_MAX_FILE_BYTES = 10

    response = world.client("lead").post(
        f"/api/projects/{world.project.pk}/imports/", {"file": items_file()}, format="multipart"
    )

    error = assert_error_shape(response, 413, "too_large")
    assert list(error["fields"]) == ["file"]
    assert ImportJob.objects.count() == 1


def test_a_large_import_is_queued_and_a_worker_completes_it(
    world, settings, enqueued, django_capture_on_commit_callbacks
):
    settings.IMPORT_ASYNC_THRESHOLD_BYTES = 100
    client = world.client("lead")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/projects/{world.project.pk}/imports/", {"file": items_file(rows=5)}, format="multipart"
        )

    assert response.status_code == 202, response.content
    queued = response.json()
    assert queued["status"] == "queued"
    assert enqueued.job_ids == [queued["id"]]
    assert Prompt.objects.count() == 0

    import_job_run(job_id=queued["id"])

    finished = client.get(f"/api/imports/{queued['id']}/").json()
    assert finished["status"] == "succeeded"
    assert finished["progress"] == 1.0
    assert finished["rows_read"] == 5
    assert finished["counts"]["prompts_created"] == 5
    assert Prompt.objects.filter(project=world.project).count() == 5


def test_a_running_import_reports_live_progress(world, enqueued):
    # What the running job's heartbeat writes (palate.jobs.JobHeartbeat.report).
    job = ImportJob.objects.create(
        project=world.project,
        filename="big.jsonl",
        status=ImportJob.Status.RUNNING,
        bytes_total=1000,
        bytes_done=250,
        rows_done=40,
        progress=0.25,
    )

    body = world.client("lead").get(f"/api/imports/{job.pk}/").json()

    assert (body["status"], body["rows_read"], body["progress"]) == ("running", 40, 0.25)


# Listings --------------------------------------------------------------------------------------------


def test_prompts_are_listed_in_pages_of_fifty(world):
    PromptFactory.create_batch(55, project=world.project)
    PromptFactory(project=ProjectFactory())
    client = world.client("engineer")
    url = f"/api/projects/{world.project.pk}/prompts/"

    first = client.get(url).json()
    second = client.get(first["next"]).json()

    assert first["count"] == 55
    assert (len(first["results"]), len(second["results"])) == (50, 5)
    assert second["next"] is None
    ids = [prompt["id"] for prompt in first["results"] + second["results"]]
    assert ids == sorted(Prompt.objects.filter(project=world.project).values_list("id", flat=True))


def test_prompts_can_be_filtered_by_category(world):
    PromptFactory.create_batch(2, project=world.project, category="code")
    PromptFactory(project=world.project, category="poetry")

    listed = (
        world.client("lead").get(f"/api/projects/{world.project.pk}/prompts/", {"category": "code"}).json()
    )

    assert listed["count"] == 2
    assert {prompt["category"] for prompt in listed["results"]} == {"code"}


def test_pairs_are_listed_in_pages_with_their_responses(world):
    # One prompt with eleven responses makes 55 pairs.
    world.client("lead").post(
        f"/api/projects/{world.project.pk}/imports/",
        {"file": items_file(rows=1, responses=11)},
        format="multipart",
    )
    client = world.client("engineer")
    url = f"/api/projects/{world.project.pk}/pairs/"

    first = client.get(url).json()
    second = client.get(url, {"page": 2}).json()

    assert first["count"] == 55
    assert (len(first["results"]), len(second["results"])) == (50, 5)
    assert first["previous"] is None and second["previous"] is not None
    pairs = first["results"] + second["results"]
    assert [pair["id"] for pair in pairs] == sorted(
        Pair.objects.filter(project=world.project).values_list("id", flat=True)
    )
    assert {"id", "external_id", "system", "content"} == set(pairs[0]["response_a"])
    assert all(pair["response_a"]["id"] != pair["response_b"]["id"] for pair in pairs)


def test_pairs_can_be_filtered_to_gold(world):
    rows = [
        {"prompt": "Q1?", "chosen": "Yes.", "rejected": "No."},
        {"prompt": "Q2?", "response_a": "A.", "response_b": "B."},
    ]
    upload = SimpleUploadedFile("items.jsonl", "".join(json.dumps(row) + "\n" for row in rows).encode())
    world.client("lead").post(
        f"/api/projects/{world.project.pk}/imports/", {"file": upload}, format="multipart"
    )
    url = f"/api/projects/{world.project.pk}/pairs/"

    gold = world.client("lead").get(url, {"gold": "true"}).json()["results"]
    ordinary = world.client("lead").get(url, {"gold": "false"}).json()["results"]

    assert [(pair["response_a"]["content"], pair["gold_choice"]) for pair in gold] == [("Yes.", "a")]
    assert [(pair["response_a"]["content"], pair["is_gold"]) for pair in ordinary] == [("A.", False)]
