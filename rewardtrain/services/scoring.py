"""Scoring with reward models: the score and best-of-N requests, batch scoring jobs.

The web process never loads a model: ``reward_model_score`` sends the request to the worker as a Celery task
(``reward_model_score_task``, on SCORING_QUEUE, ``gpu`` by default) and waits for its result (the result
backend is Redis with a Redis broker, files under var/ otherwise) up to SCORING_TIMEOUT_SECONDS. The worker
keeps its models loaded and micro-batches concurrent requests (``rewardtrain.scoring``).

Batch scoring (``scoring_job_create`` → ``scoring_job_execute`` on the gpu queue) scores every response of a
project with one model version and stores ``ResponseScore`` rows, one per (response, model).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework import status

from annotate.models import Project, Prompt, Response
from palate.errors import ApplicationError, Conflict
from palate.jobs.services import JobKind, job_claim, job_enqueue, job_fail, job_finish, job_heartbeat
from rewardtrain.models import ResponseScore, RewardModel, ScoringJob

logger = logging.getLogger(__name__)

PROMPTS_PER_CHUNK = 200


def _send(job: ScoringJob) -> None:
    from rewardtrain.tasks import scoring_job_task

    scoring_job_task.delay(job.pk)


SCORING_JOBS = JobKind(model=ScoringJob, send=_send, noun="scoring job", queue="gpu")


def reward_model_for_project(*, project: Project, reference: str | int) -> RewardModel:
    """``reference`` is a model id of the project or "active"."""
    models = RewardModel.objects.filter(project=project)
    if reference == "active":
        model = models.filter(is_active=True).first()
        if model is None:
            raise ApplicationError(
                "this project has no active reward model",
                code="no_active_model",
                http_status=status.HTTP_404_NOT_FOUND,
            )
        return model
    model = models.filter(pk=reference).first()
    if model is None:
        raise ApplicationError(
            "no such reward model", code="not_found", http_status=status.HTTP_404_NOT_FOUND
        )
    return model


def scoring_input_check(*, prompt: Any, messages: Any, responses: list[str]) -> str | list[dict[str, str]]:
    """The prompt to score against (text or messages), after the request limits; ApplicationError naming the
    field otherwise."""
    if (prompt is None) == (messages is None):
        raise ApplicationError(
            "give either prompt (text) or messages (a conversation), not both or neither",
            fields={"prompt": ["give either prompt or messages"]},
        )
    max_responses, max_chars = settings.SCORING_MAX_RESPONSES, settings.SCORING_MAX_CHARS
    if len(responses) > max_responses:
        raise ApplicationError(
            f"responses: at most {max_responses} responses per request, got {len(responses)}",
            fields={"responses": [f"at most {max_responses} responses per request"]},
        )
    for index, response in enumerate(responses):
        if len(response) > max_chars:
            raise ApplicationError(
                f"responses[{index}]: at most {max_chars} characters, got {len(response)}",
                fields={f"responses.{index}": [f"at most {max_chars} characters"]},
            )
    if prompt is not None:
        if len(prompt) > max_chars:
            raise ApplicationError(
                f"prompt: at most {max_chars} characters",
                fields={"prompt": [f"at most {max_chars} characters"]},
            )
        return prompt
    total = sum(len(message["content"]) for message in messages)
    if total > max_chars:
        raise ApplicationError(
            f"messages: at most {max_chars} characters in all, got {total}",
            fields={"messages": [f"at most {max_chars} characters in all"]},
        )
    return [{"role": message["role"], "content": message["content"]} for message in messages]


def reward_model_score(
    *, reward_model: RewardModel, prompt: str | list[dict[str, str]], responses: list[str]
) -> list[dict[str, Any]]:
    """One ``{"index", "raw", "normalised", "uncertainty", "win_probability"}`` per response, in the given
    order (``rewardtrain.scoring.worker.score_one_request`` says what each is). Waits for the worker up to
    SCORING_TIMEOUT_SECONDS; a 503 ApplicationError when no worker answered in time."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from rewardtrain.tasks import reward_model_score_task

    timeout = settings.SCORING_TIMEOUT_SECONDS
    # The message expires with the caller's patience: a worker that gets to it later drops it.
    result = reward_model_score_task.apply_async(
        kwargs={
            "reward_model_id": reward_model.pk,
            "path": reward_model.path,
            "prompt": prompt,
            "responses": responses,
        },
        expires=timeout,
    )
    try:
        outcome = result.get(timeout=timeout, propagate=False)
    except CeleryTimeout as error:
        result.forget()
        raise ApplicationError(
            f"no scoring worker answered within {timeout} s: is a worker consuming the scoring queue?",
            code="scoring_unavailable",
            http_status=status.HTTP_503_SERVICE_UNAVAILABLE,
        ) from error
    if result.failed() or not isinstance(outcome, dict):
        raise ApplicationError(
            f"the reward model could not score this request: {outcome}",
            code="scoring_failed",
            http_status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    result.forget()
    count = len(outcome["raw"])
    columns = {
        name: outcome.get(name) or [None] * count
        for name in ("raw", "normalised", "uncertainty", "win_probability")
    }
    return [
        {"index": index, **{name: values[index] for name, values in columns.items()}}
        for index in range(count)
    ]


def reward_model_best_of_n(
    *, reward_model: RewardModel, prompt: str | list[dict[str, str]], responses: list[str]
) -> list[dict[str, Any]]:
    """The responses ranked best first (ties keep the given order), each with its scores and rank (1 = best)."""
    scores = reward_model_score(reward_model=reward_model, prompt=prompt, responses=responses)
    ranked = sorted(scores, key=lambda row: (-row["raw"], row["index"]))
    return [{**row, "rank": rank, "response": responses[row["index"]]} for rank, row in enumerate(ranked, 1)]


def scores_compute(
    *, reward_model_id: int, path: str, prompt: str | list[dict[str, str]], responses: list[str]
) -> dict[str, Any]:
    """Worker side of ``reward_model_score``: JSON-ready raw and normalised rewards, uncertainties and win
    probabilities (each None where the model gives none)."""
    from rewardtrain.scoring.worker import score_one_request
    from rewardtrain.services.runs import artifact_absolute

    scored = score_one_request(
        reward_model_id=reward_model_id, path=str(artifact_absolute(path)), prompt=prompt, responses=responses
    )
    return {name: None if values is None else values.tolist() for name, values in scored.items()}


# --- batch scoring -------------------------------------------------------------------------------------------


def scoring_job_create(*, reward_model: RewardModel, created_by=None) -> ScoringJob:
    """Queue a job scoring every response of the model's project; a 409 while one for this model is pending."""
    with transaction.atomic():
        RewardModel.objects.select_for_update().filter(pk=reward_model.pk).first()
        pending = ScoringJob.objects.filter(
            reward_model=reward_model, status__in=[ScoringJob.Status.QUEUED, ScoringJob.Status.RUNNING]
        ).first()
        if pending is not None:
            raise Conflict(f"scoring job {pending.pk} for this model is still {pending.status}")
        job = ScoringJob.objects.create(
            project_id=reward_model.project_id,
            reward_model=reward_model,
            total=Response.objects.filter(prompt__project_id=reward_model.project_id).count(),
            created_by=created_by,
        )
        transaction.on_commit(lambda: job_enqueue(job))
    return job


def _prompt_value(prompt: Prompt) -> str | list[dict[str, str]]:
    # As exports write it, so a response is scored in the form the model was trained on.
    if prompt.messages is not None:
        return [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt.messages
        ]
    return prompt.content


def scoring_job_execute(*, job_id: int, worker: str = "worker") -> ScoringJob | None:
    """Claims the job (``palate.jobs.job_claim``; None when there is nothing to run), scores every response of
    the project prompt by prompt in chunks, upserts the scores and keeps ``scored`` current. Responses already
    scored by this model (an earlier attempt, or an earlier job) are skipped, so an attempt that takes over
    from a lost worker goes on where it stopped."""
    from rewardtrain.scoring.worker import loaded_model
    from rewardtrain.services.runs import artifact_absolute

    attempt = job_claim(ScoringJob, job_id=job_id, worker=worker)
    if attempt is None:
        return None
    job = ScoringJob.objects.select_related("reward_model", "project").get(pk=job_id)
    model = job.reward_model
    with job_heartbeat(ScoringJob, job_id=job_id, attempt=attempt) as heartbeat:
        try:
            loaded = loaded_model(reward_model_id=model.pk, path=str(artifact_absolute(model.path)))
            done = set(ResponseScore.objects.filter(reward_model=model).values_list("response_id", flat=True))
            prompt_ids = list(
                Prompt.objects.filter(project_id=job.project_id).order_by("id").values_list("id", flat=True)
            )
            scored = len(done)
            for start in range(0, len(prompt_ids), PROMPTS_PER_CHUNK):
                scored += _score_chunk(model, loaded, prompt_ids[start : start + PROMPTS_PER_CHUNK], done)
                heartbeat.report(scored=scored, progress=min(1.0, scored / job.total) if job.total else 0.0)
        except Exception as error:
            logger.exception("scoring job %s failed", job_id)
            job_fail(ScoringJob, job_id=job_id, attempt=attempt, error=f"{error.__class__.__name__}: {error}")
        else:
            job_finish(ScoringJob, job_id=job_id, attempt=attempt, scored=scored)
    job.refresh_from_db()
    if job.status == ScoringJob.Status.SUCCEEDED and model.is_active:
        from rewardtrain.services.assisted import model_pair_priorities_refresh

        model_pair_priorities_refresh(project=job.project)
    return job


def _score_chunk(model: RewardModel, loaded: Any, prompt_ids: list[int], done: set[int]) -> int:
    """Scores the responses of these prompts that ``done`` lacks and upserts their scores; returns how many."""
    from rewardtrain.scoring.engine import ScoringRequest, score_members

    prompts = Prompt.objects.filter(id__in=prompt_ids).order_by("id")
    responses: dict[int, list[Response]] = {}
    for response in Response.objects.filter(prompt__in=prompts).exclude(id__in=done).order_by("id"):
        responses.setdefault(response.prompt_id, []).append(response)
    requests, owners = [], []
    for prompt in prompts:
        if prompt.pk in responses:
            requests.append(
                ScoringRequest(_prompt_value(prompt), tuple(r.content for r in responses[prompt.pk]))
            )
            owners.append(responses[prompt.pk])
    if not requests:
        return 0
    rows = []
    for group, member_rewards in zip(owners, score_members(loaded, requests), strict=True):
        scores, uncertainty = loaded.combine(member_rewards)
        for index, response in enumerate(group):
            rows.append(
                ResponseScore(
                    response=response,
                    reward_model=model,
                    score=float(scores[index]),
                    uncertainty=None if uncertainty is None else float(uncertainty[index]),
                )
            )
    ResponseScore.objects.bulk_create(
        rows,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["reward_model", "response"],
        update_fields=["score", "uncertainty"],
    )
    return len(rows)
