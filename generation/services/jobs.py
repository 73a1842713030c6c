"""Generation jobs: for chosen prompts and systems, ``samples`` responses each, then pairs made by the
import's pairing rule. A job of ``palate.jobs`` on the ``generate`` queue (claimed, heartbeating,
cancellable, taken over when its worker dies).

Resumable: sample k of a prompt from a system is the response whose external id is
``gen:<system id>:<settings digest>:<k>`` (the digest covers the model and every sampling setting, so a
changed system makes new samples). An attempt first reads which of its responses are stored, by any
earlier attempt or job, and asks only for the rest.

Requests go to each system from a pool of ``max_concurrency`` threads (one client, one connection pool per
system); the client retries 429, 5xx, time-outs and refused connections (``generation.endpoint``). A
request the endpoint refuses (400, 422) is recorded in ``errors`` and the job goes on; an endpoint that
stays down, or refuses the key, stops the job (failed, saying which system and why); what was stored
stays, and running the job again goes on from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from annotate.models import Pair, Project, Prompt, Response
from annotate.services.import_rows import (
    Couples,
    ImportOptions,
    ResponseRecord,
    generate_pairs,
    pair_count,
    response_record,
)
from generation.endpoint import Completion, EndpointClient, EndpointDown, RequestRefused
from generation.models import GenerationJob, System
from generation.services.systems import system_spec
from palate.errors import ApplicationError
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

logger = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 20
PROMPTS_PER_CHUNK = 500
PAIRING_FIELDS = ("pairing", "pairs_per_prompt", "cross_system_only", "seed")


def _send(job: GenerationJob) -> None:
    from generation.tasks import generation_job_task

    limit = settings.GENERATION_JOB_TIME_LIMIT_SECONDS
    generation_job_task.apply_async(args=[job.pk], soft_time_limit=limit, time_limit=limit + 300)


GENERATION_JOBS = JobKind(
    model=GenerationJob,
    send=_send,
    noun="generation job",
    queue="generate",
    log_field="log",
    cancellable=True,
)


def system_settings_digest(system: System) -> str:
    """Ten hex digits of what makes a system's samples what they are (not its address or concurrency)."""
    settings_made = {
        "model": system.model,
        "temperature": system.temperature,
        "top_p": system.top_p,
        "max_tokens": system.max_tokens,
        "seed": system.seed,
        "system_prompt": system.system_prompt,
    }
    return hashlib.sha1(json.dumps(settings_made, sort_keys=True).encode()).hexdigest()[:10]


def sample_external_id(system: System, sample: int) -> str:
    return f"gen:{system.pk}:{system_settings_digest(system)}:{sample}"


# ----------------------------------------------------------------------------------------------------------
# Creating, cancelling, running again


def _pairing_options(pairing: dict[str, Any]) -> ImportOptions:
    unknown = set(pairing) - set(PAIRING_FIELDS)
    if unknown:
        raise ApplicationError(
            f"pairing: unknown options {', '.join(sorted(unknown))}", fields={"pairing": ["unknown options"]}
        )
    options = ImportOptions(**pairing)
    problems = options.validate()
    if problems:
        name, messages = next(iter(problems.items()))
        raise ApplicationError(
            f"pairing.{name}: {messages[0]}", fields={f"pairing.{k}": v for k, v in problems.items()}
        )
    return options


def _chosen_prompts(project: Project, scope: str, scope_value: str) -> list[int]:
    prompts = Prompt.objects.filter(project=project)
    if scope == GenerationJob.Scope.CATEGORY:
        prompts = prompts.filter(category=scope_value)
    elif scope == GenerationJob.Scope.WITHOUT_SYSTEM:
        prompts = prompts.exclude(responses__system=scope_value)
    return list(prompts.order_by("id").values_list("id", flat=True))


