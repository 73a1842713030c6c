"""The export job: created queued, claimed by the Celery task with a status transition, run with its progress
in the cache (its reads happen inside one transaction, so its own row cannot show progress until the end),
and reaped when its worker died. The building itself is ``build.export_build``."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import Export, Project
from annotate.services.exports.build import ProgressCallback, export_build
from annotate.services.exports.policy import export_formats_parse, export_policy_parse
from palate.errors import ApplicationError

logger = logging.getLogger(__name__)


def export_create(
    *, project: Project, policy: Any, formats: Any, created_by: Any, enqueue: bool = True
) -> Export:
    """Validates the request, records a queued Export with the next version number and, with ``enqueue``,
    queues the Celery task once the row is committed."""
    from annotate.tasks import export_run_task

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
            transaction.on_commit(lambda: export_run_task.delay(export.pk))
    return export


def _progress_key(export_id: int) -> str:
    return f"palate:export-progress:{export_id}"


def export_progress(*, export: Export) -> float:
    """How far a running export is, 0..1 (kept in the cache while it runs: its reads happen inside one
    transaction, so its own row cannot show progress until the end)."""
    if export.status == Export.Status.RUNNING:
        live = cache.get(_progress_key(export.pk))
        if live is not None:
            return float(live["done"])
    return float(export.progress)


def export_run(*, export_id: int, progress: ProgressCallback | None = None) -> Export | None:
    """Runs a queued export. Claims it with a status transition, so a redelivered task does nothing;
    returns None when the export was not (or no longer) queued."""
    claimed = Export.objects.filter(pk=export_id, status=Export.Status.QUEUED).update(
        status=Export.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        logger.info("export %s was already claimed", export_id)
        return None
    export = Export.objects.select_related("project").get(pk=export_id)

    def report(done: float) -> None:
        cache.set(_progress_key(export.pk), {"done": round(done, 4), "at": time.time()}, timeout=24 * 3600)
        if progress:
            progress(done)

    folder = export_folder(export=export)
    partial = folder.with_name(f"{folder.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        result = export_build(export=export, folder=partial, progress=report)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    except ApplicationError as failure:
        shutil.rmtree(partial, ignore_errors=True)
        export.status, export.error = Export.Status.FAILED, failure.message
    except Exception as error:
        logger.exception("export %s crashed", export.pk)
        shutil.rmtree(partial, ignore_errors=True)
        export.status, export.error = Export.Status.FAILED, f"the export stopped: {error}"
    else:
        export.status, export.counts, export.files, export.progress = (
            Export.Status.SUCCEEDED,
            result.counts,
            result.files,
            1.0,
        )
    finally:
        cache.delete(_progress_key(export.pk))
    export.finished_at = timezone.now()
    export.save(update_fields=["status", "error", "counts", "files", "progress", "finished_at"])
    return export


def exports_reap(*, stale_after_seconds: int = 1800) -> int:
    """Fails exports whose worker died: running with no progress reported for ``stale_after_seconds``
    (every chunk reports), or queued for a day. Their unfinished folders are removed. Returns how many."""
    now = timezone.now()
    reaped = 0
    for export in Export.objects.filter(status=Export.Status.RUNNING):
        live = cache.get(_progress_key(export.pk)) or {}
        last_sign_of_life = live.get("at") or (export.started_at or export.created_at).timestamp()
        if time.time() - last_sign_of_life > stale_after_seconds:
            failed = Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
                status=Export.Status.FAILED,
                error="the worker stopped while exporting; start the export again",
                finished_at=now,
            )
            if failed:
                folder = export_folder(export=export)
                shutil.rmtree(folder.with_name(f"{folder.name}.partial"), ignore_errors=True)
            reaped += failed
    reaped += Export.objects.filter(
        status=Export.Status.QUEUED, created_at__lt=now - timezone.timedelta(days=1)
    ).update(
        status=Export.Status.FAILED,
        error="no worker picked this export up within a day; is a Celery worker running?",
        finished_at=now,
    )
    return reaped


def export_folder(*, export: Export) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "exports" / str(export.pk)
