"""Celery entry points: they take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from annotate.selectors import agreement_projects_changed
from annotate.services.agreement import agreement_snapshot_refresh
from annotate.services.assignment import leases_expire_all
from annotate.services.exports import export_run
from annotate.services.imports import import_job_run
from annotate.services.search_documents import search_documents_fill
from annotate.services.selection import pair_priorities_projects_due, pair_priorities_refresh_once


# Imports and exports: late acknowledgement and redelivery when the process dies; the claim makes a second
# delivery harmless, and takes the job over when its worker was lost (palate.jobs.services).
@shared_task(name="annotate.import_job_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def import_job_run_task(self, job_id: int) -> None:
    import_job_run(job_id=job_id, worker=self.request.hostname or "worker")


@shared_task(name="annotate.leases_expire_all")
def leases_expire_all_task() -> None:
    leases_expire_all()


# Both run on the default queue (CELERY_TASK_DEFAULT_QUEUE).
@shared_task(name="annotate.agreement_refresh_project", acks_late=True)
def agreement_refresh_project(project_id: int) -> None:
    agreement_snapshot_refresh(project_id=project_id)


@shared_task(name="annotate.agreement_refresh_all")
def agreement_refresh_all() -> None:
    """Run by beat: queues a refresh for each project whose judgments changed since its latest snapshot."""
    for project_id in agreement_projects_changed():
        agreement_refresh_project.delay_on_commit(project_id)


@shared_task(name="annotate.export_run", bind=True, acks_late=True, reject_on_worker_lost=True)
def export_run_task(self, export_id: int) -> None:
    export_run(export_id=export_id, worker=self.request.hostname or "worker")


@shared_task(name="annotate.pair_priorities_refresh", acks_late=True)
def pair_priorities_refresh_task(project_id: int) -> None:
    pair_priorities_refresh_once(project_id=project_id)


@shared_task(name="annotate.pair_priorities_refresh_due")
def pair_priorities_refresh_due_task() -> None:
    """Run by beat every minute: queues a refresh for each "uncertain_systems" project with enough new
    judgments since its last one (or a stale one)."""
    for project_id in pair_priorities_projects_due():
        pair_priorities_refresh_task.delay_on_commit(project_id)


@shared_task(name="annotate.search_documents_fill")
def search_documents_fill_task(project_id: int | None = None) -> None:
    """Queued after each import commits (that project), and run by beat for all projects: catches up on
    imports whose task was never sent (Redis down) or was lost."""
    search_documents_fill(project_id=project_id)
