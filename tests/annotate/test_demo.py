"""The seeded demo teaches the training gate: its position-biased annotator (carol) keeps the gate closed, the
quality page says what to do about it, and an export that leaves flagged annotators out opens the gate."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from annotate.models import Project
from annotate.services.agreement import agreement_snapshot_refresh
from annotate.services.exports.jobs import export_create, export_run
from palate.errors import ApplicationError
from rewardtrain.models import TrainingRun
from rewardtrain.services.runs import training_gate, training_run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings) -> Project:
    settings.TRAINING_BASE_MODELS = "minilm"
    call_command("seed_demo", stdout=StringIO())
    project = Project.objects.get(slug="demo")
    agreement_snapshot_refresh(project_id=project.pk)
    return project


def _export(project: Project, **policy):
    export = export_create(project=project, policy=policy, formats=["jsonl"], created_by=None, enqueue=False)
    return export_run(export_id=export.pk)


def test_the_demo_s_gate_is_closed_by_carol_and_opened_by_an_export_that_leaves_her_out(demo):
    gate = training_gate(project=demo)
    assert not gate["ok"]
    assert any(reason.startswith("carol: chose the left response") for reason in gate["reasons"])

    everyone = _export(demo)
    assert training_gate(project=demo, export=everyone) == gate
    with pytest.raises(ApplicationError) as refused:
        training_run_create(project=demo, base_model="minilm", export=everyone, enqueue=False)
    assert refused.value.code == "below_target" and "exclude_flagged" in refused.value.message

    without_flagged = _export(demo, exclude_flagged=True)
    assert without_flagged.counts["annotators_excluded"]["flagged"] == 1
    assert training_gate(project=demo, export=without_flagged) == {"ok": True, "reasons": []}
    run = training_run_create(project=demo, base_model="minilm", export=without_flagged, enqueue=False)
    assert run.status == TrainingRun.Status.QUEUED and "below the quality targets" not in run.log


def test_an_export_that_leaves_someone_out_is_still_held_to_the_targets(demo):
    demo.target_alpha = 0.99
    demo.save(update_fields=["target_alpha"])
    without_flagged = _export(demo, exclude_flagged=True)
    gate = training_gate(project=demo, export=without_flagged)
    assert not gate["ok"] and gate["reasons"][0].startswith("Krippendorff's alpha is")
    assert not any("carol" in reason for reason in gate["reasons"])


def test_the_demo_s_quality_page_says_what_to_do_with_links(demo, client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="lead"))
    page = client.get("/projects/demo/quality/").content.decode()
    assert "What to do" in page and "Leave the flagged annotator out</strong> (carol)" in page
    assert 'href="/projects/demo/exports/"' in page and "Leave out flagged annotators" in page
    assert 'href="/projects/demo/training/"' in page and 'href="/api/docs/"' in page