def _pairs_per_prompt_check(systems: list[System], samples: int, options: ImportOptions) -> None:
    """The import's limit on the pairs one prompt's candidates make, counted the import's way."""
    records = [
        response_record(f"{system.pk}:{k}", system.name, "") for system in systems for k in range(samples)
    ]
    count = pair_count(Couples(records, cross_system_only=options.cross_system_only), options)
    most = settings.IMPORT_MAX_PAIRS_PER_PROMPT
    if count > most:
        raise ApplicationError(
            f"{len(records)} responses per prompt would make {count:,} pairs; the limit is {most:,} per prompt "
            "(IMPORT_MAX_PAIRS_PER_PROMPT): pairing 'random' with a smaller pairs_per_prompt makes fewer",
            fields={"samples": ["too many pairs per prompt"]},
        )


def generation_job_create(
    *,
    project: Project,
    systems: Iterable[System],
    samples: int,
    scope: str = GenerationJob.Scope.ALL,
    scope_value: str = "",
    pairing: dict[str, Any] | None = None,
    created_by: Any = None,
    prompt_ids: list[int] | None = None,
    make_pairs: bool = True,
    enqueue: bool = True,
) -> GenerationJob:
    """Queues a job generating ``samples`` responses per chosen prompt and system (``prompt_ids`` when given,
    else the prompts ``scope`` chooses, as they are now). Celery is told once the row is committed, unless
    ``enqueue`` is False (an audit runs its job itself)."""
    systems = sorted({system.pk: system for system in systems}.values(), key=lambda system: system.pk)
    if not systems:
        raise ApplicationError("choose at least one system", fields={"systems": ["choose at least one"]})
    if any(system.project_id != project.pk for system in systems):
        raise ApplicationError("a system of another project", fields={"systems": ["not this project's"]})
    most = settings.GENERATION_MAX_SAMPLES
    if not 1 <= samples <= most:
        raise ApplicationError(f"samples: from 1 to {most}", fields={"samples": [f"from 1 to {most}"]})
    if scope not in GenerationJob.Scope.values:
        raise ApplicationError(
            f"scope: one of {', '.join(GenerationJob.Scope.values)}", fields={"scope": ["unknown"]}
        )
    if scope != GenerationJob.Scope.ALL and not scope_value:
        what = "category" if scope == GenerationJob.Scope.CATEGORY else "system name"
        raise ApplicationError(
            f"scope_value: the {what} to choose prompts by", fields={"scope_value": ["required"]}
        )
    options = _pairing_options(pairing or {})
    if make_pairs:
        _pairs_per_prompt_check(systems, samples, options)
    if prompt_ids is None:
        prompt_ids = _chosen_prompts(project, scope, scope_value)
    if not prompt_ids:
        raise ApplicationError(
            "no prompt matches that choice", code="no_prompts", fields={"scope": ["no prompts"]}
        )
    total = len(prompt_ids) * len(systems) * samples
    if total > settings.GENERATION_MAX_REQUESTS:
        raise ApplicationError(
            f"{total:,} responses to generate; at most {settings.GENERATION_MAX_REQUESTS:,} per job "
            "(GENERATION_MAX_REQUESTS): choose fewer prompts, systems or samples",
            fields={"samples": ["too many responses for one job"]},
        )
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project,
            created_by=created_by,
            scope=scope,
            scope_value=scope_value,
            prompt_ids=prompt_ids,
            samples=samples,
            pairing={name: getattr(options, name) for name in PAIRING_FIELDS},
            total=total,
            make_pairs=make_pairs,
        )
        job.systems.set(systems)
        if enqueue:
            transaction.on_commit(lambda: job_enqueue(job))
    return job


def generation_job_cancel(*, job: GenerationJob) -> GenerationJob:
    """Cancels a queued job at once; a running one stops within a second or so, keeping what it stored."""
    return job_cancel(job)


def generation_job_rerun(*, job: GenerationJob, created_by: Any = None) -> GenerationJob:
    """A new job with the same prompts, systems and settings: it generates only what is not stored yet."""
    if not job.is_finished:
        raise ApplicationError(
            f"generation job {job.pk} is still {job.status}", code="conflict", http_status=409
        )
    return generation_job_create(
        project=job.project,
        systems=list(job.systems.all()),
        samples=job.samples,
        scope=job.scope,
        scope_value=job.scope_value,
        pairing=job.pairing,
        created_by=created_by,
        prompt_ids=list(job.prompt_ids),
        make_pairs=job.make_pairs,
    )


