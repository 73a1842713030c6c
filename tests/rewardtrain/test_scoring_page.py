"""The scoring page without a worker: who may open it, what it refuses before anything is sent to a worker
(empty boxes, the request limits, no active model), and what it says when no worker answers. The scores
themselves come from a real worker in test_scoring_page_browser.py."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from annotate.models import Membership
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.rewardtrain.scoring_data import reward_model_row

pytestmark = pytest.mark.django_db


def _client(project, role) -> Client:
    client = Client()
    user = UserFactory()
    if role is not None:
        MembershipFactory(user=user, project=project, role=role)
    client.force_login(user)
    return client


def _url(project) -> str:
    return f"/projects/{project.slug}/scoring/"


@pytest.mark.parametrize("role", [Membership.Role.LEAD, Membership.Role.ENGINEER])
def test_leads_and_engineers_get_the_form_with_two_empty_response_boxes(role):
    project = ProjectFactory()
    reward_model_row(project, "unused", version=3, active=True)
    response = _client(project, role).get(_url(project))
    assert response.status_code == 200
    text = response.content.decode()
    assert text.count('name="response"') == 2 + 1  # two boxes and the template a new box is cloned from
    assert "The active model (v3)" in text and 'id="no-active-model"' not in text
    assert 'hx-post="/projects/' in text and 'aria-current="page">Scoring</a>' in text


def test_annotators_get_403_and_outsiders_404():
    project = ProjectFactory()
    assert _client(project, Membership.Role.ANNOTATOR).get(_url(project)).status_code == 403
    assert _client(project, None).post(_url(project), {"prompt": "x", "response": ["y"]}).status_code == 404


def test_a_project_without_an_active_model_says_so_before_and_after_scoring():
    project = ProjectFactory()
    client = _client(project, Membership.Role.ENGINEER)
    assert 'id="no-active-model"' in client.get(_url(project)).content.decode()
    response = client.post(_url(project), {"model": "active", "prompt": "Hi", "response": ["a", "b"]})
    assert response.status_code == 200
    assert response.context["failure"].code == "no_active_model"
    text = response.content.decode()
    assert "This project has no active reward model" in text and f"/projects/{project.slug}/training/" in text
    # What was typed stays in the form.
    assert ">Hi</textarea>" in text and ">b</textarea>" in text


def test_a_version_that_is_not_active_can_be_chosen_and_another_projects_model_cannot(settings):
    settings.SCORING_TIMEOUT_SECONDS = 1
    project = ProjectFactory()
    older = reward_model_row(project, "unused", version=1, active=False)
    other = reward_model_row(ProjectFactory(), "unused", version=1, active=True)
    client = _client(project, Membership.Role.ENGINEER)
    page = client.get(_url(project)).content.decode()
    assert f'<option value="{older.pk}">v1</option>' in page and "The active model (none yet)" in page
    refused = client.post(_url(project), {"model": str(other.pk), "prompt": "Hi", "response": ["a"]})
    assert refused.context["failure"].code == "not_found"
    # The version of this project is sent to a worker: none runs here, so no answer comes.
    sent = client.post(_url(project), {"model": str(older.pk), "prompt": "Hi", "response": ["a"]})
    assert sent.context["failure"].code == "scoring_unavailable"


def test_empty_boxes_are_named_and_nothing_is_sent(settings):
    settings.SCORING_TIMEOUT_SECONDS = 5
    project = ProjectFactory()
    reward_model_row(project, "unused", active=True)
    client = _client(project, Membership.Role.ENGINEER)
    started = time.monotonic()
    response = client.post(_url(project), {"prompt": "  ", "response": ["a good answer", " ", "another"]})
    assert time.monotonic() - started < 2  # refused at once, never waiting for a worker
    failure = response.context["failure"]
    assert set(failure.fields) == {"prompt", "responses.1"}
    text = response.content.decode()
    assert "Nothing was scored" in text and "Write the prompt the responses answer" in text
    assert 'id="response-2-error"' in text and "This box is empty" in text
    no_boxes = client.post(_url(project), {"prompt": "Hi"})
    assert set(no_boxes.context["failure"].fields) == {"responses"}
    assert len(no_boxes.context["boxes"]) == 2  # the form comes back with its two empty boxes


def test_the_request_limits_of_the_api_apply_and_name_the_box(settings):
    settings.SCORING_MAX_RESPONSES, settings.SCORING_MAX_CHARS = 3, 50
    project = ProjectFactory()
    reward_model_row(project, "unused", active=True)
    client = _client(project, Membership.Role.ENGINEER)
    too_many = client.post(_url(project), {"prompt": "Hi", "response": ["a", "b", "c", "d"]})
    assert "at most 3 responses per request" in too_many.context["failure"].message
    too_long = client.post(_url(project), {"prompt": "Hi", "response": ["a", "b" * 51]})
    assert set(too_long.context["failure"].fields) == {"responses.1"}
    assert 'id="response-2-error"' in too_long.content.decode()


def test_when_no_worker_answers_the_page_says_so_in_time(settings):
    settings.SCORING_TIMEOUT_SECONDS = 1
    project = ProjectFactory()
    reward_model_row(project, "unused", active=True)
    client = _client(project, Membership.Role.ENGINEER)
    started = time.monotonic()
    response = client.post(
        _url(project), {"prompt": "Hi", "response": ["a", "b"]}, headers={"HX-Request": "true"}
    )
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    text = response.content.decode()
    # htmx gets the panel alone, with the error and the form as typed.
    assert "<html" not in text and text.lstrip().startswith('<section class="card scoring-panel"')
    assert "No scoring worker answered within 1 s" in text and "make run</code> starts one" in text
    assert ">a</textarea>" in text and ">b</textarea>" in text
