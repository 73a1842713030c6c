"""The generation page: register and change systems, start, cancel and rerun jobs, by role. The jobs are
queued (not run: the worker's side is tested in test_jobs.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from annotate.models import Membership
from generation.models import GenerationJob, System
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory, SystemFactory, UserFactory
from tests.rewardtrain.scoring_data import reward_model_row

pytestmark = pytest.mark.django_db


def _client(project, role) -> Client:
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_a_lead_registers_a_system_and_sees_its_key_variable_but_no_key():
    project = ProjectFactory()
    client = _client(project, Membership.Role.LEAD)
    answer = client.post(
        f"/projects/{project.slug}/generation/",
        {"action": "system", "name": "hosted", "base_url": "https://api.example.org/v1", "model": "m",
         "temperature": "0.3", "seed": "", "api_key_env": "HOSTED_KEY"},
    )  # fmt: skip
    assert answer.status_code == 302
    system = System.objects.get()
    assert (system.temperature, system.seed, system.api_key_env) == (0.3, None, "HOSTED_KEY")
    page = client.get(f"/projects/{project.slug}/generation/").content.decode()
    assert "$HOSTED_KEY" in page and "hosted" in page


def test_a_bad_system_form_says_which_field_and_keeps_what_was_typed():
    project = ProjectFactory()
    client = _client(project, Membership.Role.ENGINEER)
    answer = client.post(
        f"/projects/{project.slug}/generation/",
        {"action": "system", "name": "x", "base_url": "localhost:8080", "model": "m", "top_p": "lots"},
    )
    assert answer.status_code == 400
    page = answer.content.decode()
    assert "must be a number" in page and 'value="localhost:8080"' in page
    assert not System.objects.exists()


def test_a_job_started_from_the_page_is_queued_for_the_chosen_prompts_and_systems():
    system = SystemFactory()
    project = system.project
    PromptFactory.create_batch(3, project=project, category="maths")
    PromptFactory(project=project, category="poems")
    client = _client(project, Membership.Role.ENGINEER)
    answer = client.post(
        f"/projects/{project.slug}/generation/",
        {"action": "job", "systems": [str(system.pk)], "samples": "2", "scope": "category",
         "scope_value_category": "maths", "pairing": "all"},
    )  # fmt: skip
    assert answer.status_code == 302, answer.content.decode()[:2000]
    job = GenerationJob.objects.get()
    assert (job.total, job.status, len(job.prompt_ids)) == (6, "queued", 3)
    live = client.get(f"/projects/{project.slug}/generation/jobs/").content.decode()
    assert "Job" in live and "every 2s" in live and "Cancel" in live
    client.post(f"/projects/{project.slug}/generation/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == "cancelled"
    client.post(f"/projects/{project.slug}/generation/jobs/{job.pk}/rerun/")
    assert GenerationJob.objects.filter(status="queued", prompt_ids=job.prompt_ids).count() == 1


def test_a_job_form_without_systems_says_so():
    system = SystemFactory()
    PromptFactory(project=system.project)
    answer = _client(system.project, Membership.Role.LEAD).post(
        f"/projects/{system.project.slug}/generation/", {"action": "job", "samples": "1", "scope": "all"}
    )
    assert answer.status_code == 400 and "choose at least one system" in answer.content.decode()


def test_the_system_page_changes_and_removes_a_system():
    system = SystemFactory()
    client = _client(system.project, Membership.Role.LEAD)
    url = f"/projects/{system.project.slug}/generation/systems/{system.pk}/"
    assert client.get(url).status_code == 200
    values = {"name": system.name, "base_url": system.base_url, "model": "other", "temperature": "1.5"}
    assert client.post(url, values).status_code == 302
    system.refresh_from_db()
    assert (system.model, system.temperature) == ("other", 1.5)
    client.post(url + "remove/")
    assert not System.objects.exists()


def test_annotators_get_403_and_outsiders_404():
    system = SystemFactory()
    assert (
        _client(system.project, Membership.Role.ANNOTATOR)
        .get(f"/projects/{system.project.slug}/generation/")
        .status_code
        == 403
    )
    assert (
        _client(ProjectFactory(), Membership.Role.LEAD)
        .get(f"/projects/{system.project.slug}/generation/")
        .status_code
        == 404
    )


def test_the_best_of_n_page_offers_the_projects_models_and_systems_and_says_what_is_missing():
    system = SystemFactory(name="sampler")
    client = _client(system.project, Membership.Role.ENGINEER)
    url = f"/projects/{system.project.slug}/generation/best-of-n/"
    assert "needs a trained reward model" in client.get(url).content.decode()
    model = reward_model_row(system.project, "unused")
    page = client.get(url).content.decode()
    assert "sampler" in page and f"v{model.version} (active)" in page
    answer = client.post(
        url, {"reward_model": str(model.pk), "system": str(system.pk), "n": "2", "prompt": " "}
    )
    assert answer.status_code == 400 and "write a prompt" in answer.content.decode()
