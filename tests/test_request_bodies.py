"""Requests no endpoint can use (bodies, addresses, page numbers) are refused in the one error shape, never with
a 500 or Django's HTML page."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

JSON_ENDPOINTS = ["/api/judgments/", "/api/projects/{project}/members/", "/api/projects/{project}/exports/"]


@pytest.fixture
def client():
    project = ProjectFactory()
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role="lead")
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(lead)
    client.project = project
    return client


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_json_body_nested_100_000_deep_is_a_400(client, path):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(path.format(project=client.project.pk), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "nested too deeply" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_body_over_the_size_limit_is_a_413_in_the_error_shape(client, path, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"name": "' + "x" * 5000 + '"}'
    response = client.post(path.format(project=client.project.pk), body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/projects/{project}/leaderboard/?category=a%00b", None),
        ("delete", "/api/projects/{project}/members/ha%00nk/", None),
        (
            "post",
            "/api/projects/{project}/members/",
            {"username": "x", "role": "annotator", "attributes": {"a\x00": "1"}},
        ),
        ("post", "/api/projects/{project}/exports/", {"policy": {"license": "cc\x00by"}}),
        ("post", "/api/judgments/", {"assignment": 1, "choice": "left", "rationale": "a\x00"}),
    ],
    ids=["query", "path", "attribute key", "export licence", "rationale"],
)
def test_a_nul_character_anywhere_in_a_request_is_a_400_in_the_error_shape(client, method, path, body):
    response = getattr(client, method)(path.format(project=client.project.pk), body, format="json")
    assert response.status_code == 400, response.content
    assert "NUL" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize("encoding", ["multipart", "form"])
def test_a_form_body_is_a_415_since_it_cannot_carry_the_lists_and_objects_of_the_schema(
    client, path, encoding
):
    # A form's "criteria" or "attributes" field was dropped unseen, and the rest of the body accepted.
    data = {"assignment": "1", "choice": "left", "criteria": '{"helpfulness": "left"}'}
    if encoding == "multipart":
        response = client.post(path.format(project=client.project.pk), data, format="multipart")
    else:
        response = client.generic(
            "POST",
            path.format(project=client.project.pk),
            "choice=left&criteria=x",
            content_type="application/x-www-form-urlencoded",
        )
    assert response.status_code == 415, response.content
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_logging_in_still_takes_a_form():
    UserFactory(username="hank")
    response = APIClient().generic(
        "POST",
        "/api/auth/token/",
        "username=hank&password=correct+horse+battery+staple",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.content
    assert response.json()["username"] == "hank"


@pytest.mark.parametrize("path", ["/api/projects/x/", "/api/judgments/1.5/", "/api/nothing-here/"])
def test_an_api_address_no_endpoint_matches_is_a_404_in_the_error_shape(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_page_address_no_view_matches_is_still_the_404_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("query", ["page=", "page=abc", "page=1&page=2", "page=-1", "page=%D9%A3"])
def test_a_page_number_that_is_not_one_whole_number_is_a_400(client, query):
    response = client.get(f"/api/projects/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"] == {"page": ["must be one whole number from 1"]}


def test_a_page_past_the_end_is_a_404_and_the_first_page_needs_no_number(client):
    assert client.get("/api/projects/?page=1").json()["count"] == 1
    assert client.get("/api/projects/").json()["count"] == 1
    assert client.get("/api/projects/?page=2").status_code == 404