# ----------------------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class _Work:
    prompt_id: int
    system: int  # index into the run's systems
    sample: int


@dataclass
class _Tally:
    generated: int = 0
    skipped: int = 0
    failed: int = 0
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def count(self, system: str, metadata: dict[str, Any]) -> None:
        made = metadata.get("generation") or {}
        row = self.usage.setdefault(
            system, {"responses": 0, "prompt_tokens": 0, "completion_tokens": 0, "truncated": 0}
        )
        row["responses"] += 1
        row["prompt_tokens"] += int(made.get("prompt_tokens") or 0)
        row["completion_tokens"] += int(made.get("completion_tokens") or 0)
        row["truncated"] += bool(metadata.get("truncated"))


def prompt_value(content: str, messages: Any) -> str | list[dict[str, str]]:
    """What is sent for a prompt: its conversation as a list of messages, else its text (the form the
    scoring service scores it in)."""
    if messages is not None:
        return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in messages]
    return content


class _Run:
    """One attempt of one job: reads what is stored, asks for the rest, writes as answers come."""

    def __init__(self, job: GenerationJob, attempt: int, heartbeat: JobHeartbeat) -> None:
        self.job, self.attempt, self.heartbeat = job, attempt, heartbeat
        self.systems = list(job.systems.order_by("id"))
        self.specs = [system_spec(system) for system in self.systems]
        self.ids = [[sample_external_id(system, k) for k in range(job.samples)] for system in self.systems]
        self.tally = _Tally()
        self.retries_before = job.retries
        self.returned = 0  # requests that came back, answered or not

    def run(self) -> None:
        job = self.job
        if not self.systems:
            self._fail("its systems were removed")
            return
        prompts = dict(
            (pk, prompt_value(content, messages))
            for pk, content, messages in Prompt.objects.filter(id__in=job.prompt_ids).values_list(
                "id", "content", "messages"
            )
        )
        queues = self._pending(prompts)
        clients: list[EndpointClient] = []
        try:
            for spec in self.specs:
                clients.append(EndpointClient(spec))
            outcome = self._generate(queues, prompts, clients)
        except EndpointDown as error:
            outcome = str(error)
        finally:
            for client in clients:
                client.close()
        fields = self._fields(clients)
        if outcome == "lost":
            return
        if outcome == "cancelled":
            job_finish(
                GenerationJob,
                job_id=job.pk,
                attempt=self.attempt,
                status=GenerationJob.Status.CANCELLED,
                note=f"cancelled after {self.tally.generated} of {job.total} responses",
                **fields,
            )
        elif outcome:
            self._fail(outcome, **fields)
        else:
            if job.make_pairs:
                fields["pairs_created"] = self._pair()
            job_finish(GenerationJob, job_id=job.pk, attempt=self.attempt, **fields)

    def _fail(self, reason: str, **fields: Any) -> None:
        stored = self.tally.generated
        kept = f"{stored} response{'' if stored == 1 else 's'} of this job {'is' if stored == 1 else 'are'} stored"
        message = f"{reason}; {kept}: run it again to go on from there"
        job_fail(GenerationJob, job_id=self.job.pk, attempt=self.attempt, error=message, **fields)

    def _fields(self, clients: list[EndpointClient]) -> dict[str, Any]:
        tally = self.tally
        sent = sum(client.requests_sent for client in clients)
        return {
            "generated": tally.generated,
            "skipped": tally.skipped,
            "failed": tally.failed,
            "retries": self.retries_before + max(0, sent - self.returned),
            "usage": tally.usage,
            "errors": tally.errors[:MAX_REPORTED_ERRORS],
            "progress": min(1.0, (tally.generated + tally.skipped + tally.failed) / max(1, self.job.total)),
        }

    def _pending(self, prompts: dict[int, Any]) -> list[deque[_Work]]:
        """The work still to do per system, in prompt order; counts what is stored (by this job: generated,
        with its tokens; by another job: skipped)."""
        wanted = {external_id: index for index, ids in enumerate(self.ids) for external_id in ids}
        stored: set[tuple[int, str]] = set()
        prompt_ids = [pk for pk in self.job.prompt_ids if pk in prompts]
        for start in range(0, len(prompt_ids), PROMPTS_PER_CHUNK):
            rows = Response.objects.filter(
                prompt_id__in=prompt_ids[start : start + PROMPTS_PER_CHUNK], external_id__in=list(wanted)
            ).values_list("prompt_id", "external_id", "system", "metadata")
            for prompt_id, external_id, system, metadata in rows:
                stored.add((prompt_id, external_id))
                if ((metadata or {}).get("generation") or {}).get("job") == self.job.pk:
                    self.tally.generated += 1
                    self.tally.count(system, metadata)
                else:
                    self.tally.skipped += 1
        queues: list[deque[_Work]] = [deque() for _ in self.systems]
        for prompt_id in prompt_ids:
            for index, ids in enumerate(self.ids):
                for sample, external_id in enumerate(ids):
                    if (prompt_id, external_id) not in stored:
                        queues[index].append(_Work(prompt_id, index, sample))
        return queues

    def _generate(
        self, queues: list[deque[_Work]], prompts: dict[int, Any], clients: list[EndpointClient]
    ) -> str:
        """Runs the requests; returns "" when all were answered, "cancelled", "lost", or why it stopped."""
        pools = [
            ThreadPoolExecutor(
                max_workers=spec.max_concurrency, thread_name_prefix=f"generate-{spec.name[:20]}"
            )
            for spec in self.specs
        ]
        outstanding: dict[Future, _Work] = {}
        in_flight = [0] * len(self.specs)
        stop, checked = "", time.monotonic()
        try:
            while True:
                if not stop:
                    for index, queue in enumerate(queues):
                        # Two per connection: the next request is ready when one ends.
                        while queue and in_flight[index] < 2 * self.specs[index].max_concurrency:
                            work = queue.popleft()
                            future = pools[index].submit(
                                clients[index].complete, prompts[work.prompt_id], sample=work.sample
                            )
                            outstanding[future] = work
                            in_flight[index] += 1
                if not outstanding:
                    break
                done, _ = wait(outstanding, timeout=1.0, return_when=FIRST_COMPLETED)
                rows = []
                for future in done:
                    work = outstanding.pop(future)
                    in_flight[work.system] -= 1
                    self.returned += 1
                    try:
                        completion = future.result()
                    except RequestRefused as error:
                        self.tally.failed += 1
                        self.tally.errors.append(f"prompt {work.prompt_id}, sample {work.sample}: {error}")
                    except EndpointDown as error:
                        stop = stop or str(error)
                    except Exception as error:  # anything else the client raises stops the job, saying what
                        logger.exception("generation job %s: request failed", self.job.pk)
                        stop = (
                            stop
                            or f"system '{self.specs[work.system].name}': {error.__class__.__name__}: {error}"
                        )
                    else:
                        rows.append(self._response(work, completion))
                self._store(rows)
                if time.monotonic() - checked >= 1.0 and not stop:
                    checked = time.monotonic()
                    if GenerationJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                        stop = "cancelled"
                if self.heartbeat.lost.is_set():
                    stop = "lost"
                if stop:
                    for future in list(outstanding):
                        if future.cancel():
                            outstanding.pop(future)
                self.heartbeat.report(**self._fields(clients))
        finally:
            for pool in pools:
                pool.shutdown(wait=True, cancel_futures=True)
        return stop

    def _response(self, work: _Work, completion: Completion) -> Response:
        system, spec = self.systems[work.system], self.specs[work.system]
        # PostgreSQL's text cannot hold NUL; a model can emit one.
        content = completion.content.replace("\x00", "\ufffd")
        metadata = {
            "generation": {
                "job": self.job.pk,
                "system_id": system.pk,
                "sample": work.sample,
                **spec.parameters(),
                "seed": None if spec.seed is None else spec.seed + work.sample,
                "finish_reason": completion.finish_reason,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "seconds": round(completion.seconds, 3),
            },
            "truncated": completion.truncated,
        }
        record = response_record(self.ids[work.system][work.sample], system.name, content, metadata)
        return Response(
            prompt_id=work.prompt_id,
            external_id=record.external_id,
            system=record.system,
            content=record.content,
            metadata=record.metadata,
            fingerprint=record.fingerprint,
        )

    def _store(self, rows: list[Response]) -> None:
        if not rows:
            return
        # A row an overlapping attempt already stored is left as it is.
        Response.objects.bulk_create(rows, ignore_conflicts=True)
        for row in rows:
            self.tally.generated += 1
            self.tally.count(row.system, row.metadata)

    def _pair(self) -> int:
        """Pairs each prompt's responses from this job's systems by the import's rule (``Couples``,
        ``generate_pairs``: all couples or a seeded draw, optionally across systems only), skipping couples
        already paired. Returns how many pairs were made."""
        options = ImportOptions(**self.job.pairing)
        wanted = [external_id for ids in self.ids for external_id in ids]
        made = 0
        prompt_ids = list(self.job.prompt_ids)
        for start in range(0, len(prompt_ids), PROMPTS_PER_CHUNK):
            chunk = prompt_ids[start : start + PROMPTS_PER_CHUNK]
            with transaction.atomic():
                # Excludes imports (which hold the project FOR UPDATE while they store pairs), not annotators.
                Project.objects.select_for_update(no_key=True).filter(pk=self.job.project_id).first()
                made += _pairs_store(self.job.project_id, chunk, wanted, options)
        return made


