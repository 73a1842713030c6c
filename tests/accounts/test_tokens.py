"""User API tokens (django-rest-knox, accounts/): one per login, stored as a hash, expiring, listed and revoked
by their user (API and page), all revoked when the password changes or the user is deactivated."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.services import user_token_create
from annotate.models import Membership
from annotate.services.api_tokens import api_token_create
from tests.annotate.test_api import assert_error_shape
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def log_in(user) -> str:
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def with_token(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def works(secret: str) -> bool:
    return with_token(secret).get("/api/projects/").status_code == 200


def test_a_token_is_stored_only_as_a_hash():
    user = UserFactory()

    secret = log_in(user)

    token = AuthToken.objects.get(user=user)
    assert token.digest == hashlib.sha512(secret.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        stored = [str(value) for row in cursor.fetchall() for value in row]
    assert not any(secret in value for value in stored)
    assert works(secret)


def test_drf_plain_tokens_are_gone():
    assert "authtoken_token" not in connection.introspection.table_names()


def test_a_token_expires_after_the_configured_time(settings):
    settings.USER_TOKEN_TTL_HOURS = 2
    before = timezone.now()

    token, _ = user_token_create(user=UserFactory())

    expected = before + timedelta(hours=settings.USER_TOKEN_TTL_HOURS)
    assert expected <= token.expiry <= expected + timedelta(minutes=1)


@pytest.mark.parametrize("path", ["/api/projects/", "next"])
def test_an_expired_token_is_refused_with_401(path):
    membership = MembershipFactory(role=Membership.Role.ANNOTATOR)
    token, secret = user_token_create(user=membership.user)
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    if path == "next":
        path = f"/api/projects/{membership.project_id}/next/"

    error = assert_error_shape(with_token(secret).get(path), 401, "authentication_failed")

    assert "expired" in error["message"] and "log in again" in error["message"]


@pytest.mark.parametrize("header", ["Token \u00ff\u00fe", "Token " + "\u00e9" * 64, "Token", "Token a b"])
def test_a_malformed_token_is_a_401_not_a_500(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_error_shape(client.get("/api/projects/"), 401, "authentication_failed")


def test_the_token_endpoint_logs_out_the_token_it_is_called_with():
    user = UserFactory()
    first, second = log_in(user), log_in(user)

    response = with_token(first).delete("/api/auth/token/")

    assert response.status_code == 204
    assert not works(first) and works(second)


def test_logging_out_with_a_session_names_the_way_to_revoke_a_token():
    client = APIClient()
    client.force_login(UserFactory())

    error = assert_error_shape(client.delete("/api/auth/token/"), 400, "no_token")

    assert "/api/auth/tokens/" in error["message"]


def test_a_user_lists_their_tokens_without_secrets():
    user = UserFactory()
    first, second = log_in(user), log_in(user)
    log_in(UserFactory())

    response = with_token(second).get("/api/auth/tokens/")

    assert response.status_code == 200
    listed = response.json()
    assert [token["id"] for token in listed] == [second[:15], first[:15]]
    assert [token["current"] for token in listed] == [True, False]
    assert {token["state"] for token in listed} == {"active"}
    assert first not in response.content.decode() and second not in response.content.decode()


def test_a_user_revokes_one_token_and_not_someone_elses():
    user, other = UserFactory(), UserFactory()
    first, second = log_in(user), log_in(user)
    others = log_in(other)

    assert with_token(second).delete(f"/api/auth/tokens/{first[:15]}/").status_code == 204
    assert_error_shape(with_token(second).delete(f"/api/auth/tokens/{others[:15]}/"), 404, "not_found")

    assert not works(first) and works(second) and works(others)


def test_a_user_revokes_all_their_tokens():
    user, other = UserFactory(), UserFactory()
    first, second = log_in(user), log_in(user)
    others = log_in(other)

    assert with_token(first).delete("/api/auth/tokens/").status_code == 204

    assert not works(first) and not works(second) and works(others)


def test_a_project_api_token_cannot_see_or_revoke_user_tokens():
    membership = MembershipFactory(role=Membership.Role.LEAD)
    _, secret = api_token_create(project=membership.project, name="sampler", created_by=membership.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert_error_shape(client.get("/api/auth/tokens/"), 403, "token_scope")
    assert_error_shape(client.delete("/api/auth/tokens/"), 403, "token_scope")


def test_changing_the_password_revokes_every_token():
    user = UserFactory()
    first, second = log_in(user), log_in(user)
    others = log_in(UserFactory())

    user.set_password("a brand new passphrase")
    user.save()

    assert not works(first) and not works(second) and works(others)
    assert not AuthToken.objects.filter(user=user).exists()


def test_deactivating_the_user_revokes_every_token():
    user = UserFactory()
    secret = log_in(user)

    user.is_active = False
    user.save(update_fields=["is_active"])

    assert not AuthToken.objects.filter(user=user).exists()
    assert_error_shape(with_token(secret).get("/api/projects/"), 401, "authentication_failed")


def test_other_changes_to_the_user_keep_the_tokens():
    user = UserFactory()
    secret = log_in(user)

    user.email = "hank@example.com"
    user.save()
    log_in(user)  # writes last_login

    assert works(secret)


def test_logging_in_deletes_the_users_expired_tokens():
    user = UserFactory()
    old, _ = user_token_create(user=user)
    AuthToken.objects.filter(pk=old.pk).update(expiry=timezone.now() - timedelta(days=1))

    log_in(user)

    assert not AuthToken.objects.filter(pk=old.pk).exists()
    assert AuthToken.objects.filter(user=user).count() == 1


# The page ------------------------------------------------------------------------------------------------


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_user_menu_leads_to_the_tokens_page():
    user = UserFactory()
    token, _ = user_token_create(user=user)
    client = page_client(user)

    home = client.get("/")
    page = client.get("/account/tokens/")

    assert 'href="/account/tokens/"' in home.content.decode()
    assert page.status_code == 200 and token.token_key in page.content.decode()


def test_the_page_shows_a_new_token_once_and_it_works():
    user = UserFactory()
    client = page_client(user)

    response = client.post("/account/tokens/new/")

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = AuthToken.objects.get(user=user)
    secret = re.search(r'id="new-token-secret" readonly value="([0-9a-f]+)"', response.content.decode())[1]
    assert secret.startswith(token.token_key)
    assert works(secret)
    assert secret not in client.get("/account/tokens/").content.decode()


def test_the_page_revokes_one_token_or_all():
    user = UserFactory()
    first, second, third = (user_token_create(user=user) for _ in range(3))
    others, _ = user_token_create(user=UserFactory())
    client = page_client(user)

    assert client.post(f"/account/tokens/{first[0].token_key}/revoke/").status_code == 302
    assert client.post(f"/account/tokens/{others.token_key}/revoke/").status_code == 404
    assert set(AuthToken.objects.filter(user=user).values_list("token_key", flat=True)) == {
        second[0].token_key,
        third[0].token_key,
    }
    assert client.post("/account/tokens/revoke-all/").status_code == 302
    assert not AuthToken.objects.filter(user=user).exists()
    assert AuthToken.objects.filter(pk=others.pk).exists()


def test_a_token_checked_once_is_accepted_without_a_query_until_it_is_revoked(settings):
    from django.test.utils import CaptureQueriesContext

    from accounts.services import user_token_revoke

    settings.USER_TOKEN_CACHE_SECONDS = 60
    user = UserFactory()
    token, secret = user_token_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert client.get("/api/projects/").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/projects/").status_code == 200
    assert not [query for query in queries if "knox_authtoken" in query["sql"]]
    user_token_revoke(user=user, token_key=token.token_key)
    assert client.get("/api/projects/").status_code == 401
