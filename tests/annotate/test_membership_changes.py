"""Membership changes in the middle of a lease, over HTTP, as the annotator's own client sees them.

The annotator logs in (a user token, or a session through the login form for the page and its JSON calls),
judges one pair and takes the lease on the next. Then a lead removes them, gives them another role, re-adds
them or promotes them back, or a site admin deactivates them; and the annotator uses what they held. Each
endpoint must answer by their role now, store nothing it refuses, and the lease they held must already be
closed with its pair's slot free. The token cache is on throughout: a token this process accepted is not
asked about again, so only the role check on every call stands between a removed member and a write.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import authentication
from annotate.models import Assignment, Judgment, JudgmentRevision, Membership, Pair, Project
from tests.annotate.test_api import PASSWORD, assert_error_shape
from tests.factories import MembershipFactory, PairFactory, ProjectFactory

pytestmark = pytest.mark.django_db

ENDPOINTS = (
    "next",
    "submit-held",
    "skip-held",
    "edit-earlier",
    "recent",
    "page",
    "project-get",
    "members-list",
)

# What the annotator gets from each endpoint after the change, in ENDPOINTS order. A member who lost the
# annotator role is refused every write on what they held (403); outsiders, the removed and the deactivated
# among them, learn nothing of the project (404). Back as an annotator, they get a fresh lease and keep
# their judgments, but the lease their removal ended stays ended (409).
EXPECTED = {
    "removed": (404, 403, 403, 403, 404, 404, 404, 404),
    "demoted-to-engineer": (403, 403, 403, 403, 403, 403, 200, 403),
    "demoted-to-lead": (403, 403, 403, 403, 403, 403, 200, 200),
    "removed-then-re-added": (200, 409, 409, 200, 200, 200, 200, 403),
    "demoted-then-promoted-back": (200, 409, 409, 200, 200, 200, 200, 403),
    # As the admin does it: the user's tokens and sessions end with the save.
    "deactivated": (401, 401, 401, 401, 401, 302, 401, 401),
    # As this process sees a deactivation made by another: the token is still in its cache.
    "deactivated-elsewhere": (404, 403, 403, 403, 404, None, 404, 404),
}
BACK_AS_ANNOTATOR = {"removed-then-re-added", "demoted-then-promoted-back"}


def cases(transports: tuple[str, ...]) -> list:
    params = []
    for transport in transports:
        for change in EXPECTED:
            for endpoint in ENDPOINTS:
                # The page needs a session; a session is never cached, so "elsewhere" is the admin's case.
                if endpoint == "page" and transport != "session":
                    continue
                if transport == "session" and change == "deactivated-elsewhere":
                    continue
                params.append(pytest.param(transport, change, endpoint))
    return params


@pytest.fixture(autouse=True)
def token_cache_on(settings):
    settings.USER_TOKEN_CACHE_SECONDS = 60
    yield
    authentication.accepted_tokens_forget()


class Annotator:
    """The annotator's HTTP client: a user token, or a session with its CSRF token as the page sends it."""

    def __init__(self, user, transport: str) -> None:
        self.user = user
        self.client = APIClient(enforce_csrf_checks=True)
        if transport == "token":
            response = self.client.post(
                "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
            )
            assert response.status_code == 200, response.content
            self.client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
        else:
            self.client.get("/login/")
            response = self.client.post(
                "/login/",
                {
                    "username": user.username,
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": self.client.cookies["csrftoken"].value,
                },
            )
            assert response.status_code == 302, response.content

    def send(self, method: str, url: str, body: dict | None = None):
        headers = {}
        if "csrftoken" in self.client.cookies:
            headers["HTTP_X_CSRFTOKEN"] = self.client.cookies["csrftoken"].value
        return getattr(self.client, method)(url, body, format="json", **headers)


