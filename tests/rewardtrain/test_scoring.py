"""Scoring without a worker: the engine, normalisation, micro-batching, the model cache, the API's
permissions and input limits (checked before anything is sent to a worker), batch scoring in-process,
"uncertain_model" priorities, and the report math."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rest_framework.test import APIClient

from annotate.models import Membership, Pair
from annotate.services.exports import export_create, export_run, export_split_pair_ids
from palate.celery import app
from rewardtrain.models import ResponseScore, ScoringJob
from rewardtrain.scoring.batcher import MicroBatcher
from rewardtrain.scoring.engine import ModelCache, ScoringRequest, encode_requests, load_model, score_requests
from rewardtrain.services.assisted import model_pair_priorities_refresh, pair_predictions
from rewardtrain.services.scoring import scoring_job_create, scoring_job_execute
from rewardtrain.stats import length_bias, majority_agreement, model_uncertainty_priorities, score_drift
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory
from tests.rewardtrain.runs_data import judged_project, succeeded_export
from tests.rewardtrain.scoring_data import REWARD_MEAN, REWARD_STD, reward_model_row

PROMPT = "the river and the stone "
RESPONSES = ["excellent morning light", "terrible", "a quiet garden by the old bridge in the evening rain"]


@pytest.fixture(scope="module")
def loaded(tiny_reward_model):
    return load_model(tiny_reward_model, device="cpu")


@pytest.fixture
def eager():
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def _client(project, role):
    client = APIClient()
    user = UserFactory()
    if role is not None:
        MembershipFactory(user=user, project=project, role=role)
    client.force_authenticate(user)
    return client


def test_it_normalises_with_the_reward_mean_and_std_stored_at_training_time(loaded):
    assert (loaded.reward_mean, loaded.reward_std) == (REWARD_MEAN, REWARD_STD)
    raw = score_requests(loaded, [ScoringRequest(PROMPT, tuple(RESPONSES))])[0]
    assert raw.shape == (3,) and np.isfinite(raw).all()
    np.testing.assert_allclose(loaded.normalise(raw), (raw - REWARD_MEAN) / REWARD_STD)


def test_micro_batched_concurrent_requests_score_as_one_by_one(loaded):
    requests = [
        ScoringRequest(PROMPT, tuple(RESPONSES)),
        ScoringRequest([{"role": "user", "content": "a cold winter"}], ("warm bread", "excellent coffee")),
        ScoringRequest("", ("the train is late",)),
        ScoringRequest(PROMPT, ("terrible",)),
    ]
    alone = [score_requests(loaded, [request])[0] for request in requests]
    batcher = MicroBatcher(window_seconds=0.2)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(requests))

    def call(index: int) -> None:
        start.wait()
        results[index] = batcher.score(loaded, requests[index], timeout=30)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(batcher.batch_sizes) > 1  # at least two requests shared a forward pass
    for index, expected in enumerate(alone):
        np.testing.assert_allclose(results[index], expected, rtol=1e-4, atol=1e-5)


def test_a_failing_batch_fails_every_waiting_request():
    def broken(loaded, requests):
        raise RuntimeError("out of memory")

    batcher = MicroBatcher(score=broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.score(object(), ScoringRequest("p", ("r",)), timeout=5)


def test_the_model_cache_loads_each_model_once_and_evicts_the_least_recently_used():
    cache = ModelCache(capacity=2, loader=lambda path: f"model at {path}")
    for _ in range(3):
        cache.get(1, "/a")
    cache.get(2, "/b")
    cache.get(1, "/a")
    cache.get(3, "/c")
    assert cache.loads == 3 and (1, "/a") in cache and (2, "/b") not in cache


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (None, 404),
        (Membership.Role.ANNOTATOR, 403),
        (Membership.Role.ENGINEER, 200),
        (Membership.Role.LEAD, 200),
    ],
)
def test_scoring_is_for_engineers_and_leads(eager, tiny_reward_model, role, expected):
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    client = _client(project, role)
    body = {"prompt": PROMPT, "responses": RESPONSES}
    for url in (
        f"/api/reward-models/{model.pk}/score/",
        f"/api/reward-models/{model.pk}/best-of-n/",
        f"/api/projects/{project.pk}/reward-models/active/score/",
        f"/api/projects/{project.pk}/reward-models/active/best-of-n/",
    ):
        assert client.post(url, body, format="json").status_code == expected, url
    assert (
        client.get(f"/api/projects/{project.pk}/reward-models/active/pair-predictions/").status_code
        == expected
    )
    assert APIClient().post(f"/api/reward-models/{model.pk}/score/", body, format="json").status_code == 401


@pytest.mark.django_db
def test_score_and_best_of_n_answer_in_the_request_order_and_ranked(eager, tiny_reward_model, loaded):
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    client = _client(project, Membership.Role.ENGINEER)
    expected = score_requests(loaded, [ScoringRequest(PROMPT, tuple(RESPONSES))])[0]
    body = client.post(
        f"/api/reward-models/{model.pk}/score/", {"prompt": PROMPT, "responses": RESPONSES}, format="json"
    ).json()
    assert body["reward_model"] == {"id": model.pk, "version": 1, "project": project.pk}
    assert [row["index"] for row in body["scores"]] == [0, 1, 2]
    np.testing.assert_allclose([row["raw"] for row in body["scores"]], expected, rtol=1e-5)
    np.testing.assert_allclose(
        [row["normalised"] for row in body["scores"]], (expected - REWARD_MEAN) / REWARD_STD, rtol=1e-5
    )
    ranked = client.post(
        f"/api/projects/{project.pk}/reward-models/active/best-of-n/",
        {"prompt": PROMPT, "responses": RESPONSES},
        format="json",
    ).json()
    order = list(np.argsort(-expected, kind="stable"))
    assert [row["index"] for row in ranked["ranking"]] == order and ranked["best"] == order[0]
    assert [row["rank"] for row in ranked["ranking"]] == [1, 2, 3]
    assert ranked["ranking"][0]["response"] == RESPONSES[order[0]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"responses": ["a"]}, "prompt"),
        ({"prompt": "p", "messages": [{"role": "user", "content": "p"}], "responses": ["a"]}, "prompt"),
        ({"prompt": "p", "responses": ["a"] * 5}, "responses"),
        ({"prompt": "p", "responses": ["a", "x" * 101]}, "responses.1"),
        ({"prompt": "x" * 101, "responses": ["a"]}, "prompt"),
        ({"prompt": "p", "responses": []}, "responses"),
        ({"prompt": "p"}, "responses"),
        ({"messages": [{"role": "user"}], "responses": ["a"]}, "messages.0.content"),
        ({"prompt": "p", "responses": ["a", ["b"]]}, "responses.1"),
        ({"prompt": "p", "responses": ["", True]}, "responses.1"),
        ({"prompt": "p", "responses": [None]}, "responses.0"),
    ],
)
def test_bad_inputs_get_a_400_naming_the_field(settings, tiny_reward_model, body, field):
    settings.SCORING_MAX_RESPONSES, settings.SCORING_MAX_CHARS = 4, 100
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    response = _client(project, Membership.Role.LEAD).post(
        f"/api/reward-models/{model.pk}/score/", body, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"], response.json()


@pytest.mark.django_db
def test_a_project_without_an_active_model_answers_404():
    project = ProjectFactory()
    response = _client(project, Membership.Role.LEAD).post(
        f"/api/projects/{project.pk}/reward-models/active/score/",
        {"prompt": "p", "responses": ["a"]},
        format="json",
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "no_active_model"


@pytest.mark.django_db
def test_batch_scoring_stores_one_score_per_response_and_model_version(
    tiny_reward_model, django_capture_on_commit_callbacks
):
    project, _ = judged_project(6)
    first = reward_model_row(project, tiny_reward_model, version=1)
    second = reward_model_row(project, tiny_reward_model, version=2, active=False)
    for model in (first, second, first):
        with django_capture_on_commit_callbacks(execute=False):
            job = scoring_job_create(reward_model=model)
        job = scoring_job_execute(job_id=job.pk)
        assert job.status == ScoringJob.Status.SUCCEEDED, job.error
    assert ResponseScore.objects.filter(reward_model=first).count() == 12
    assert ResponseScore.objects.filter(reward_model=second).count() == 12
    assert job.total == 12 and job.scored == 12
    assert scoring_job_execute(job_id=job.pk) is None  # a redelivered task finds the job finished


@pytest.mark.django_db
def test_uncertain_model_priorities_put_the_least_certain_and_contradicted_pairs_first(tiny_reward_model):
    project = ProjectFactory(assignment_strategy="uncertain_model", overlap=3)
    model = reward_model_row(project, tiny_reward_model)
    pairs = [PairFactory(project=project, prompt__project=project) for _ in range(4)]
    gaps = [3.0, 0.1, 1.0, 2.0]  # A ahead of B by this much
    for pair, gap in zip(pairs, gaps, strict=True):
        ResponseScore.objects.create(response=pair.response_a, reward_model=model, score=gap)
        ResponseScore.objects.create(response=pair.response_b, reward_model=model, score=0.0)
    JudgmentFactory(pair=pairs[3], choice="b")  # the first vote goes against the model
    unscored = PairFactory(project=project, prompt__project=project)
    assert model_pair_priorities_refresh(project=project) > 0
    order = list(
        Pair.objects.filter(project=project).order_by("-priority", "id").values_list("id", flat=True)
    )
    assert order == [pairs[3].pk, pairs[1].pk, pairs[2].pk, pairs[0].pk, unscored.pk]
    predictions = pair_predictions(project=project, reward_model=model)
    assert [row["pair"] for row in predictions][:1] == [pairs[1].pk]
    assert next(row for row in predictions if row["pair"] == pairs[3].pk)["disagrees"] is True


@pytest.mark.django_db
def test_annotators_never_see_model_predictions(tiny_reward_model):
    project = ProjectFactory(assignment_strategy="uncertain_model")
    model = reward_model_row(project, tiny_reward_model)
    pair = PairFactory(project=project, prompt__project=project)
    ResponseScore.objects.create(response=pair.response_a, reward_model=model, score=1.2345)
    annotator = _client(project, Membership.Role.ANNOTATOR)
    assert (
        annotator.get(f"/api/projects/{project.pk}/reward-models/active/pair-predictions/").status_code == 403
    )
    claimed = annotator.get(f"/api/projects/{project.pk}/next/")
    assert claimed.status_code == 200, claimed.content
    text = claimed.content.decode()
    assert pair.response_a.content in text  # the pair was handed out, without the model's view of it
    assert "1.2345" not in text and "score" not in text and "priority" not in text


def test_report_math():
    assert majority_agreement(np.array([2.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0]), np.array([1, -1, 1])) == {
        "count": 3, "correct": 2, "accuracy": 2 / 3,
    }  # fmt: skip
    bias = length_bias(
        np.array([1.0, 2.0, 3.0, 4.0]), np.array([10, 20, 30, 40]),
        np.array([1.0, 5.0]), np.array([2.0, 0.0]), np.array([5, 50]), np.array([50, 5]),
    )  # fmt: skip
    assert bias["spearman"] == pytest.approx(1.0)
    assert bias["accuracy_when_chosen_shorter"] == 0.0 and bias["accuracy_when_chosen_longer"] == 1.0
    rng = np.random.default_rng(0)
    same = rng.normal(size=500)
    assert score_drift(same, 3 * same + 1)["ks"] == pytest.approx(0.0, abs=0.01)
    assert score_drift(same, 3 * same + 1)["overlap"] == pytest.approx(1.0, abs=0.05)
    assert score_drift(same, rng.exponential(size=500))["ks"] > 0.1
    priority = model_uncertainty_priorities(
        np.array([1.0, 0.2, 1.0]), np.array([0.0, 0.0, 0.0]), np.array([0, 0, -1])
    )
    assert np.argsort(-priority).tolist() == [2, 1, 0]


@pytest.mark.django_db
def test_the_reports_read_stored_scores(tiny_reward_model):
    from rewardtrain.selectors import (
        reward_model_agreement,
        reward_model_drift,
        reward_model_length_bias,
        reward_model_system_means,
    )

    project, _ = judged_project(8)
    export = succeeded_export(project, split=0.5)
    held_out = len(export_split_pair_ids(export=export))
    first = reward_model_row(project, tiny_reward_model, version=1, export=export)
    second = reward_model_row(project, tiny_reward_model, version=2, active=False, export=export)
    for pair in Pair.objects.filter(project=project).select_related("response_a", "response_b"):
        for response in (pair.response_a, pair.response_b):
            good = 1.0 if response.system == "chosen" else -1.0
            ResponseScore.objects.create(response=response, reward_model=first, score=good)
            ResponseScore.objects.create(
                response=response, reward_model=second, score=-good + 0.01 * response.pk
            )
    assert 0 < held_out < 8
    assert reward_model_agreement(reward_model=first) == {
        "count": held_out, "correct": held_out, "accuracy": 1.0, "held_out": held_out,
    }  # fmt: skip
    assert reward_model_agreement(reward_model=second)["accuracy"] == 0.0
    assert [row["system"] for row in reward_model_system_means(reward_model=first)] == ["chosen", "rejected"]
    assert reward_model_length_bias(reward_model=first)["responses"] == 16
    assert reward_model_drift(before=first, after=second)["count"] == 16


def _rows(export, split: str) -> list[dict]:
    import json

    from annotate.services.exports.downloads import export_file
    from palate.storage import EXPORTS, store_read_bytes

    found = export_file(export=export, split=split, fmt="jsonl")
    return [json.loads(line) for line in store_read_bytes(EXPORTS, found.key).splitlines() if line.strip()]


@pytest.mark.django_db
def test_an_export_s_held_out_pairs_are_its_own_when_an_earlier_export_had_its_id():
    """A database made again reuses export ids while a cache (a file cache under var/) outlives it."""
    from annotate.models import Export

    project, _ = judged_project(16)
    policies = [{"split": 0.5, "seed": seed} for seed in (1, 2)]
    first = export_run(
        export_id=export_create(
            project=project, policy=policies[0], formats=["jsonl"], created_by=None, enqueue=False
        ).pk
    )
    first_held_out = export_split_pair_ids(export=first).tolist()
    Export.objects.filter(pk=first.pk).delete()
    second = export_create(
        project=project, policy=policies[1], formats=["jsonl"], created_by=None, enqueue=False
    )
    Export.objects.filter(pk=second.pk).update(id=first.pk)
    second = export_run(export_id=first.pk)
    own = sorted({row["pair_id"] for row in _rows(second, "test")})

    assert own != first_held_out
    assert export_split_pair_ids(export=second).tolist() == own


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_agreement_counts_only_the_pairs_held_out_from_the_models_training_run(fmt):
    """The model agrees with the humans on the test split of its export and contradicts them on the train
    split (which it would have fitted): only the held-out pairs count, so the figure is 100%."""
    from rewardtrain.selectors import reward_model_agreement

    project, _ = judged_project(12)
    export = export_create(
        project=project, policy={"split": 0.5}, formats=[fmt], created_by=None, enqueue=False
    )
    export = export_run(export_id=export.pk)
    held_out = set(export_split_pair_ids(export=export).tolist())
    model = reward_model_row(project, "unused", export=export)
    pairs = list(Pair.objects.filter(project=project).select_related("response_a", "response_b"))
    for pair in pairs:
        for response in (pair.response_a, pair.response_b):
            good = 1.0 if response.system == "chosen" else -1.0
            ResponseScore.objects.create(
                response=response, reward_model=model, score=good if pair.pk in held_out else -good
            )

    agreement = reward_model_agreement(reward_model=model)

    assert 0 < len(held_out) < len(pairs)
    assert len(held_out) == export.counts["rows"]["test"]  # one row per held-out pair
    assert agreement == {
        "count": len(held_out),
        "correct": len(held_out),
        "accuracy": 1.0,
        "held_out": len(held_out),
    }


@pytest.mark.django_db
def test_agreement_is_left_out_when_the_run_recorded_no_split_or_held_out_nothing():
    from rewardtrain.selectors import reward_model_agreement

    project, _ = judged_project(4)
    unrecorded = reward_model_row(project, "unused", version=1, export=None)
    without_ids = reward_model_row(
        project, "unused", version=2, active=False, export=succeeded_export(project, columns=["vote_share"])
    )
    nothing_held_out = reward_model_row(
        project, "unused", version=3, active=False, export=succeeded_export(project, split=1.0)
    )
    for model in (unrecorded, without_ids, nothing_held_out):
        for pair in Pair.objects.filter(project=project).select_related("response_a", "response_b"):
            ResponseScore.objects.create(response=pair.response_a, reward_model=model, score=1.0)
            ResponseScore.objects.create(response=pair.response_b, reward_model=model, score=0.0)

    assert reward_model_agreement(reward_model=unrecorded)["held_out"] is None
    assert reward_model_agreement(reward_model=without_ids)["held_out"] is None
    assert reward_model_agreement(reward_model=nothing_held_out) == {
        "count": 0, "correct": 0, "accuracy": None, "held_out": 0,
    }  # fmt: skip


def test_scoring_encodes_a_response_exactly_as_training_did(tiny_decoder, tmp_path):
    from rewardtrain.training.artifacts import save_reward_model
    from rewardtrain.training.config import TrainConfig
    from rewardtrain.training.model import load_reward_model
    from rewardtrain.training.trainer import encode_rows

    # A long prompt, a short and a long response, and settings other than the defaults: training fits the
    # prompt to each response alone, and the saved model tells scoring the floor and the closing token.
    config = TrainConfig.from_dict(
        {"base_model": tiny_decoder, "max_length": 48, "min_prompt_tokens": 6, "append_eos": False}
    )
    prompt = " ".join(["river"] * 60) + " the final question "
    short, long = "excellent answer", "terrible " + "stone " * 60
    model = load_reward_model(tiny_decoder, device="cpu")
    save_reward_model(model, tmp_path, config=config)
    training = encode_rows([{"prompt": prompt, "chosen": short, "rejected": long}], model, config)
    scoring = encode_requests(
        load_model(str(tmp_path), device="cpu"), [ScoringRequest(prompt, (short, long))]
    )

    def tokens(data, sequence) -> list[int]:
        return [*data.prefixes[data.sequence_prefix[sequence]], *data.continuations[sequence]]

    assert tokens(training, training.chosen[0]) == tokens(scoring, scoring.chosen[0])
    assert tokens(training, training.rejected[0]) == tokens(scoring, scoring.chosen[1])
    assert len(tokens(training, training.chosen[0])) == len(tokens(training, training.rejected[0])) == 48


@pytest.mark.django_db
def test_an_empty_response_is_scored_and_ranked_like_any_other(eager, tiny_reward_model, loaded):
    project = ProjectFactory()
    model = reward_model_row(project, tiny_reward_model)
    client = _client(project, Membership.Role.ENGINEER)
    responses = ["", "excellent morning light", " "]
    expected = score_requests(loaded, [ScoringRequest(PROMPT, tuple(responses))])[0]
    scored = client.post(
        f"/api/reward-models/{model.pk}/score/", {"prompt": PROMPT, "responses": responses}, format="json"
    )
    assert scored.status_code == 200, scored.json()
    np.testing.assert_allclose([row["raw"] for row in scored.json()["scores"]], expected, rtol=1e-5)
    ranked = client.post(
        f"/api/reward-models/{model.pk}/best-of-n/", {"prompt": PROMPT, "responses": responses}, format="json"
    )
    assert ranked.status_code == 200, ranked.json()
    assert sorted(row["response"] for row in ranked.json()["ranking"]) == sorted(responses)
