"""A run's base model is an installed base model's name (``TRAINING_BASE_MODELS``) or a reward model of the
same project, never a path: refused alike whether the path exists or not, whichever way a run is started;
resolved to a location by the worker, with its own settings."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotate.models import Membership
from palate.storage import ARTIFACTS, store_local_path
from rewardtrain.base_models import (
    PACKAGED_BASE_MODELS,
    PackagedBaseModel,
    base_models_check,
    base_models_installed,
    base_models_parse,
)
from rewardtrain.models import RetrainingSettings, RewardModel, TrainingRun
from rewardtrain.services.run_artifacts import run_prefix
from rewardtrain.services.run_execution import training_run_execute
from rewardtrain.services.runs import (
    training_retrain_due,
    training_run_create,
)
from rewardtrain.training.artifacts import SUMMARY_FILE
from tests.factories import MembershipFactory, ProjectFactory
from tests.rewardtrain.runs_data import FAST, judged_project, succeeded_export

pytestmark = pytest.mark.django_db

REFUSED = "not an installed base model; choose one of: minilm"


def _engineer(project) -> APIClient:
    client = APIClient()
    client.force_authenticate(MembershipFactory(project=project, role=Membership.Role.ENGINEER).user)
    return client


def _model_of_another_project() -> RewardModel:
    """A reward model trained in another project, with its files on the disk."""
    other = ProjectFactory()
    run = TrainingRun.objects.create(
        project=other, base_model="minilm", hyperparameters={}, status=TrainingRun.Status.SUCCEEDED
    )
    directory = store_local_path(ARTIFACTS, run_prefix(run.pk)) / "model"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return RewardModel.objects.create(run=run, project=other, version=1, path=f"runs/{run.pk}/model")


def test_a_path_to_another_project_s_model_is_refused_alike_whether_it_exists_and_nothing_is_queued(
    listed_base_model, tmp_path, django_capture_on_commit_callbacks
):
    theirs = _model_of_another_project()
    existing = store_local_path(ARTIFACTS, theirs.path)
    assert (existing / "config.json").is_file()
    project, _ = judged_project(10)
    export = succeeded_export(project)
    client = _engineer(project)
    answers = []
    for base_model in (
        str(existing),
        str(tmp_path / "no-such-model"),
        f"../../runs/{theirs.run_id}/model",
        f"runs/{theirs.run_id}/model",
        "~/models/minilm",
        "Qwen/Qwen2.5-0.5B",  # a hub id, but not one the operator installed
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post(
                f"/api/projects/{project.pk}/training-runs/",
                {"base_model": base_model, "export": export.pk, "allow_below_target": True},
                format="json",
            )
        assert response.status_code == 400, (base_model, response.content)
        assert callbacks == []
        answers.append(response.json())
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0] == {
        "error": {"code": "invalid", "message": f"base_model: {REFUSED}", "fields": {"base_model": [REFUSED]}}
    }
    assert not TrainingRun.objects.filter(project=project).exists()


def test_another_project_s_reward_model_is_refused_like_one_that_does_not_exist(listed_base_model):
    theirs = _model_of_another_project()
    project, _ = judged_project(10)
    export = succeeded_export(project)
    client = _engineer(project)
    answers = [
        client.post(
            f"/api/projects/{project.pk}/training-runs/",
            {"base_reward_model": model_id, "export": export.pk, "allow_below_target": True},
            format="json",
        )
        for model_id in (theirs.pk, theirs.pk + 1000)
    ]
    assert [answer.status_code for answer in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["error"]["fields"] == {
        "base_reward_model": ["not a reward model of this project"]
    }
    assert not TrainingRun.objects.filter(project=project).exists()


def test_a_run_names_an_installed_base_model_or_a_reward_model_of_its_project_and_one_of_them(
    listed_base_model, django_capture_on_commit_callbacks
):
    project, _ = judged_project(10)
    export = succeeded_export(project)
    client = _engineer(project)
    url = f"/api/projects/{project.pk}/training-runs/"
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            url,
            {"base_model": listed_base_model, "export": export.pk, "allow_below_target": True},
            format="json",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["base_model"], body["base_reward_model"]) == ("minilm", None) and len(callbacks) == 1
    assert "base_model" not in body["hyperparameters"]  # the worker adds where it lives

    first = TrainingRun.objects.get(pk=body["id"])
    ours = RewardModel.objects.create(run=first, project=project, version=1, path=f"runs/{first.pk}/model")
    response = client.post(
        url, {"base_reward_model": ours.pk, "export": export.pk, "allow_below_target": True}, format="json"
    )
    assert response.status_code == 202, response.content
    assert (response.json()["base_model"], response.json()["base_reward_model"]) == ("", ours.pk)
    assert TrainingRun.objects.get(pk=response.json()["id"]).base_description == "reward model v1"

    for both_or_neither in ({"base_model": listed_base_model, "base_reward_model": ours.pk}, {}):
        response = client.post(
            url, {**both_or_neither, "export": export.pk, "allow_below_target": True}, format="json"
        )
        assert response.status_code == 400
        assert "give either base_model" in response.json()["error"]["fields"]["base_model"][0]
    assert TrainingRun.objects.filter(project=project).count() == 2


def test_the_schema_says_a_base_model_is_a_name_or_a_reward_model_id():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    fields = schema["components"]["schemas"]["TrainingRunCreateInputRequest"]["properties"]
    assert fields["base_model"]["type"] == "string" and "never a path" in fields["base_model"]["description"]
    assert fields["base_reward_model"]["type"] == "integer"
    assert "reward model of this project" in fields["base_reward_model"]["description"]


def test_installed_base_models_are_name_location_entries_or_bare_hub_ids(settings):
    assert base_models_parse(
        " minilm=/models/minilm, Qwen/Qwen2.5-0.5B ,qwen-7b = Qwen/Qwen2.5-7B,big=~/m,"
    ) == {
        "minilm": "/models/minilm",
        "Qwen/Qwen2.5-0.5B": "Qwen/Qwen2.5-0.5B",
        "qwen-7b": "Qwen/Qwen2.5-7B",
        "big": "~/m",
    }
    assert base_models_parse("") == {}
    for text, words in (
        ("/models/minilm", "not a Hugging Face id"),
        ("./minilm", "not a Hugging Face id"),
        ("a/b/c", "not a Hugging Face id"),
        ("mini lm=/models/minilm", "a name is"),
        ("=/models/minilm", "a name is"),
        ("../x=/models/x", "a name is"),
        ("minilm=models/sub/minilm", "a location is"),
        ("minilm=../minilm", "a location is"),
        ("minilm=/a,minilm=/b", "listed twice"),
    ):
        with pytest.raises(ValueError, match=words):
            base_models_parse(text)
    settings.TRAINING_BASE_MODELS = "/models/minilm"
    [error] = base_models_check()
    assert error.id == "rewardtrain.E001" and "TRAINING_BASE_MODELS" in error.msg
    settings.TRAINING_BASE_MODELS = "minilm=/models/minilm"
    assert base_models_check() == []


def test_the_worker_resolves_the_name_with_its_own_settings_and_fails_a_name_it_does_not_list(
    tiny_base_model, tiny_decoder, settings
):
    project, _ = judged_project(12)
    export = succeeded_export(project)
    run = training_run_create(
        project=project, base_model=tiny_base_model, hyperparameters=FAST, export=export,
        allow_below_target=True, enqueue=False,
    )  # fmt: skip
    settings.TRAINING_BASE_MODELS = "minilm=/models/minilm"  # this worker's operator installed another
    run = training_run_execute(run_id=run.pk, worker_name="w")
    assert run.status == TrainingRun.Status.FAILED and run.attempts == 1
    assert run.error == (
        "base model 'tiny-decoder' is not installed on this worker (TRAINING_BASE_MODELS lists: minilm); "
        "install it there, or start a run from an installed one"
    )

    # A run recorded before base models had names holds a path: the worker does not train on it.
    settings.TRAINING_BASE_MODELS = f"tiny-decoder={tiny_decoder}"
    old = TrainingRun.objects.create(
        project=project, export=export, base_model=tiny_decoder,
        hyperparameters={**FAST, "base_model": tiny_decoder},
    )  # fmt: skip
    old = training_run_execute(run_id=old.pk, worker_name="w")
    assert old.status == TrainingRun.Status.FAILED and "is not installed on this worker" in old.error
    assert old.step == 0 and not RewardModel.objects.exists()


def test_a_run_continues_training_from_a_reward_model_of_its_project(tiny_base_model):
    project, _ = judged_project(24)
    export = succeeded_export(project)
    first = training_run_create(
        project=project, base_model=tiny_base_model, hyperparameters={**FAST, "num_epochs": 1}, export=export,
        allow_below_target=True, enqueue=False,
    )  # fmt: skip
    first = training_run_execute(run_id=first.pk, worker_name="w")
    assert first.status == TrainingRun.Status.SUCCEEDED, first.error + first.traceback
    second = training_run_create(
        project=project, base_reward_model=first.reward_model, hyperparameters={**FAST, "num_epochs": 1},
        export=export, allow_below_target=True, enqueue=False,
    )  # fmt: skip
    second = training_run_execute(run_id=second.pk, worker_name="w")
    assert second.status == TrainingRun.Status.SUCCEEDED, second.error + second.traceback
    summary = json.loads((store_local_path(ARTIFACTS, second.artifact_path) / SUMMARY_FILE).read_text())
    assert summary["base_model"] == str(store_local_path(ARTIFACTS, first.reward_model.path))
    assert second.reward_model.version == 2


def test_retraining_a_run_whose_base_is_no_longer_installed_records_why(listed_base_model, monkeypatch):
    monkeypatch.setattr(
        "annotate.services.agreement.agreement_training_gate", lambda *, project: {"ok": True, "reasons": []}
    )
    project, _ = judged_project(12)
    export = succeeded_export(project)
    retraining = RetrainingSettings.objects.create(project=project, enabled=True, min_new_judgments=1)
    # A run recorded before base models had names: it holds a path.
    last = TrainingRun.objects.create(
        project=project, export=export, base_model="/models/from-before", status=TrainingRun.Status.SUCCEEDED
    )
    TrainingRun.objects.filter(pk=last.pk).update(created_at=last.created_at.replace(year=2000))
    assert training_retrain_due() == []
    retraining.refresh_from_db()
    assert retraining.outcome == f"Could not start a run: base_model: {REFUSED}"


def test_the_training_page_offers_installed_names_and_this_project_s_reward_models(listed_base_model, client):
    theirs = _model_of_another_project()
    project, _ = judged_project(10)
    export = succeeded_export(project)
    run = TrainingRun.objects.create(
        project=project, base_model="minilm", status=TrainingRun.Status.SUCCEEDED
    )
    ours = RewardModel.objects.create(run=run, project=project, version=1, path=f"runs/{run.pk}/model")
    engineer = MembershipFactory(project=project, role=Membership.Role.ENGINEER).user
    client.force_login(engineer)
    page = client.get(f"/projects/{project.slug}/training/").content.decode()
    assert '<select id="t-base" name="base"' in page and 'name="base_model"' not in page
    assert '<option value="model:minilm" selected>minilm (a directory on the workers)</option>' in page
    assert "hub:" not in page and 'name="hub_model"' not in page  # TRAINING_HUB_MODELS is off
    assert f'<option value="reward-model:{ours.pk}">Reward model v1</option>' in page
    assert f"reward-model:{theirs.pk}" not in page

    form = {"source": "export", "export": export.pk, "allow_below_target": "on"}
    for refused, field in (
        (f"model:{store_local_path(ARTIFACTS, theirs.path)}", REFUSED),
        (f"reward-model:{theirs.pk}", "not a reward model of this project"),
    ):
        response = client.post(f"/projects/{project.slug}/training/", {**form, "base": refused})
        assert response.status_code == 200 and field in response.content.decode()
    assert TrainingRun.objects.filter(project=project).count() == 1
    response = client.post(f"/projects/{project.slug}/training/", {**form, "base": f"reward-model:{ours.pk}"})
    assert response.status_code == 302
    continued = TrainingRun.objects.filter(project=project).latest("created_at")
    assert continued.base_reward_model == ours
    page = client.get(response["Location"]).content.decode()
    assert "<code>reward model v1</code>" in page
    page = client.get(f"/projects/{project.slug}/training/").content.decode()
    assert f'<option value="reward-model:{ours.pk}" selected>' in page  # the form starts from the last run


def test_the_command_takes_a_name_or_a_reward_model_never_a_path(listed_base_model, tmp_path):
    project, _ = judged_project(10)
    export = succeeded_export(project)
    with pytest.raises(CommandError, match=REFUSED):
        call_command(
            "train_reward_model", project.slug, "--export", str(export.pk), "--base-model", str(tmp_path),
            "--allow-below-target", "--no-progress", stdout=StringIO(),
        )  # fmt: skip
    with pytest.raises(CommandError, match="not a reward model of this project"):
        call_command(
            "train_reward_model", project.slug, "--export", str(export.pk), "--base-reward-model", "999999",
            "--allow-below-target", "--no-progress", stdout=StringIO(),
        )  # fmt: skip
    assert not TrainingRun.objects.exists()


def test_minilm_is_installed_by_default_from_its_package_directory_and_needs_no_hub(minilm):
    import subprocess
    import sys

    assert (Path(minilm) / "config.json").is_file() and (Path(minilm) / "model.safetensors").is_file()
    assert base_models_parse("minilm, qwen=/models/qwen") == {"minilm": minilm, "qwen": "/models/qwen"}
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"TRAINING_BASE_MODELS", "HF_HUB_OFFLINE"}
    }
    shown = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from rewardtrain.base_models import "
         "base_models_installed; import sys; print(base_models_installed()); assert 'torch' not in sys.modules"],
        env={**environment, "DJANGO_SETTINGS_MODULE": "palate.settings"}, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == repr({"minilm": minilm})


def test_a_packaged_backbone_whose_package_is_missing_is_a_warning_and_fails_its_run_saying_so(
    settings, monkeypatch
):
    monkeypatch.setitem(
        PACKAGED_BASE_MODELS, "minilm", PackagedBaseModel("no_such_package_here", "model", "")
    )
    settings.TRAINING_BASE_MODELS = "minilm"
    assert base_models_installed() == {"minilm": ""}
    [warning] = base_models_check()
    assert warning.id == "rewardtrain.W001" and "no_such_package_here is not installed" in warning.msg
    project, _ = judged_project(10)
    run = training_run_create(
        project=project, base_model="minilm", export=succeeded_export(project), allow_below_target=True,
        enqueue=False,
    )  # fmt: skip
    run = training_run_execute(run_id=run.pk, worker_name="w")
    assert run.status == TrainingRun.Status.FAILED and run.error == (
        "base model 'minilm' comes with the Python package no_such_package_here, which is not installed on "
        "this worker: pip install -r requirements.txt there"
    )


def test_any_hub_id_is_accepted_only_where_the_hub_is_on_and_never_a_path(
    listed_base_model, settings, tmp_path, monkeypatch, client
):
    project, _ = judged_project(10)
    export = succeeded_export(project)
    api = _engineer(project)
    url = f"/api/projects/{project.pk}/training-runs/"
    body = {"export": export.pk, "allow_below_target": True}
    response = api.post(url, {**body, "base_model": "Qwen/Qwen2.5-0.5B"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["fields"]["base_model"] == [REFUSED]

    settings.TRAINING_HUB_MODELS = True
    hub_refused = f"{REFUSED}, or a Hugging Face id (owner/name)"
    for refused in ("/models/qwen", "../x/y", "a/b/c", "qwen"):
        response = api.post(url, {**body, "base_model": refused}, format="json")
        assert response.json()["error"]["fields"]["base_model"] == [hub_refused], refused
    response = api.post(url, {**body, "base_model": "Qwen/Qwen2.5-0.5B"}, format="json")
    assert response.status_code == 202 and response.json()["base_model"] == "Qwen/Qwen2.5-0.5B"

    # The page offers the hub beside the installed models and sends the typed id.
    client.force_login(MembershipFactory(project=project, role=Membership.Role.LEAD).user)
    page = client.get(f"/projects/{project.slug}/training/").content.decode()
    assert (
        '<optgroup label="From the Hugging Face hub"><option value="hub:"' in page
        and 'name="hub_model"' in page
    )
    form = {"source": "export", "export": export.pk, "allow_below_target": "on", "base": "hub:"}
    response = client.post(f"/projects/{project.slug}/training/", {**form, "hub_model": "owner/model"})
    assert response.status_code == 302
    run = TrainingRun.objects.filter(project=project).latest("created_at")
    assert run.base_model == "owner/model"

    # A hub id that is also a directory where the worker runs is not read from the disk.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "model").mkdir(parents=True)
    run = training_run_execute(run_id=run.pk, worker_name="w")
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == "'owner/model' names a directory on this worker, not a Hugging Face id"