def _pairs_store(project_id: int, prompt_ids: list[int], wanted: list[str], options: ImportOptions) -> int:
    keys = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "external_id"))
    candidates: dict[int, list[tuple[int, ResponseRecord]]] = {}
    for pk, prompt_id, external_id, system, fingerprint in Response.objects.filter(
        prompt_id__in=prompt_ids, external_id__in=wanted
    ).values_list("id", "prompt_id", "external_id", "system", "fingerprint"):
        record = ResponseRecord(external_id, system, "", {}, fingerprint)
        candidates.setdefault(prompt_id, []).append((pk, record))
    rows = []
    for prompt_id, found in candidates.items():
        if len(found) < 2 or prompt_id not in keys:
            continue
        ids = {record.external_id: pk for pk, record in found}
        couples = Couples([record for _, record in found], cross_system_only=options.cross_system_only)
        for pair in generate_pairs(keys[prompt_id], couples, options):
            rows.append(
                Pair(
                    project_id=project_id,
                    prompt_id=prompt_id,
                    response_a_id=ids[pair.a],
                    response_b_id=ids[pair.b],
                )
            )
    if not rows:
        return 0
    before = Pair.objects.filter(prompt_id__in=list(candidates)).count()
    Pair.objects.bulk_create(rows, ignore_conflicts=True)
    return Pair.objects.filter(prompt_id__in=list(candidates)).count() - before


def generation_job_execute(*, job_id: int, worker: str = "worker") -> GenerationJob | None:
    """Claims the job (``palate.jobs.job_claim``; None when there is nothing to run) and runs it."""
    attempt = job_claim(GenerationJob, job_id=job_id, worker=worker)
    if attempt is None:
        logger.info("generation job %s is not claimable (finished, or running elsewhere)", job_id)
        return None
    job = GenerationJob.objects.select_related("project").get(pk=job_id)
    with job_heartbeat(GenerationJob, job_id=job_id, attempt=attempt) as heartbeat:
        try:
            _Run(job, attempt, heartbeat).run()
        except Exception as error:
            logger.exception("generation job %s crashed", job_id)
            job_fail(
                GenerationJob, job_id=job_id, attempt=attempt, error=f"{error.__class__.__name__}: {error}"
            )
    job.refresh_from_db()
    return job
