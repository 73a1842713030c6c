"""Training runs without a worker: validation, the quality gate, cancel, the claim, the reaper, periodic
retraining, activation and the API's permissions. The worker end to end is in test_runs_e2e.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.pagination import PageNumberPagination
from rest_framework.test import APIClient

from annotate.models import Export, Judgment, Membership
from palate.errors import Conflict
from palate.jobs.services import jobs_reap
from rewardtrain.models import RetrainingSettings, RewardModel, TrainingRun
from rewardtrain.services import runs
from rewardtrain.services.run_execution import training_run_execute
from rewardtrain.services.runs import (
    reward_model_activate,
    run_directory,
    training_retrain_due,
    training_run_cancel,
    training_run_create,
)
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.rewardtrain.runs_data import FAST, judged_project, succeeded_export

pytestmark = pytest.mark.django_db


@pytest.fixture
def gate_ok(monkeypatch):
    monkeypatch.setattr(runs, "training_gate", lambda *, project: {"ok": True, "reasons": []})


def _member(project, role):
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=role)
    client = APIClient()
    client.force_authenticate(user)
    return user, client


def _queued_run(project, **fields):
    return TrainingRun.objects.create(project=project, base_model="minilm", hyperparameters={}, **fields)


def test_bad_hyperparameters_are_refused_naming_each_field(gate_ok, listed_base_model):
    project, _ = judged_project(20)
    export = succeeded_export(project)
    _, client = _member(project, Membership.Role.ENGINEER)
    response = client.post(
        f"/api/projects/{project.pk}/training-runs/",
        {
            "base_model": listed_base_model,
            "export": export.pk,
            "hyperparameters": {"learning_rate": -1, "batch_sise": 4},
        },
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error["fields"]) == {"hyperparameters.learning_rate", "hyperparameters.batch_sise"}
    assert "must be > 0" in error["fields"]["hyperparameters.learning_rate"][0]
    assert error["fields"]["hyperparameters.batch_sise"] == ["unknown hyperparameter"]
    assert error["message"].startswith("hyperparameters.")
    assert not TrainingRun.objects.exists()


def test_it_trains_only_on_a_succeeded_preference_export_of_the_same_project(gate_ok, listed_base_model):
    project, _ = judged_project(10)
    other = ProjectFactory()
    foreign = Export.objects.create(project=other, version=1, status=Export.Status.SUCCEEDED)
    queued = Export.objects.create(project=project, version=9)
    for export, words in ((foreign, "not an export of this project"), (queued, "is queued")):
        with pytest.raises(runs.ApplicationError) as caught:
            training_run_create(project=project, base_model=listed_base_model, export=export)
        assert words in caught.value.message and "export" in caught.value.fields
    with pytest.raises(runs.ApplicationError) as caught:
        training_run_create(project=project, base_model=listed_base_model, policy={"lable": "majority"})
    assert "policy.lable" in caught.value.fields
    with pytest.raises(runs.ApplicationError) as caught:
        training_run_create(project=project, base_model=listed_base_model)
    assert "either an export" in caught.value.message


def test_the_quality_gate_refuses_a_run_unless_asked_to_go_below_target(
    django_capture_on_commit_callbacks, listed_base_model
):
    project, _ = judged_project(10)
    export = succeeded_export(project)
    _, client = _member(project, Membership.Role.LEAD)
    url = f"/api/projects/{project.pk}/training-runs/"
    response = client.post(url, {"base_model": listed_base_model, "export": export.pk}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (
        error["code"] == "below_target"
        and "No agreement figures yet" in error["fields"]["allow_below_target"][0]
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            url,
            {"base_model": listed_base_model, "export": export.pk, "allow_below_target": True},
            format="json",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["hyperparameters"]["learning_rate"] == 5e-5
    assert "below the quality targets" in body["log"]
    assert len(callbacks) == 1  # the gpu task, queued once the row is committed


def test_a_queued_run_is_cancelled_at_once_a_running_one_is_asked_to_stop(gate_ok):
    project = ProjectFactory()
    queued = _queued_run(project)
    assert training_run_cancel(run=queued).status == TrainingRun.Status.CANCELLED
    running = _queued_run(project, status=TrainingRun.Status.RUNNING, heartbeat_at=timezone.now())
    running = training_run_cancel(run=running)
    assert running.status == TrainingRun.Status.RUNNING and running.cancel_requested
    with pytest.raises(Conflict):
        training_run_cancel(run=queued)


def test_a_redelivered_task_leaves_a_run_that_is_running_elsewhere_alone():
    project = ProjectFactory()
    run = _queued_run(
        project, status=TrainingRun.Status.RUNNING, heartbeat_at=timezone.now(), attempts=1, worker="w1"
    )
    assert training_run_execute(run_id=run.pk, worker_name="w2") is None
    run.refresh_from_db()
    assert (run.attempts, run.worker, run.status) == (1, "w1", TrainingRun.Status.RUNNING)
    finished = _queued_run(project, status=TrainingRun.Status.SUCCEEDED)
    assert training_run_execute(run_id=finished.pk, worker_name="w2") is None


def test_an_installed_base_model_missing_on_the_worker_fails_the_run_with_a_clear_error(tmp_path, settings):
    project, _ = judged_project(12)
    export = succeeded_export(project)
    missing = tmp_path / "no-such-model"
    settings.TRAINING_BASE_MODELS = f"ghost={missing}"
    run = training_run_create(
        project=project, base_model="ghost", hyperparameters=FAST, export=export, allow_below_target=True
    )
    run = training_run_execute(run_id=run.pk, worker_name="test")
    assert run.status == TrainingRun.Status.FAILED and run.attempts == 1
    assert str(missing) in run.error
    assert run.finished_at is not None and not RewardModel.objects.exists()


def test_a_run_with_a_policy_makes_its_export_first(listed_base_model):
    project, _ = judged_project(12)
    run = training_run_create(
        project=project, base_model=listed_base_model, policy={"split": 0.75}, allow_below_target=True
    )
    run = training_run_execute(run_id=run.pk, worker_name="test")
    assert run.export is not None and run.export.status == Export.Status.SUCCEEDED
    assert run.export.policy["split"] == 0.75 and "making export v1" in run.log


def test_the_reaper_requeues_stale_runs_while_attempts_remain_then_fails_them(
    settings, django_capture_on_commit_callbacks
):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 60
    project = ProjectFactory()
    old = timezone.now() - timedelta(minutes=5)
    running = TrainingRun.Status.RUNNING
    retry = _queued_run(project, status=running, heartbeat_at=old, attempts=1)
    spent = _queued_run(project, status=running, heartbeat_at=old, attempts=3)
    stopping = _queued_run(project, status=running, heartbeat_at=old, attempts=1, cancel_requested=True)
    alive = _queued_run(project, status=running, heartbeat_at=timezone.now(), attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        counts = jobs_reap()
    assert counts == {"requeued": 1, "failed": 1, "cancelled": 1, "resent": 0}
    assert len(callbacks) == 1
    for run in (retry, spent, stopping, alive):
        run.refresh_from_db()
    assert retry.status == TrainingRun.Status.QUEUED and "queued again" in retry.log
    assert spent.status == TrainingRun.Status.FAILED and spent.error.startswith(
        "worker lost (no heartbeat since"
    )
    assert stopping.status == TrainingRun.Status.CANCELLED
    assert alive.status == running


def test_the_reaper_sends_the_task_of_a_run_left_queued_again_then_fails_it(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.JOB_QUEUED_RESEND_SECONDS = 600
    settings.JOB_QUEUED_TIMEOUT_SECONDS = 3600
    sent = []
    monkeypatch.setattr(
        "rewardtrain.tasks.training_run_task.apply_async", lambda **options: sent.append(options["args"])
    )
    project = ProjectFactory()
    now = timezone.now()
    lost = _queued_run(project)  # its message never reached a worker
    TrainingRun.objects.filter(pk=lost.pk).update(created_at=now - timedelta(minutes=11))
    fresh = _queued_run(project, enqueued_at=now - timedelta(minutes=5))
    requeued = _queued_run(
        project, queued_at=now - timedelta(minutes=20), enqueued_at=now - timedelta(minutes=20)
    )
    abandoned = _queued_run(
        project, queued_at=now - timedelta(hours=2), enqueued_at=now - timedelta(minutes=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_reap()
    assert counts == {"requeued": 0, "failed": 1, "cancelled": 0, "resent": 2}
    assert sorted(sent) == sorted([[lost.pk], [requeued.pk]])
    for run in (lost, fresh, requeued, abandoned):
        run.refresh_from_db()
    assert lost.status == requeued.status == fresh.status == TrainingRun.Status.QUEUED
    assert "its task was not sent when it was queued; sent " in lost.log and lost.enqueued_at > now
    assert "s after its task was sent; sent again" in requeued.log and fresh.log == ""
    assert abandoned.status == TrainingRun.Status.FAILED
    assert (
        abandoned.error.startswith("no worker took the run in 3600 s") and "the gpu queue" in abandoned.error
    )
    assert abandoned.finished_at

    # Sent a moment ago: nothing to do until the interval passes again; the claim makes a duplicate harmless.
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_reap()["resent"] == 0
    assert training_run_execute(run_id=abandoned.pk, worker_name="late") is None


def test_a_run_past_its_soft_time_limit_fails_with_a_clear_error_and_keeps_its_checkpoint(tiny_base_model):
    from celery.exceptions import SoftTimeLimitExceeded

    from rewardtrain.training.trainer import latest_checkpoint

    project, _ = judged_project(40)
    export = succeeded_export(project)
    run = training_run_create(
        project=project, base_model=tiny_base_model, export=export, allow_below_target=True, enqueue=False,
        hyperparameters={**FAST, "num_epochs": 1, "save_steps": 2}, time_limit_seconds=300,
    )  # fmt: skip

    def progress(step: int, total: int, entry: dict) -> None:
        # Celery raises SoftTimeLimitExceeded in the task wherever it is; here, between two steps.
        if step == 3:
            raise SoftTimeLimitExceeded()

    run = training_run_execute(run_id=run.pk, worker_name="w", on_progress=progress, processes=1)
    assert run.status == TrainingRun.Status.FAILED and run.attempts == 1
    assert run.error == "the run passed its time limit of 300 s; its latest checkpoint is kept"
    assert 1 <= run.step <= 3 and run.finished_at is not None
    assert latest_checkpoint(run_directory(run=run)).name == "step-2"
    assert not RewardModel.objects.filter(run=run).exists()


def test_a_stale_running_run_can_be_claimed_by_a_redelivered_task(settings, listed_base_model):
    settings.JOB_HEARTBEAT_TIMEOUT_SECONDS = 60
    project, _ = judged_project(12)
    export = succeeded_export(project)
    run = TrainingRun.objects.create(
        project=project,
        export=export,
        base_model=listed_base_model,  # not on this machine: the attempt fails as it loads
        hyperparameters=FAST,
        status=TrainingRun.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        attempts=1,
    )
    run = training_run_execute(run_id=run.pk, worker_name="w2")
    assert run.attempts == 2 and run.worker.startswith("w2 pid ") and run.status == TrainingRun.Status.FAILED
    assert "worker lost (no heartbeat since" in run.log and "taken over" in run.log


def test_making_a_model_active_deactivates_the_others():
    project = ProjectFactory()
    first = RewardModel.objects.create(
        run=_queued_run(project), project=project, version=1, path="runs/1/model", is_active=True
    )
    second = RewardModel.objects.create(
        run=_queued_run(project), project=project, version=2, path="runs/2/model"
    )
    _, client = _member(project, Membership.Role.ENGINEER)
    response = client.post(f"/api/reward-models/{second.pk}/activate/")
    assert response.status_code == 200 and response.json()["is_active"] is True
    first.refresh_from_db()
    assert not first.is_active
    reward_model_activate(reward_model=first)
    assert list(RewardModel.objects.filter(is_active=True)) == [first]


def test_periodic_retraining_records_why_it_waits_and_starts_a_run_when_due(monkeypatch, listed_base_model):
    project, _ = judged_project(12)
    export = succeeded_export(project)
    retraining = RetrainingSettings.objects.create(project=project, enabled=True, min_new_judgments=5)
    assert training_retrain_due() == []
    retraining.refresh_from_db()
    assert retraining.outcome.startswith("No run to copy")

    last = training_run_create(
        project=project, base_model=listed_base_model, hyperparameters={"learning_rate": 1e-4}, export=export,
        allow_below_target=True, enqueue=False,
    )  # fmt: skip
    TrainingRun.objects.filter(pk=last.pk).update(status=TrainingRun.Status.SUCCEEDED)
    assert training_retrain_due() == []
    retraining.refresh_from_db()
    assert (
        retraining.outcome.startswith("0 new human judgments since run")
        and "waits for 5" in retraining.outcome
    )

    Judgment.objects.filter(pair__project=project).update(created_at=timezone.now() + timedelta(seconds=5))
    gate = {"ok": False, "reasons": ["Alpha 0.31 is below the target 0.6."]}
    monkeypatch.setattr("annotate.services.agreement.agreement_training_gate", lambda *, project: gate)
    assert training_retrain_due() == []
    retraining.refresh_from_db()
    assert "agreement is below target: Alpha 0.31" in retraining.outcome

    gate = {"ok": True, "reasons": []}
    started = training_retrain_due()
    assert len(started) == 1
    run = started[0]
    assert run.trigger == TrainingRun.Trigger.SCHEDULE and run.export is None
    assert run.policy == export.policy and run.hyperparameters == last.hyperparameters
    assert run.base_model == last.base_model
    retraining.refresh_from_db()
    assert retraining.last_started == run and retraining.outcome.startswith(f"Started run {run.pk}")
    assert training_retrain_due() == []  # one run at a time
    retraining.refresh_from_db()
    assert retraining.outcome == "A run is queued or running."


ENDPOINTS = [
    (
        "post",
        "/api/projects/{project}/training-runs/",
        {"base_model": "minilm", "policy": {}, "allow_below_target": True},
        202,
    ),
    ("get", "/api/projects/{project}/training-runs/", None, 200),
    ("get", "/api/training-runs/{run}/", None, 200),
    ("post", "/api/training-runs/{run}/cancel/", None, 202),
    ("get", "/api/projects/{project}/reward-models/", None, 200),
    ("post", "/api/reward-models/{model}/activate/", None, 200),
]


@pytest.mark.parametrize("method,url,body,ok", ENDPOINTS)
@pytest.mark.parametrize("role", ["outsider", "annotator", "engineer", "lead", "admin", "anonymous"])
def test_every_training_endpoint_is_for_engineers_leads_and_admins(
    method, url, body, ok, role, listed_base_model
):
    project = ProjectFactory()
    run = _queued_run(project, status=TrainingRun.Status.RUNNING)
    model = RewardModel.objects.create(run=_queued_run(project), project=project, version=1, path="p")
    client = APIClient()
    user = UserFactory(is_superuser=role == "admin", is_staff=role == "admin")
    if role in {"annotator", "engineer", "lead"}:
        MembershipFactory(user=user, project=project, role=role)
    if role != "anonymous":
        client.force_authenticate(user)
    response = getattr(client, method)(
        url.format(project=project.pk, run=run.pk, model=model.pk), body, format="json"
    )
    expected = {"outsider": 404, "annotator": 403, "anonymous": 401}.get(role, ok)
    assert response.status_code == expected, response.content
    assert expected == ok or set(response.json()) == {"error"}


def test_reward_models_are_listed_newest_first_a_page_at_a_time(monkeypatch):
    # The class reads PAGE_SIZE once, at import.
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    project = ProjectFactory()
    for version in (1, 2, 3):
        RewardModel.objects.create(run=_queued_run(project), project=project, version=version, path="p")
    _, client = _member(project, Membership.Role.ENGINEER)
    url = f"/api/projects/{project.pk}/reward-models/"

    first = client.get(url).json()
    second = client.get(first["next"]).json()

    assert first["count"] == 3
    assert [model["version"] for model in first["results"] + second["results"]] == [3, 2, 1]
    assert second["next"] is None


def test_the_permission_table_covers_every_training_endpoint():
    from rewardtrain.api import views
    from rewardtrain.api.urls import urlpatterns

    covered = {url.split("/api/", 1)[1] for _, url, _, _ in ENDPOINTS}
    names = {"<int:project_id>": "{project}", "<int:run_id>": "{run}", "<int:model_id>": "{model}"}
    routes = set()
    for pattern in urlpatterns:
        if pattern.callback.view_class.__module__ != views.__name__:
            continue  # scoring endpoints have their own tests
        route = str(pattern.pattern)
        for old, new in names.items():
            route = route.replace(old, new)
        routes.add(route)
    assert routes and routes <= covered


def test_the_command_trains_in_the_foreground_through_the_same_run(tiny_base_model):
    from io import StringIO

    from django.core.management import CommandError, call_command

    project, _ = judged_project(40)
    export = succeeded_export(project)
    with pytest.raises(CommandError, match=r"hyperparameters\.num_epochs"):
        call_command(
            "train_reward_model",
            project.slug,
            "--export",
            str(export.pk),
            "--base-model",
            tiny_base_model,
            "--set",
            "num_epochs=0",
        )
    out = StringIO()
    call_command(
        "train_reward_model", project.slug, "--export", str(export.pk), "--base-model", tiny_base_model,
        "--set", "num_epochs=1", "--set", "max_length=64", "--set", "eval_steps=0", "--allow-below-target",
        "--no-progress", stdout=out,
    )  # fmt: skip
    run = TrainingRun.objects.get(project=project)
    assert run.status == TrainingRun.Status.SUCCEEDED and run.trigger == TrainingRun.Trigger.COMMAND
    assert run.hyperparameters["num_epochs"] == 1 and run.step == run.total_steps
    assert "Reward model v1 at" in out.getvalue()


def test_the_training_pages_show_the_form_errors_per_field_and_a_run(client, listed_base_model):
    project, _ = judged_project(10)
    export = succeeded_export(project)
    engineer, _ = _member(project, Membership.Role.ENGINEER)
    annotator, _ = _member(project, Membership.Role.ANNOTATOR)
    client.force_login(annotator)
    assert client.get(f"/projects/{project.slug}/training/").status_code == 403
    client.force_login(engineer)
    page = client.get(f"/projects/{project.slug}/training/")
    assert (
        page.status_code == 200
        and b'name="hp-learning_rate"' in page.content
        and b"Below the quality targets" in page.content
    )
    response = client.post(
        f"/projects/{project.slug}/training/",
        {
            "source": "export",
            "export": export.pk,
            "base": f"model:{listed_base_model}",
            "hp-learning_rate": "-1",
            "hp-num_epochs": "two",
            "allow_below_target": "on",
        },
    )
    assert response.status_code == 200
    assert b"must be a whole number" in response.content  # num_epochs, checked by the page
    response = client.post(
        f"/projects/{project.slug}/training/",
        {
            "source": "export",
            "export": export.pk,
            "base": f"model:{listed_base_model}",
            "hp-learning_rate": "-1",
            "allow_below_target": "on",
        },
    )
    assert b"must be &gt; 0" in response.content and not TrainingRun.objects.exists()
    response = client.post(
        f"/projects/{project.slug}/training/",
        {
            "source": "export",
            "export": export.pk,
            "base": f"model:{listed_base_model}",
            "hp-learning_rate": "0.001",
            "allow_below_target": "on",
        },
    )
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.hyperparameters["learning_rate"] == 0.001
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"chart-loss" in page.content and b"Cancel run" in page.content
    assert client.get(f"/projects/{project.slug}/training/{run.pk}/live/").status_code == 200
    client.post(f"/projects/{project.slug}/training/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
