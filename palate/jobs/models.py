"""The abstract job: its state machine and what the lifecycle service keeps on every job row."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Only types whose kind says ``cancellable`` (training runs) ever reach it.
    CANCELLED = "cancelled", "Cancelled"


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Job(models.Model):
    """queued → running → succeeded / failed / cancelled. A claim (``palate.jobs.services.job_claim``)
    makes it running and counts an attempt; ``attempts`` is the claim's token, so a worker that lost its job
    (taken over, cancelled) can no longer write to it."""

    Status = JobStatus

    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0..1, written while it runs.")
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Claims so far (the running one included)."
    )
    max_attempts = models.PositiveSmallIntegerField(default=3)
    worker = models.CharField(
        max_length=200,
        blank=True,
        help_text="The worker of the latest attempt: node, process id and machine.",
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last queued again (empty: queued since it was created)."
    )
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When its task was last sent.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="%(class)s_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="%(class)s_status_heartbeat")]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED
