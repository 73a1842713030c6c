"""Search runs without a worker: the settings a run is refused for, a bad trial pruned by the median pruner,
and the time budget ending a search. Trials train here on the tiny decoder (tests/rewardtrain/conftest.py);
through real Celery workers in test_search_e2e.py."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.models import Membership
from palate.storage import ARTIFACTS, store_list
from rewardtrain.models import SearchTrial, TrainingRun
from rewardtrain.services.run_artifacts import trial_prefix
from rewardtrain.services.run_execution import training_run_execute
from rewardtrain.services.runs import training_run_create
from rewardtrain.services.search import search_trial_execute
from tests.factories import MembershipFactory
from tests.rewardtrain.runs_data import FAST, judged_project, search_run_with_trials, succeeded_export

pytestmark = pytest.mark.django_db


def test_a_search_run_is_refused_naming_each_bad_setting(listed_base_model):
    project, _ = judged_project(8)
    export = succeeded_export(project)
    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    body = {"base_model": listed_base_model, "export": export.pk, "allow_below_target": True}
    url = f"/api/projects/{project.pk}/training-runs/"

    response = client.post(
        url, {**body, "mode": "search", "search": {"trials": 0, "space": {"seed": [1, 2]}}}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"search.trials", "search.space.seed"}
    response = client.post(url, {**body, "search": {"trials": 3}}, format="json")
    assert response.status_code == 400 and "mode 'search'" in response.json()["error"]["fields"]["search"][0]
    response = client.post(
        url,
        {**body, "mode": "search", "time_limit_seconds": 600, "search": {"time_budget_seconds": 590}},
        format="json",
    )
    assert response.status_code == 400 and "at most 480 s" in response.json()["error"]["message"]

    response = client.post(
        url, {**body, "mode": "search", "hyperparameters": {"ensemble_size": 3}}, format="json"
    )
    assert response.status_code == 400 and "single models" in response.json()["error"]["message"]

    response = client.post(url, {**body, "mode": "search", "search": {"trials": 3}}, format="json")
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["mode"] == "search" and created["search"]["trials"] == 3 and created["trials"] == []
    assert created["search"]["space"] == {} and created["search"]["metric"] == "accuracy"


def _running_search(project, export, base_model: str, search: dict, hyperparameters: dict) -> TrainingRun:
    run = training_run_create(
        project=project, base_model=base_model, export=export, allow_below_target=True, enqueue=False,
        mode="search", search=search, hyperparameters=hyperparameters,
    )  # fmt: skip
    return run


def test_the_median_pruner_stops_a_deliberately_bad_trial_at_its_first_evaluation(tiny_base_model):
    project, _ = judged_project(40)
    export = succeeded_export(project)
    hyperparameters = {**FAST, "eval_steps": 2}
    run = _running_search(
        project,
        export,
        tiny_base_model,
        {"trials": 3, "prune_after_trials": 2, "space": {"learning_rate": [1e-9, 1e-2]}},
        hyperparameters,
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now(), attempts=1
    )
    # Two finished trials that were right on every validation pair at every evaluation.
    for number in (0, 1):
        SearchTrial.objects.create(
            run=run, number=number, params={"learning_rate": 1e-4}, status=SearchTrial.Status.SUCCEEDED,
            value=1.0, intermediate=[{"step": step, "accuracy": 1.0, "loss": 0.1} for step in (2, 4, 6, 8)],
        )  # fmt: skip
    # A learning rate too small to learn anything: chance accuracy at step 2.
    bad = SearchTrial.objects.create(run=run, number=2, params={"learning_rate": 1e-9})

    trial = search_trial_execute(trial_id=bad.pk, worker_name="test")

    assert trial.status == SearchTrial.Status.SUCCEEDED and trial.outcome == "pruned", trial.log + trial.error
    assert trial.pruned_at_step == 2 and trial.step == 2 < trial.total_steps
    assert trial.value == trial.intermediate[0]["accuracy"] < 1.0
    assert "pruned at step 2" in trial.log
    assert store_list(ARTIFACTS, trial_prefix(run.pk, 2)) == []  # no model, its checkpoints removed


def test_the_time_budget_stops_the_search_and_its_running_trial(tiny_base_model):
    project, _ = judged_project(40)
    export = succeeded_export(project)
    # Every trial would take minutes (batch 1, 100 epochs); the budget has 8 s left when the run starts.
    search = {"trials": 3, "parallel": 1, "time_budget_seconds": 30, "space": {"num_epochs": [100, 100]}}
    run = _running_search(
        project, export, tiny_base_model, search, {**FAST, "batch_size": 1, "eval_steps": 0}
    )
    TrainingRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=22))
    began = time.monotonic()

    run = training_run_execute(run_id=run.pk, worker_name="test", enqueue_retry=False)

    assert time.monotonic() - began < 25
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "no trial of the search finished (1 stopped; the time budget ran out)", (
        run.error + run.log
    )
    (trial,) = SearchTrial.objects.filter(run=run)
    assert trial.status == SearchTrial.Status.CANCELLED and 0 < trial.step < trial.total_steps
    assert "stopped by the search's time budget" in trial.log and "num_epochs 100" in run.log


def test_the_run_page_shows_each_trial_its_values_and_the_kept_one(client, listed_base_model):
    project, _ = judged_project(8)
    engineer = MembershipFactory(project=project, role=Membership.Role.ENGINEER).user
    run = search_run_with_trials(project, listed_base_model)
    client.force_login(engineer)

    page = client.get(f"/projects/{project.slug}/training/{run.pk}/").content.decode()

    assert "Hyperparameter search" in page and "4 of 4 trials finished" in page
    table = page[
        page.index('class="data responsive trials-table"') : page.index(
            "</table>", page.index("trials-table")
        )
    ]
    assert (
        table.count("<tr") == 5 and table.count("Kept") == 1 and "Pruned" in table and "at step 10" in table
    )
    assert "8.1e-05" in table and "0.830" in table and "Stopped" in table and "gpu2@host" in table
    for name in ("learning_rate", "num_epochs", "warmup_ratio", "weight_decay", "center_rewards_coefficient"):
        assert f'id="chart-trial-{name}"' in page
    assert 'id="chart-trial-lora_r"' not in page and 'id="chart-loss"' not in page
    assert "The model of trial #0" in page

    # Under way: the live partial polls and carries the trials for the charts.
    running = search_run_with_trials(project, listed_base_model, finished=False)
    live = client.get(f"/projects/{project.slug}/training/{running.pk}/live/").content.decode()
    assert 'hx-trigger="every 2s"' in live and "3 of 4 trials finished" in live and 'id="run-trials"' in live


def test_the_run_page_marks_the_trials_an_ensemble_of_the_best_is_made_of(client, listed_base_model):
    project, _ = judged_project(8)
    run = search_run_with_trials(project, listed_base_model)
    evaluation = {**run.evaluation}
    evaluation["search"] = {**evaluation["search"], "ensemble_trials": [0, 2]}
    TrainingRun.objects.filter(pk=run.pk).update(
        evaluation=evaluation, search={**run.search, "ensemble_top_k": 2}
    )
    client.force_login(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)

    page = client.get(f"/projects/{project.slug}/training/{run.pk}/").content.decode()

    table = page[page.index("trials-table") : page.index("</table>", page.index("trials-table"))]
    assert table.count("Member</span>") == 2 and "Kept" not in table
    assert "An ensemble of trials #0, #2, the best 2 of the search" in page
    assert "The model of trial #0" not in page and "the best 2 make one ensemble" in page


def test_the_training_form_starts_a_search_and_names_a_bad_search_setting(client, listed_base_model):
    project, _ = judged_project(8)
    export = succeeded_export(project)
    client.force_login(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    url = f"/projects/{project.slug}/training/"
    assert b'name="mode" value="search"' in client.get(url).content
    form = {
        "source": "export",
        "export": export.pk,
        "base": f"model:{listed_base_model}",
        "allow_below_target": "on",
    }

    response = client.post(
        url, {**form, "mode": "search", "search": '{"trials": 2, "space": {"num_epochs": [0, 2]}}'}
    )
    assert response.status_code == 200 and b"search.space.num_epochs: must lie within" in response.content
    response = client.post(url, {**form, "mode": "search", "search": "{trials"})
    assert response.status_code == 200 and b"search: not JSON" in response.content
    assert not TrainingRun.objects.exists()

    response = client.post(url, {**form, "mode": "search", "search": '{"trials": 2}'})
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.mode == "search" and run.search["trials"] == 2


def test_the_command_refuses_bad_search_settings_naming_the_field(listed_base_model):
    from django.core.management import CommandError, call_command

    project, _ = judged_project(8)
    export = succeeded_export(project)
    arguments = [
        project.slug,
        "--export",
        str(export.pk),
        "--base-model",
        listed_base_model,
        "--allow-below-target",
    ]
    with pytest.raises(CommandError, match="--search is not JSON"):
        call_command("train_reward_model", *arguments, "--search", "{trials")
    with pytest.raises(CommandError, match=r"search\.trials: must be a whole number"):
        call_command("train_reward_model", *arguments, "--search", '{"trials": 0}')
    assert not TrainingRun.objects.exists()


def test_a_redelivered_trial_task_leaves_a_trial_running_elsewhere_alone_and_a_cancel_stops_the_trials(
    listed_base_model,
):
    from palate.jobs.services import worker_identity

    project, _ = judged_project(8)
    run = _running_search(project, succeeded_export(project), listed_base_model, {"trials": 4}, FAST)
    running = SearchTrial.objects.create(
        run=run, number=0, status=SearchTrial.Status.RUNNING, attempts=1, worker=worker_identity("gpu-1@host"),
        heartbeat_at=timezone.now(), started_at=timezone.now(),
    )  # fmt: skip
    queued = SearchTrial.objects.create(run=run, number=1)
    assert search_trial_execute(trial_id=running.pk, worker_name="gpu-2@host") is None
    running.refresh_from_db()
    assert (running.status, running.attempts) == (SearchTrial.Status.RUNNING, 1)

    # The run is cancelled while its trials wait and train: the queued one ends at once, the running one is
    # asked to stop; the run ends cancelled once it has.
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    SearchTrial.objects.filter(pk=running.pk).update(status=SearchTrial.Status.CANCELLED)  # it stopped
    run = training_run_execute(run_id=run.pk, worker_name="test", enqueue_retry=False)
    assert run.status == TrainingRun.Status.CANCELLED and "its trials are stopped" in run.log
    queued.refresh_from_db()
    assert queued.status == SearchTrial.Status.CANCELLED and "cancelled with its search run" in queued.log
    assert SearchTrial.objects.filter(run=run).count() == 2  # no trial was asked for after the cancel


def test_a_search_with_ensemble_top_k_keeps_its_two_best_trials_as_one_ensemble_that_scores_with_uncertainty(
    tiny_base_model,
):
    import json

    from palate.celery import app
    from palate.storage import store_read_bytes
    from rewardtrain.models import RewardModel
    from rewardtrain.services.run_artifacts import run_model_key

    project, _ = judged_project(40)
    export = succeeded_export(project, split=1)  # the trials share one held-out validation split
    search = {
        "trials": 3,
        "parallel": 1,
        "metric": "loss",  # continuous: three trials do not tie on it as on accuracy
        "ensemble_top_k": 2,
        "space": {"learning_rate": [1e-5, 1e-2], "num_epochs": [1, 1]},
    }
    run = _running_search(project, export, tiny_base_model, search, FAST)

    run = training_run_execute(run_id=run.pk, worker_name="test", enqueue_retry=False)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.log
    trials = list(SearchTrial.objects.filter(run=run).order_by("number"))
    assert len(trials) == 3 and all(trial.outcome == SearchTrial.Status.SUCCEEDED for trial in trials)
    two_best = [trial.number for trial in sorted(trials, key=lambda trial: (trial.value, trial.number))[:2]]
    assert run.evaluation["search"]["ensemble_trials"] == two_best
    assert run.evaluation["search"]["best_trial"] == two_best[0]
    ensemble = run.evaluation["ensemble"]
    assert ensemble["size"] == 2 and [member["trial"] for member in ensemble["members"]] == two_best
    assert ensemble["uncertainty_mean"] > 0  # members trained with other values disagree
    assert f"trials {two_best[0]} (" in run.log and "as one ensemble" in run.log

    model = RewardModel.objects.get(run=run)
    assert model.path == run_model_key(run.pk) and model.content_hash
    config = json.loads(store_read_bytes(ARTIFACTS, f"{model.path}/config.json"))
    assert config["palate"]["ensemble"]["members"] == [".", "members/member-1"]
    for trial in trials:  # the members' weights live in the run's model now
        assert not any(
            name.startswith("model/") for name in store_list(ARTIFACTS, trial_prefix(run.pk, trial.number))
        )

    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    previous, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        response = client.post(
            f"/api/reward-models/{model.pk}/score/",
            {"prompt": "say something", "responses": ["an excellent answer", "a terrible answer"]},
            format="json",
        )
    finally:
        app.conf.task_always_eager = previous
    assert response.status_code == 200, response.content
    assert all(row["uncertainty"] > 0 for row in response.json()["scores"])
