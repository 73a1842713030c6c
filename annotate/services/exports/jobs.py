"""The export job, a job of ``palate.jobs``: created queued, claimed by its Celery task (``job_claim``: a
redelivered task takes over an export whose worker was lost and builds it again from scratch), its progress
written by the heartbeat's own connection (the build reads inside one transaction). The files are written
to ``exports/<id>/`` in the exports store as they are produced; the export lists them (``files``) only once
it succeeded, and an export that ends any other way leaves nothing there. The building itself is
``build.export_build``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Max

from annotate.models import Export, Project
from annotate.services.exports.files import ExportFolder, export_prefix
from annotate.services.exports.policy import export_formats_parse, export_policy_parse
from palate.errors import ApplicationError
from palate.jobs.services import (
    JobKind,
    job_claim,
    job_enqueue,
    job_fail,
    job_finish,
    job_heartbeat,
    job_owned,
)
from palate.storage import EXPORTS, store_delete

if TYPE_CHECKING:
    from annotate.services.exports.build import ProgressCallback

logger = logging.getLogger(__name__)


def export_folder(*, export: Export) -> str:
    """The export's folder in the exports store."""
    return export_prefix(export.pk)


def _send(export: Export) -> None:
    from annotate.tasks import export_run_task

    export_run_task.delay(export.pk)


EXPORT_JOBS = JobKind(
    model=Export,
    send=_send,
    noun="export",
    # A succeeded export keeps its files; one that ends any other way leaves nothing.
    temporary_files=lambda export, status: (
        [] if status == Export.Status.SUCCEEDED else [(EXPORTS, export_prefix(export.pk))]
    ),
)


def export_create(
    *, project: Project, policy: Any, formats: Any, created_by: Any, enqueue: bool = True
) -> Export:
    """Validates the request, records a queued Export with the next version number and, with ``enqueue``,
    sends its Celery task once the row is committed."""
    parsed = export_policy_parse(policy, project=project)
    chosen_formats = export_formats_parse(formats)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        version = (Export.objects.filter(project=project).aggregate(last=Max("version"))["last"] or 0) + 1
        export = Export.objects.create(
            project=project,
            version=version,
            created_by=created_by,
            policy=parsed.as_dict(),
            formats=chosen_formats,
        )
        if enqueue:
            transaction.on_commit(lambda: job_enqueue(export))
    return export


def export_progress(*, export: Export) -> float:
    """How far an export is, 0..1 (a running export's heartbeat writes it)."""
    return float(export.progress)


class _Superseded(Exception):
    """This attempt no longer owns its export (another delivery took it over): it stops building."""


def export_run(
    *, export_id: int, worker: str = "worker", progress: ProgressCallback | None = None
) -> Export | None:
    """Claims the export (``palate.jobs.job_claim``: a redelivered task runs it again only when its worker
    was lost) and builds its files from scratch; returns the export as it ended, or None when there was
    nothing to run. ``worker`` is the Celery node name (in-process callers keep the default)."""
    # Imported here: the builder brings the statistics (scipy), and every process registers this job kind
    # at start-up.
    from annotate.services.exports.build import export_build

    attempt = job_claim(Export, job_id=export_id, worker=worker)
    if attempt is None:
        logger.info("export %s is not claimable (finished, or running elsewhere)", export_id)
        return None
    export = Export.objects.select_related("project").get(pk=export_id)
    with job_heartbeat(Export, job_id=export_id, attempt=attempt) as beat:

        def report(done: float) -> None:
            if beat.lost.is_set():
                raise _Superseded
            beat.report(progress=round(done, 4))
            if progress:
                progress(done)

        folder = ExportFolder(export_id)
        try:
            # What an attempt whose worker was lost left behind.
            store_delete(EXPORTS, export_prefix(export_id))
            try:
                result = export_build(export=export, folder=folder, progress=report)
            except BaseException:
                folder.abort()
                raise
            if not job_owned(Export, export_id, attempt).exists():
                raise _Superseded
        except _Superseded:
            logger.warning("export %s attempt %s was taken over; it stops", export_id, attempt)
            return None
        except ApplicationError as failure:
            job_fail(Export, job_id=export_id, attempt=attempt, error=failure.message)
        except Exception as error:
            logger.exception("export %s crashed", export_id)
            job_fail(Export, job_id=export_id, attempt=attempt, error=f"the export stopped: {error}")
        else:
            job_finish(Export, job_id=export_id, attempt=attempt, counts=result.counts, files=result.files)
    export.refresh_from_db()
    return export
