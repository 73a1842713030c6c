"""Project API tokens: made and revoked by leads (API and members page), the secret shown once and stored only
as a hash, refused when revoked or expired, last use recorded at most once a minute. Scoring with a token is
in tests/rewardtrain/test_scoring_tokens.py; the refusal everywhere else in tests/annotate/test_api.py."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Membership, ProjectApiToken
from annotate.services.api_tokens import api_token_authenticate, api_token_create
from palate.errors import ApplicationError
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _member(project, role: str):
    return MembershipFactory(project=project, role=role).user


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_lead_gets_the_secret_once_and_only_its_hash_is_stored():
    project = ProjectFactory()
    lead = _member(project, Membership.Role.LEAD)

    response = _api(lead).post(f"/api/projects/{project.pk}/api-tokens/", {"name": "sampler"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("plt_") and len(secret) >= 40
    assert body["prefix"] == secret[:12] and body["state"] == "active" and body["created_by"] == lead.username
    token = ProjectApiToken.objects.get(pk=body["id"])
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(value) for value in ProjectApiToken.objects.filter(pk=token.pk).values().first().values()]
    assert not any(secret in value for value in stored)
    listed = _api(lead).get(f"/api/projects/{project.pk}/api-tokens/")
    assert listed.status_code == 200
    assert "secret" not in listed.json()[0] and secret not in listed.content.decode()


def test_the_database_refuses_a_secret_stored_in_clear():
    project = ProjectFactory()
    with pytest.raises(IntegrityError):
        ProjectApiToken.objects.create(
            project=project, name="x", prefix="plt_abc", secret_hash="plt_" + "a" * 60
        )


def test_engineers_see_the_tokens_but_only_leads_make_and_revoke_them():
    project = ProjectFactory()
    lead, engineer = _member(project, Membership.Role.LEAD), _member(project, Membership.Role.ENGINEER)
    token, _ = api_token_create(project=project, name="sampler", created_by=lead)
    url = f"/api/projects/{project.pk}/api-tokens/"

    assert [row["name"] for row in _api(engineer).get(url).json()] == ["sampler"]
    assert _api(engineer).post(url, {"name": "mine"}, format="json").status_code == 403
    assert _api(engineer).delete(f"{url}{token.pk}/").status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and ProjectApiToken.objects.count() == 1

    assert _api(lead).delete(f"{url}{token.pk}/").status_code == 204
    token.refresh_from_db()
    first_revocation = token.revoked_at
    assert first_revocation is not None and token.revoked_by == lead
    assert _api(lead).delete(f"{url}{token.pk}/").status_code == 204  # again: harmless, first time kept
    token.refresh_from_db()
    assert token.revoked_at == first_revocation
    assert _api(lead).get(url).json()[0]["state"] == "revoked"


def test_a_lead_cannot_revoke_another_projects_token():
    project, other = ProjectFactory(), ProjectFactory()
    lead = _member(project, Membership.Role.LEAD)
    token, _ = api_token_create(project=other, name="theirs", created_by=None)
    assert _api(lead).delete(f"/api/projects/{project.pk}/api-tokens/{token.pk}/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_name_is_unique_among_the_tokens_not_revoked_and_expiry_must_be_ahead():
    project = ProjectFactory()
    lead = _member(project, Membership.Role.LEAD)
    url = f"/api/projects/{project.pk}/api-tokens/"
    first = _api(lead).post(url, {"name": "sampler"}, format="json").json()

    again = _api(lead).post(url, {"name": "sampler"}, format="json")
    assert again.status_code == 400 and "name" in again.json()["error"]["fields"]
    _api(lead).delete(f"{url}{first['id']}/")
    assert _api(lead).post(url, {"name": "sampler"}, format="json").status_code == 201

    past = (timezone.now() - timedelta(hours=1)).isoformat()
    late = _api(lead).post(url, {"name": "late", "expires_at": past}, format="json")
    assert late.status_code == 400 and "expires_at" in late.json()["error"]["fields"]
    blank = _api(lead).post(url, {"name": "  "}, format="json")
    assert blank.status_code == 400 and "name" in blank.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("case", "message"),
    [("revoked", "was revoked"), ("expired", "expired on"), ("unknown", "invalid API token")],
)
def test_a_revoked_expired_or_unknown_token_is_a_401_that_says_which(case, message):
    project = ProjectFactory()
    token, secret = api_token_create(project=project, name="sampler", created_by=None)
    if case == "revoked":
        ProjectApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    elif case == "expired":
        ProjectApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        secret = secret[:-4] + "abcd"

    for url in ("/api/projects/", f"/api/projects/{project.pk}/reward-models/active/score/"):
        response = _bearer(secret).post(url, {"prompt": "p", "responses": ["a"]}, format="json")
        assert response.status_code == 401, response.content
        error = response.json()["error"]
        assert error["code"] == "authentication_failed" and message in error["message"]
        assert response["WWW-Authenticate"]


def test_a_bearer_value_that_is_not_a_palate_token_is_a_401_saying_so():
    response = _bearer("abc.def.ghi").get("/api/projects/")
    assert response.status_code == 401 and "plt_" in response.json()["error"]["message"]


def test_last_use_is_written_at_most_once_a_minute():
    project = ProjectFactory()
    token, secret = api_token_create(project=project, name="sampler", created_by=None)

    first = api_token_authenticate(secret=secret).last_used_at
    assert first is not None
    api_token_authenticate(secret=secret)
    token.refresh_from_db()
    assert token.last_used_at == first

    ProjectApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    api_token_authenticate(secret=secret)
    token.refresh_from_db()
    assert token.last_used_at > first - timedelta(minutes=2)

    with pytest.raises(ApplicationError):
        api_token_authenticate(secret="plt_nothing")


# The members page ------------------------------------------------------------------------------------


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_lead_makes_a_token_on_the_members_page_and_sees_its_secret_only_there():
    project = ProjectFactory()
    lead = _member(project, Membership.Role.LEAD)
    client = _page(lead)

    made = client.post(f"/projects/{project.slug}/members/api-tokens/", {"name": "sampler", "expires": "30"})

    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    token = ProjectApiToken.objects.get(project=project)
    secret = made.context["new_token"][1]
    text = made.content.decode()
    assert text.count(secret) == 1 and "shown only this once" in text
    assert token.expires_at is not None and token.expires_at - timezone.now() > timedelta(days=29)
    later = client.get(f"/projects/{project.slug}/members/").content.decode()
    assert secret not in later and f"{token.prefix}…" in later and "API tokens for scoring" in later

    revoked = client.post(f"/projects/{project.slug}/members/api-tokens/{token.pk}/revoke/", follow=True)
    assert revoked.status_code == 200 and "is revoked" in revoked.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == lead


def test_the_members_page_shows_why_a_token_was_not_made():
    project = ProjectFactory()
    lead = _member(project, Membership.Role.LEAD)
    api_token_create(project=project, name="sampler", created_by=lead)
    response = _page(lead).post(f"/projects/{project.slug}/members/api-tokens/", {"name": "sampler"})
    assert response.status_code == 200 and "already has a token named" in response.content.decode()
    assert response.context["new_token"] is None and ProjectApiToken.objects.count() == 1


@pytest.mark.parametrize("role", [Membership.Role.ENGINEER, Membership.Role.ANNOTATOR])
def test_only_leads_make_or_revoke_tokens_on_the_page(role):
    project = ProjectFactory()
    token, _ = api_token_create(project=project, name="sampler", created_by=None)
    client = _page(_member(project, role))
    assert client.post(f"/projects/{project.slug}/members/api-tokens/", {"name": "x"}).status_code == 403
    assert client.post(f"/projects/{project.slug}/members/api-tokens/{token.pk}/revoke/").status_code == 403
    assert ProjectApiToken.objects.filter(revoked_at__isnull=True).count() == 1
    outsider = _page(UserFactory())
    assert outsider.post(f"/projects/{project.slug}/members/api-tokens/", {"name": "x"}).status_code == 404
