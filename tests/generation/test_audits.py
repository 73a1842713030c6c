"""Audits without a server: what creating one queues, and the figures read from judgments."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from annotate.models import Membership
from generation.models import AuditComparison, GenerationJob, ModelAudit
from generation.selectors import audit_figures
from generation.services.audits import audit_create, audit_report_write
from palate.errors import ApplicationError
from palate.storage import ARTIFACTS, store_list, store_read_bytes
from tests.factories import (
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    PromptFactory,
    ResponseFactory,
    SystemFactory,
    UserFactory,
)
from tests.rewardtrain.scoring_data import reward_model_row

pytestmark = pytest.mark.django_db


def test_an_audit_runs_its_own_generation_job_of_max_n_plus_one_samples_without_pairs():
    system = SystemFactory()
    PromptFactory.create_batch(2, project=system.project, category="held-out")
    PromptFactory(project=system.project, category="train")
    model = reward_model_row(system.project, "unused")
    audit = audit_create(
        reward_model=model, system=system, n_values=[4, 1, 2, 2], scope="category", scope_value="held-out"
    )
    generation = audit.generation_job
    assert audit.n_values == [1, 2, 4] and len(audit.sample_ids) == 5
    assert (generation.samples, generation.make_pairs, generation.total) == (5, False, 10)
    assert generation.status == GenerationJob.Status.QUEUED and generation.enqueued_at is None
    assert audit.status == ModelAudit.Status.QUEUED


@pytest.mark.parametrize("values", [[], [0, 2], [99]])
def test_it_refuses_values_of_n_out_of_range(values):
    system = SystemFactory()
    PromptFactory(project=system.project)
    with pytest.raises(ApplicationError):
        audit_create(reward_model=reward_model_row(system.project, "unused"), system=system, n_values=values)
    assert not ModelAudit.objects.exists()


def _comparison(audit, n, *, chosen_is_a: bool, score: float, votes: list[str]):
    prompt = PromptFactory(project=audit.project)
    chosen, reference = ResponseFactory(prompt=prompt), ResponseFactory(prompt=prompt)
    pair = PairFactory(
        prompt=prompt,
        response_a=chosen if chosen_is_a else reference,
        response_b=reference if chosen_is_a else chosen,
    )
    for choice in votes:
        JudgmentFactory(pair=pair, choice=choice)
    AuditComparison.objects.create(
        audit=audit, prompt=prompt, n=n, chosen=chosen, reference=reference, pair=pair, chosen_score=score
    )


def test_the_figures_count_the_choice_winning_whichever_side_it_is_and_ties_as_half():
    system = SystemFactory()
    audit = ModelAudit.objects.create(
        project=system.project,
        reward_model=reward_model_row(system.project, "unused"),
        system=system,
        n_values=[1, 2, 4],
    )
    _comparison(audit, 1, chosen_is_a=True, score=0.1, votes=["a", "b"])  # 1 of 2
    _comparison(audit, 2, chosen_is_a=False, score=0.5, votes=["b", "b", "tie"])  # 2.5 of 3
    _comparison(audit, 2, chosen_is_a=True, score=0.7, votes=["a"])  # 1 of 1
    _comparison(audit, 4, chosen_is_a=True, score=0.9, votes=["b", "both_bad"])  # 0.5 of 2
    figures = audit_figures(audit=audit)
    rows = {row["n"]: row for row in figures["rows"]}
    assert rows[1]["win_rate"] == pytest.approx(0.5) and rows[1]["judgments"] == 2
    assert rows[2]["win_rate"] == pytest.approx(3.5 / 4) and rows[2]["mean_score"] == pytest.approx(0.6)
    assert rows[4]["win_rate"] == pytest.approx(0.25)
    assert rows[2]["low"] < rows[2]["win_rate"] < rows[2]["high"]
    assert rows[1]["kl_bound"] == 0.0 and rows[4]["kl_bound"] > rows[2]["kl_bound"] > 0
    assert figures["rising_until"] == 2


def test_the_audit_page_shows_its_figures_to_engineers_only():
    system = SystemFactory()
    audit = ModelAudit.objects.create(
        project=system.project,
        reward_model=reward_model_row(system.project, "unused"),
        system=system,
        n_values=[1, 2],
    )
    _comparison(audit, 1, chosen_is_a=True, score=0.1, votes=["a", "b"])
    _comparison(audit, 2, chosen_is_a=True, score=0.4, votes=["a", "a"])
    user = UserFactory()
    MembershipFactory(user=user, project=system.project, role=Membership.Role.ENGINEER)
    client = Client()
    client.force_login(user)
    page = client.get(f"/projects/{system.project.slug}/generation/audits/{audit.pk}/").content.decode()
    assert "still rising at N = 2" in page and "audit-data" in page
    generation_page = client.get(f"/projects/{system.project.slug}/generation/").content.decode()
    assert f"Audit {audit.pk}" in generation_page
    annotator = UserFactory()
    MembershipFactory(user=annotator, project=system.project, role=Membership.Role.ANNOTATOR)
    client.force_login(annotator)
    assert client.get(f"/projects/{system.project.slug}/generation/audits/{audit.pk}/").status_code == 403


def test_the_figures_are_saved_beside_the_models_folder_in_the_artifacts_store(tmp_path):
    system = SystemFactory()
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "palate_training.json").write_text("{}")
    model = reward_model_row(system.project, str(directory))  # stored as runs/<run id>/model
    first = ModelAudit.objects.create(
        project=system.project, reward_model=model, system=system, n_values=[1, 2]
    )
    _comparison(first, 2, chosen_is_a=True, score=0.4, votes=["a", "a"])
    second = ModelAudit.objects.create(
        project=system.project, reward_model=model, system=system, n_values=[1]
    )
    audit_report_write(audit=first)
    path = audit_report_write(audit=second)
    reports = json.loads(store_read_bytes(ARTIFACTS, path))
    assert path == f"runs/{model.run_id}/palate_audits.json" and set(reports) == {
        str(first.pk),
        str(second.pk),
    }
    assert store_list(ARTIFACTS, model.path) == ["palate_training.json"]  # the model's hash holds
    assert (
        reports[str(first.pk)]["rows"][1]["win_rate"] == 1.0
        and reports[str(first.pk)]["system"] == system.name
    )


def test_saving_the_figures_says_so_when_the_models_files_are_elsewhere():
    system = SystemFactory()
    model = reward_model_row(system.project, "/nowhere/model")  # nothing stored
    audit = ModelAudit.objects.create(project=system.project, reward_model=model, system=system, n_values=[1])
    with pytest.raises(ApplicationError, match="not in the artifacts store"):
        audit_report_write(audit=audit)
