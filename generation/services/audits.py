"""Reward-model audits: does the model's best of N beat an independent sample of the same system, as people
judge it, and up to which N? (Reward models are over-optimised as N grows: Gao et al. 2022.)

An audit is a job of ``palate.jobs`` on the ``generate`` queue. It runs its generation job itself (max(N) + 1
samples per prompt from one system, no pairs), then prompt by prompt: scores the samples with the reward
model through the scoring service (the scoring worker loads the model), stores the scores, and for each N
pairs the best of the first N samples with the last one. The pairs go to annotators like any other (blind,
sides drawn per assignment, A/B drawn here). Prompts already compared are skipped, so a restarted audit goes
on where it stopped. The figures are read from the judgments (``generation.selectors.audit_figures``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from typing import Any

from celery.result import allow_join_result
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotate.models import Pair, Project, Prompt, Response
from generation.models import AuditComparison, GenerationJob, ModelAudit, System
from generation.selectors import audit_figures
from generation.services.jobs import (
    generation_job_create,
    generation_job_execute,
    prompt_value,
    sample_external_id,
)
from palate.errors import ApplicationError, Conflict
from palate.jobs.services import (
    JobHeartbeat,
    JobKind,
    job_cancel,
    job_claim,
    job_enqueue,
    job_fail,
    job_finish,
    job_heartbeat,
)
from rewardtrain.models import ResponseScore, RewardModel
from rewardtrain.services.scoring import reward_model_score

logger = logging.getLogger(__name__)


def _send(audit: ModelAudit) -> None:
    from generation.tasks import audit_task

    limit = settings.GENERATION_JOB_TIME_LIMIT_SECONDS
    audit_task.apply_async(args=[audit.pk], soft_time_limit=limit, time_limit=limit + 300)


AUDITS = JobKind(
    model=ModelAudit, send=_send, noun="audit", queue="generate", log_field="log", cancellable=True
)


def audit_create(
    *,
    reward_model: RewardModel,
    system: System,
    n_values: list[int],
    scope: str = GenerationJob.Scope.ALL,
    scope_value: str = "",
    seed: int = 0,
    created_by: Any = None,
) -> ModelAudit:
    """Queues an audit of ``reward_model`` with ``system``'s samples on the prompts ``scope`` chooses (use
    prompts the model was not trained on), for each N of ``n_values``."""
    ns = sorted(set(n_values))
    most = settings.GENERATION_MAX_SAMPLES - 1
    if not ns or ns[0] < 1 or ns[-1] > most:
        raise ApplicationError(
            f"n_values: from 1 to {most}", fields={"n_values": [f"values from 1 to {most}"]}
        )
    if ns[-1] + 1 > settings.SCORING_MAX_RESPONSES:
        raise ApplicationError(
            f"n_values: at most {settings.SCORING_MAX_RESPONSES - 1} (SCORING_MAX_RESPONSES)",
            fields={"n_values": ["too large for one scoring request"]},
        )
    if system.project_id != reward_model.project_id:
        raise ApplicationError(
            "system: not of the reward model's project", fields={"system": ["another project's"]}
        )
    with transaction.atomic():
        generation = generation_job_create(
            project=reward_model.project,
            systems=[system],
            samples=ns[-1] + 1,
            scope=scope,
            scope_value=scope_value,
            created_by=created_by,
            make_pairs=False,
            enqueue=False,
        )
        audit = ModelAudit.objects.create(
            project_id=reward_model.project_id,
            reward_model=reward_model,
            system=system,
            generation_job=generation,
            n_values=ns,
            sample_ids=[sample_external_id(system, k) for k in range(ns[-1] + 1)],
            seed=seed,
            created_by=created_by,
        )
        transaction.on_commit(lambda: job_enqueue(audit))
    return audit


def audit_cancel(*, audit: ModelAudit) -> ModelAudit:
    """Cancels the audit and its generation job (what they stored stays)."""
    generation = audit.generation_job
    if generation is not None and not generation.is_finished:
        with contextlib.suppress(Conflict):  # it finished meanwhile
            job_cancel(generation)
    return job_cancel(audit)


def _pair(
    project_id: int, prompt: Prompt, chosen: Response, reference: Response, draw: random.Random
) -> Pair:
    """The pair of the two responses, made (A and B drawn) when they have none."""
    found = (
        Pair.objects.filter(prompt=prompt)
        .filter(Q(response_a=chosen, response_b=reference) | Q(response_a=reference, response_b=chosen))
        .first()
    )
    if found is not None:
        return found
    first, second = (chosen, reference) if draw.random() < 0.5 else (reference, chosen)
    return Pair.objects.create(project_id=project_id, prompt=prompt, response_a=first, response_b=second)


class _Audit:
    def __init__(self, audit: ModelAudit, attempt: int, heartbeat: JobHeartbeat, worker: str) -> None:
        self.audit, self.attempt, self.heartbeat, self.worker = audit, attempt, heartbeat, worker

    def _cancelled(self) -> bool:
        return ModelAudit.objects.filter(pk=self.audit.pk, cancel_requested=True).exists()

    def run(self) -> None:
        audit = self.audit
        generation = audit.generation_job
        if generation is None:
            self._fail("its generation job was removed")
            return
        if not generation.is_finished:
            generation_job_execute(job_id=generation.pk, worker=self.worker)
        generation.refresh_from_db()
        while not generation.is_finished:  # another worker runs it (a resent task): wait for it
            if self.heartbeat.lost.is_set():
                return
            if self._cancelled():
                break
            time.sleep(2)
            generation.refresh_from_db()
        if self._cancelled():
            self._end_cancelled()
            return
        if generation.status != GenerationJob.Status.SUCCEEDED:
            self._fail(f"its generation job {generation.pk} {generation.status}: {generation.error}")
            return
        self._compare(generation)

    def _fail(self, reason: str) -> None:
        job_fail(ModelAudit, job_id=self.audit.pk, attempt=self.attempt, error=reason)

    def _end_cancelled(self) -> None:
        job_finish(
            ModelAudit,
            job_id=self.audit.pk,
            attempt=self.attempt,
            status=ModelAudit.Status.CANCELLED,
        )

    def _compare(self, generation: GenerationJob) -> None:
        audit = self.audit
        done = set(AuditComparison.objects.filter(audit=audit).values_list("prompt_id", flat=True))
        prompts = list(Prompt.objects.filter(id__in=generation.prompt_ids).order_by("id"))
        scored = comparisons = missing = 0
        for index, prompt in enumerate(prompts):
            if prompt.pk in done:
                continue
            stored = {
                response.external_id: response
                for response in Response.objects.filter(prompt=prompt, external_id__in=audit.sample_ids)
            }
            if len(stored) < len(audit.sample_ids):
                missing += 1  # a request the endpoint refused: this prompt cannot be compared
                continue
            samples = [stored[external_id] for external_id in audit.sample_ids]
            # Waiting on the scoring task from inside this task is deliberate: the model is loaded by the
            # scoring worker, never here (a worker serving both queues needs a concurrency of 2 or more).
            with allow_join_result():
                scores = reward_model_score(
                    reward_model=audit.reward_model,
                    prompt=prompt_value(prompt.content, prompt.messages),
                    responses=[sample.content for sample in samples],
                )
            raw = [row["raw"] for row in scores]
            scored += len(samples)
            draw = random.Random(f"{audit.seed}:{prompt.external_id}")
            with transaction.atomic():
                # As generation jobs: excludes imports storing pairs, not annotators.
                Project.objects.select_for_update(no_key=True).filter(pk=audit.project_id).first()
                ResponseScore.objects.bulk_create(
                    [
                        ResponseScore(response=s, reward_model=audit.reward_model, score=v)
                        for s, v in zip(samples, raw, strict=True)
                    ],
                    update_conflicts=True,
                    unique_fields=["reward_model", "response"],
                    update_fields=["score"],
                )
                for n in audit.n_values:
                    best = max(range(n), key=lambda i: (raw[i], -i))
                    pair = _pair(audit.project_id, prompt, samples[best], samples[-1], draw)
                    AuditComparison.objects.create(
                        audit=audit, prompt=prompt, n=n, chosen=samples[best], reference=samples[-1], pair=pair,
                        chosen_score=raw[best],
                    )  # fmt: skip
                    comparisons += 1
            self.heartbeat.report(
                scored=audit.scored + scored,
                comparisons_made=audit.comparisons_made + comparisons,
                progress=(index + 1) / len(prompts),
            )
            if self.heartbeat.lost.is_set():
                return
            if self._cancelled():
                self._end_cancelled()
                return
        note = f"{missing} prompts lacked a sample (refused requests) and were left out" if missing else ""
        job_finish(
            ModelAudit,
            job_id=audit.pk,
            attempt=self.attempt,
            note=note,
            scored=audit.scored + scored,
            comparisons_made=audit.comparisons_made + comparisons,
        )


def audit_execute(*, audit_id: int, worker: str = "worker") -> ModelAudit | None:
    """Claims the audit (``palate.jobs.job_claim``; None when there is nothing to run) and runs it."""
    attempt = job_claim(ModelAudit, job_id=audit_id, worker=worker)
    if attempt is None:
        return None
    audit = ModelAudit.objects.select_related("reward_model", "generation_job").get(pk=audit_id)
    with job_heartbeat(ModelAudit, job_id=audit_id, attempt=attempt) as heartbeat:
        try:
            _Audit(audit, attempt, heartbeat, worker).run()
        except ApplicationError as error:  # the scoring worker did not answer, or could not score
            job_fail(ModelAudit, job_id=audit_id, attempt=attempt, error=error.message)
        except Exception as error:
            logger.exception("audit %s crashed", audit_id)
            job_fail(
                ModelAudit,
                job_id=audit_id,
                attempt=attempt,
                error=f"{error.__class__.__name__}: {error}",
            )
    audit.refresh_from_db()
    return audit


AUDIT_REPORT_FILE = "palate_audits.json"


def audit_report_write(*, audit: ModelAudit) -> str:
    """Writes the audit's figures, as the judgments stand now, into the artifacts store beside the reward
    model's folder (``runs/<id>/palate_audits.json`` for ``runs/<id>/model``; not inside it, where it would
    change the model's content hash): the file keeps every audit of the model written so far, by id, so the
    figures travel with the model. Returns the file's stored name."""
    from palate.storage import ARTIFACTS, store_exists, store_list, store_read_bytes, store_write_bytes

    model_path = audit.reward_model.path.rstrip("/")
    if not store_list(ARTIFACTS, model_path):
        raise ApplicationError(
            f"the model's files ({audit.reward_model.path}) are not in the artifacts store",
            code="model_files_missing",
            http_status=409,
        )
    parent = model_path.rpartition("/")[0]
    name = f"{parent}/{AUDIT_REPORT_FILE}" if parent else AUDIT_REPORT_FILE
    reports = json.loads(store_read_bytes(ARTIFACTS, name)) if store_exists(ARTIFACTS, name) else {}
    reports[str(audit.pk)] = {
        "system": audit.system.name if audit.system else None,
        "n_values": audit.n_values,
        "written_at": timezone.now().isoformat(),
        **audit_figures(audit=audit),
    }
    store_write_bytes(ARTIFACTS, name, json.dumps(reports, indent=2, sort_keys=True).encode())
    return name
