"""Failed logins (django-axes, accounts/login.py): one count per account whatever way the username is typed
and whichever door is used (login page, admin, token endpoint), a separate and higher count per client
address, and the address taken from X-Forwarded-For only behind a trusted number of proxies."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from accounts.login import client_address
from tests.annotate.test_api import assert_error_shape
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
PROXY = "10.0.0.1"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_ADDRESS_LIMIT = 6
    settings.TRUSTED_PROXY_COUNT = 0
    return settings


def web_login(username: str, password: str, **headers):
    return Client(**headers).post("/login/", {"username": username, "password": password})


def admin_login(username: str, password: str, **headers):
    return Client(**headers).post(
        "/admin/login/", {"username": username, "password": password, "next": "/admin/"}
    )


def token_login(username: str, password: str, **headers):
    return APIClient(**headers).post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


DOORS = {"page": web_login, "admin": admin_login, "token": token_login}


def logged_in(door: str, response) -> bool:
    if door == "token":
        return response.status_code == 200
    return response.status_code == 302 and "_auth_user_id" in response.client.session


@pytest.mark.parametrize("door", DOORS)
def test_each_way_of_logging_in_refuses_the_right_password_after_the_limit(door):
    UserFactory(username="hank", password=PASSWORD, is_staff=True)
    login = DOORS[door]
    assert logged_in(door, login("hank", PASSWORD))
    for _ in range(3):
        assert not logged_in(door, login("hank", "guess"))

    refused = login("hank", PASSWORD)

    assert refused.status_code == 429
    assert not logged_in(door, refused)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("spelling", [" hank", "hank\t", "\u00a0hank ", "ｈａｎｋ"])
def test_a_username_however_typed_counts_against_the_same_account(door, spelling):
    UserFactory(username="hank", password=PASSWORD, is_staff=True)
    login = DOORS[door]
    for _ in range(3):
        login(spelling, "guess")

    # Locked under its plain spelling and under the one used to guess.
    assert login("hank", PASSWORD).status_code == 429
    assert login(spelling, PASSWORD).status_code == 429


def test_the_doors_share_one_count():
    UserFactory(username="hank", password=PASSWORD, is_staff=True)
    web_login("hank", "guess")
    admin_login(" hank", "guess")
    token_login("hank\t", "guess")

    assert_error_shape(token_login("hank", PASSWORD), 429, "throttled")


def test_the_login_page_says_how_long_to_wait():
    UserFactory(username="hank", password=PASSWORD)
    for _ in range(3):
        web_login("hank", "guess")

    page = web_login("hank", PASSWORD)

    assert page.status_code == 429
    assert "Too many failed logins. Wait 15 minutes" in page.content.decode()


def test_an_address_is_refused_at_its_own_higher_limit_not_the_accounts():
    UserFactory(username="hank", password=PASSWORD)
    # Five people behind one address each mistype once: more than an account's limit, below the address's.
    for name in ("ann", "bob", "cat", "dan", "eve"):
        assert token_login(name, "guess").status_code == 401
    assert token_login("hank", PASSWORD).status_code == 200

    assert token_login("fay", "guess").status_code == 429  # the sixth failure from the address
    assert_error_shape(token_login("hank", PASSWORD), 429, "throttled")
    assert token_login("hank", PASSWORD, REMOTE_ADDR="192.0.2.9").status_code == 200


def test_without_trusted_proxies_x_forwarded_for_is_ignored():
    UserFactory(username="hank", password=PASSWORD)
    for index in range(6):
        token_login(f"guesser{index}", "guess", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"203.0.113.{index}")

    # Everyone comes from the proxy's address, which is now refused.
    assert (
        token_login("hank", PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code
        == 429
    )


def test_behind_a_trusted_proxy_each_client_has_its_own_count(limits):
    limits.TRUSTED_PROXY_COUNT = 1
    UserFactory(username="hank", password=PASSWORD)
    for index in range(6):
        # The attacker writes an X-Forwarded-For of its own; the proxy appends the address it saw.
        forwarded = f"198.51.100.{index}, 203.0.113.7"
        token_login(f"guesser{index}", "guess", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)

    assert (
        token_login("hank", PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code
        == 429
    )
    assert (
        token_login("hank", PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code
        == 200
    )


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.7", PROXY),
        (1, None, PROXY),
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        (1, "not an address", PROXY),
        (1, "2001:db8::1", "2001:db8::1"),
        (2, "198.51.100.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (2, "203.0.113.7", "203.0.113.7"),
    ],
)
def test_the_client_address(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {"REMOTE_ADDR": PROXY}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded

    assert client_address(RequestFactory().get("/", **headers)) == expected
