"""Systems (model endpoints): the service's checks and the API, with its roles. No server needed."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotate.models import Membership
from generation.models import System
from generation.services.systems import system_create, system_update
from palate.errors import ApplicationError, Conflict
from tests.factories import MembershipFactory, ProjectFactory, SystemFactory, UserFactory

pytestmark = pytest.mark.django_db

VALID = {"name": "smol-hot", "base_url": "http://vllm:8000/v1", "model": "smollm2", "temperature": 1.2}


def _client(project, role):
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_system_accepts_a_compose_service_name_and_keeps_defaults():
    system = system_create(project=ProjectFactory(), **VALID)
    assert system.base_url == "http://vllm:8000/v1" and system.temperature == 1.2
    assert (system.top_p, system.max_tokens, system.max_concurrency, system.api_key_env) == (1.0, 512, 4, "")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"base_url": "ftp://host/v1"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "http://[::1/v1"}, "base_url"),
        ({"base_url": "http://host:99999/v1"}, "base_url"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"api_key_env": "sk-live-abc"}, "api_key_env"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_it_refuses_bad_settings_naming_the_field(values, field):
    with pytest.raises(ApplicationError) as caught:
        system_create(project=ProjectFactory(), **{**VALID, **values})
    assert field in caught.value.fields
    assert not System.objects.exists()


def test_a_second_system_of_the_same_name_is_a_conflict_but_another_project_may_use_it():
    project = ProjectFactory()
    system_create(project=project, **VALID)
    with pytest.raises(Conflict):
        system_create(project=project, **VALID)
    system_create(project=ProjectFactory(), **VALID)
    assert System.objects.count() == 2


def test_an_update_is_checked_like_a_creation():
    system = SystemFactory()
    with pytest.raises(ApplicationError):
        system_update(system=system, top_p=-0.1)
    system.refresh_from_db()
    assert system.top_p == 0.95


def test_an_engineer_registers_changes_lists_and_removes_a_system_over_the_api():
    project = ProjectFactory()
    client = _client(project, Membership.Role.ENGINEER)
    created = client.post(
        f"/api/projects/{project.pk}/systems/", {**VALID, "api_key_env": "OPENAI_API_KEY"}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["api_key_env"] == "OPENAI_API_KEY" and "api_key" not in body
    changed = client.patch(f"/api/systems/{body['id']}/", {"temperature": 0.2, "seed": 7}, format="json")
    assert changed.status_code == 200 and changed.json()["temperature"] == 0.2 and changed.json()["seed"] == 7
    listed = client.get(f"/api/projects/{project.pk}/systems/").json()
    assert [row["name"] for row in listed["results"]] == ["smol-hot"]
    assert client.delete(f"/api/systems/{body['id']}/").status_code == 204
    assert not System.objects.exists()


def test_the_api_answers_bad_input_in_the_one_error_shape():
    project = ProjectFactory()
    client = _client(project, Membership.Role.LEAD)
    answer = client.post(
        f"/api/projects/{project.pk}/systems/", {**VALID, "base_url": "file:///etc"}, format="json"
    )
    assert answer.status_code == 400
    assert "base_url" in answer.json()["error"]["fields"]
    client.post(f"/api/projects/{project.pk}/systems/", VALID, format="json")
    again = client.post(f"/api/projects/{project.pk}/systems/", VALID, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_annotators_are_refused_and_outsiders_see_nothing():
    system = SystemFactory()
    annotator = _client(system.project, Membership.Role.ANNOTATOR)
    assert annotator.get(f"/api/projects/{system.project.pk}/systems/").status_code == 403
    assert annotator.get(f"/api/systems/{system.pk}/").status_code == 403
    outsider = _client(ProjectFactory(), Membership.Role.LEAD)
    assert outsider.get(f"/api/systems/{system.pk}/").status_code == 404
    assert (
        outsider.post(f"/api/projects/{system.project.pk}/systems/", VALID, format="json").status_code == 404
    )