@dataclass
class Scene:
    project: Project
    annotator: Annotator
    lead: APIClient
    earlier: Judgment
    held: Assignment

    def change(self, change: str) -> None:
        """Makes the change, as a lead (over the API) or a site admin does."""
        members = f"/api/projects/{self.project.pk}/members/"
        username = self.annotator.user.username
        steps = {
            "removed": [("delete", None)],
            "demoted-to-engineer": [("post", "engineer")],
            "demoted-to-lead": [("post", "lead")],
            "removed-then-re-added": [("delete", None), ("post", "annotator")],
            "demoted-then-promoted-back": [("post", "engineer"), ("post", "annotator")],
        }
        if change in {"deactivated", "deactivated-elsewhere"}:
            user = get_user_model().objects.get(pk=self.annotator.user.pk)
            user.is_active = False
            if change == "deactivated":
                user.save()
                return
            # Another web process saved it: its revocation empties its own token cache, not this one's.
            kept = dict(authentication._accepted)
            user.save()
            authentication._accepted.update(kept)
            return
        for method, role in steps[change]:
            if method == "delete":
                response = self.lead.delete(f"{members}{username}/")
            else:
                response = self.lead.post(members, {"username": username, "role": role}, format="json")
            assert response.status_code in {200, 201, 204}, response.content

    def call(self, endpoint: str):
        project = f"/api/projects/{self.project.pk}/"
        send = self.annotator.send
        if endpoint == "next":
            return send("get", f"{project}next/")
        if endpoint == "submit-held":
            return send("post", "/api/judgments/", {"assignment": self.held.pk, "choice": "left"})
        if endpoint == "skip-held":
            return send("post", f"/api/assignments/{self.held.pk}/skip/", {"reason": "unsure"})
        if endpoint == "edit-earlier":
            return send("patch", f"/api/judgments/{self.earlier.pk}/", {"choice": "tie"})
        if endpoint == "recent":
            return send("get", f"{project}judgments/recent/")
        if endpoint == "page":
            return self.annotator.client.get(f"/projects/{self.project.slug}/annotate/")
        if endpoint == "project-get":
            return send("get", project)
        if endpoint == "members-list":
            return send("get", f"{project}members/")
        raise AssertionError(endpoint)


def scene(transport: str) -> Scene:
    """The annotator judged one pair and holds the lease on the next, both taken over HTTP."""
    project = ProjectFactory(overlap=1)
    for _ in range(4):
        PairFactory(prompt__project=project)
    user = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    lead = APIClient()
    lead.force_authenticate(MembershipFactory(project=project, role=Membership.Role.LEAD).user)
    annotator = Annotator(user, transport)
    first = annotator.send("get", f"/api/projects/{project.pk}/next/")
    submitted = annotator.send(
        "post", "/api/judgments/", {"assignment": first.json()["assignment"], "choice": "left"}
    )
    assert submitted.status_code == 201, submitted.content
    held = annotator.send("get", f"/api/projects/{project.pk}/next/")
    assert held.status_code == 200, held.content
    return Scene(
        project=project,
        annotator=annotator,
        lead=lead,
        earlier=Judgment.objects.get(pk=submitted.json()["id"]),
        held=Assignment.objects.get(pk=held.json()["assignment"]),
    )


def stored() -> tuple:
    return (
        sorted(Judgment.objects.values_list("id", "pair_id", "choice", "revision")),
        JudgmentRevision.objects.count(),
    )


@pytest.mark.parametrize(("transport", "change", "endpoint"), cases(("token", "session")))
def test_after_a_membership_change_each_endpoint_answers_by_the_role_now(transport, change, endpoint):
    world = scene(transport)
    before = stored()
    world.change(change)

    response = world.call(endpoint)

    expected = EXPECTED[change][ENDPOINTS.index(endpoint)]
    assert response.status_code == expected, response.content
    if expected >= 400 and endpoint != "page":
        assert_error_shape(response, expected, "lease_released" if expected == 409 else None)
    if expected == 302:
        assert response["Location"].startswith("/login/")
    # The lease they held ended with the change (a deactivation ends it too), its pair free at once, and
    # nothing they were refused left a trace.
    assert Assignment.objects.get(pk=world.held.pk).status == Assignment.Status.RELEASED
    fresh = Assignment.objects.filter(pair_id=world.held.pair_id, status=Assignment.Status.ACTIVE)
    assert Pair.objects.get(pk=world.held.pair_id).slots_taken == fresh.count()
    if endpoint == "edit-earlier" and expected == 200:
        assert response.json()["revision"] == 2
    else:
        assert stored() == before
    if change in BACK_AS_ANNOTATOR and endpoint == "next":
        # A fresh lease (perhaps on the same pair, which went back to the pool), and their progress kept.
        assert response.json()["assignment"] not in {world.held.pk, world.earlier.assignment_id}
        assert response.json()["progress"]["done_total"] == 1
    else:
        assert not fresh.exists()
    if change in BACK_AS_ANNOTATOR and endpoint == "recent":
        assert [judgment["id"] for judgment in response.json()] == [world.earlier.pk]


def test_a_cached_token_lets_a_removed_member_write_nothing():
    """The cache spares the token's query, never the role's: the removed member's later calls are
    authenticated from the cache and refused by the database."""
    world = scene("token")
    world.change("removed")
    before = stored()

    with CaptureQueriesContext(connection) as queries:
        for endpoint in ("submit-held", "skip-held", "edit-earlier", "next"):
            assert world.call(endpoint).status_code in {403, 404}
    assert queries.captured_queries
    assert not [query for query in queries if "knox_authtoken" in query["sql"]]
    assert stored() == before
