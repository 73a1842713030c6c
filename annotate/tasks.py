"""Celery entry points: they take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from annotate.services.imports import import_job_run


@shared_task(name="annotate.import_job_run", queue="default", acks_late=True)
def import_job_run_task(job_id: int) -> None:
    import_job_run(job_id=job_id)
