"""Stored agreement snapshots: computed when the project's judgments changed (their count or their latest
``updated_at``), which is what the Celery beat task asks for every few minutes, or on a first visit."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from annotate.models import AgreementSnapshot, Project
from annotate.selectors import agreement_snapshot_latest, project_judgment_state
from annotate.services.agreement.compute import agreement_snapshot_compute
from annotate.services.agreement.figures import agreement_figures

logger = logging.getLogger(__name__)

SNAPSHOTS_KEPT = 10
REFRESH_LOCK_SECONDS = 15 * 60


def agreement_snapshot_refresh(*, project_id: int, force: bool = False) -> AgreementSnapshot | None:
    """Computes and stores a snapshot when the project's judgments changed since the latest one.

    Returns the new snapshot, or None when nothing changed (or the project is gone, or another refresh of
    it is running). The judgment state is read before the figures, so a judgment that lands during the
    computation makes the next refresh run again rather than be missed. Keeps the latest
    ``SNAPSHOTS_KEPT`` snapshots of the project.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    total, last = project_judgment_state(project=project)
    latest = agreement_snapshot_latest(project=project)
    if not force and latest is not None and (latest.judgment_count, latest.last_judgment_at) == (total, last):
        return None
    lock = f"palate:agreement-refresh:{project_id}"
    if not cache.add(lock, True, REFRESH_LOCK_SECONDS):
        return None
    try:
        started = time.perf_counter()
        data = agreement_snapshot_compute(project=project)
        with transaction.atomic():
            snapshot = AgreementSnapshot.objects.create(
                project=project,
                judgment_count=total,
                last_judgment_at=last,
                data=data,
                seconds=time.perf_counter() - started,
            )
            stale = AgreementSnapshot.objects.filter(project=project).order_by("-created_at", "-id")[
                SNAPSHOTS_KEPT:
            ]
            AgreementSnapshot.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()
        return snapshot
    finally:
        cache.delete(lock)


def agreement_snapshot_current(*, project: Project) -> AgreementSnapshot:
    """The latest snapshot, computed now when the project has none yet (the first visit to the page)."""
    snapshot = agreement_snapshot_latest(project=project) or agreement_snapshot_refresh(project_id=project.pk)
    if snapshot is None:
        # Another process is computing the first snapshot: compute without storing rather than wait for it.
        total, last = project_judgment_state(project=project)
        snapshot = AgreementSnapshot(
            project=project,
            judgment_count=total,
            last_judgment_at=last,
            data=agreement_snapshot_compute(project=project),
            created_at=timezone.now(),
        )
    return snapshot


def agreement_refresh_request(*, project: Project) -> bool:
    """Queues a refresh of the project's snapshot after the current transaction commits.

    Returns False, queueing nothing, when the latest snapshot already reflects every judgment.
    """
    latest = agreement_snapshot_latest(project=project)
    if latest is not None and (latest.judgment_count, latest.last_judgment_at) == project_judgment_state(
        project=project
    ):
        return False
    transaction.on_commit(functools.partial(_refresh_send, project.pk))
    return True


def _refresh_send(project_id: int) -> None:
    from annotate.tasks import agreement_refresh_project

    try:
        agreement_refresh_project.delay(project_id)
    except BrokerUnreachable as error:
        # Beat's agreement-refresh-all refreshes every project whose judgments changed once the broker is back.
        logger.warning("agreement refresh of project %s not queued: %s", project_id, error)


def agreement_training_gate(*, project: Project) -> dict[str, Any]:
    """Whether the project's data meets its quality thresholds, for the training trigger: brings the
    snapshot up to date first (a no-op when nothing changed). Call from worker code, not a request."""
    agreement_snapshot_refresh(project_id=project.pk)
    snapshot = agreement_snapshot_latest(project=project)
    if snapshot is None:
        return {"ok": False, "reasons": ["No agreement figures yet."]}
    return agreement_figures(snapshot=snapshot, project=project)["training_gate"]
