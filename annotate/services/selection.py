"""Active comparison selection: the "uncertain_systems" assignment strategy.

``pair_priorities_refresh`` fits the project's Bradley-Terry ratings, scores every pair that still takes
judgments by how much its next vote would narrow the uncertainty between its two systems where their order is
in doubt (``annotate.stats.selection``), and writes the scores to ``Pair.priority`` with
``pair_priorities_write`` (the one writer, which the "uncertain_model" strategy in
``rewardtrain.services.assisted`` uses too); ``pair_claim_next`` hands out the highest first. Full pairs get -1. The beat task refreshes a project when enough judgments arrived since its
last refresh (or the last one is a few minutes old), so the claim path itself never fits anything.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction

from annotate.models import Judgment, Pair, Project
from annotate.services.leaderboard import project_outcome_table, project_systems
from annotate.stats.ratings import fit_ratings
from annotate.stats.selection import fisher_covariance, pair_priorities
from palate.db import read_arrays

logger = logging.getLogger(__name__)

STRATEGY = "uncertain_systems"
FULL_PRIORITY = -1.0
# Pairs that cannot inform the leaderboard (a response without a system, or both from the same system).
UNINFORMATIVE_PRIORITY = 0.0
UPDATE_CHUNK = 5_000
REFRESH_EVERY_JUDGMENTS = 25
REFRESH_MAX_AGE_SECONDS = 300
LOCK_SECONDS = 600


def _state_key(project_id: int) -> str:
    return f"palate:priorities:{project_id}"


def pair_priorities_refresh(*, project: Project) -> int:
    """Recomputes ``Pair.priority`` for every pair of a project whose strategy is "uncertain_systems" (others
    are left alone). Returns the number of pairs whose priority changed.

    Writes go in chunks of ``UPDATE_CHUNK`` rows, each its own short statement that skips unchanged rows, so
    concurrent claims (which lock the pairs they hand out) never wait long and never find every open pair
    locked at once.
    """
    if project.assignment_strategy != STRATEGY:
        return 0
    systems = project_systems(project=project)
    table, last_judgment = project_outcome_table(
        project=project, systems=systems, both_bad_as_tie=project.both_bad_as_tie
    )
    if systems:
        fit = fit_ratings(table, systems=systems, interval="none")
        theta, covariance = fit.theta, fisher_covariance(table.battles, fit.theta)
    else:
        theta, covariance = np.zeros(0), np.zeros((0, 0))

    names = tuple(systems)
    pairs = Pair.objects.filter(project=project).values_list(
        "id", "response_a__system", "response_b__system", "slots_taken"
    )
    columns = read_arrays(
        pairs.order_by(), {"id": "int", "system_a": names, "system_b": names, "slots_taken": "int"}
    )
    rows = np.column_stack(list(columns.values()))
    # Within a system pair, fill the fullest pairs first (then by id), as the fill order does.
    rows = rows[np.lexsort((rows[:, 0], -rows[:, 3]))]
    pair_id, system_a, system_b, slots_taken = rows.T
    open_slots = np.clip(project.overlap - slots_taken, 0, None)
    priority = np.where(open_slots > 0, UNINFORMATIVE_PRIORITY, FULL_PRIORITY)
    informative = (system_a >= 0) & (system_b >= 0) & (system_a != system_b)
    if informative.any():
        scores = pair_priorities(
            system_a[informative], system_b[informative], open_slots[informative], theta, covariance
        )
        priority[informative] = np.nan_to_num(scores, nan=UNINFORMATIVE_PRIORITY, posinf=1e6)
    changed = pair_priorities_write(pair_ids=pair_id, priorities=priority)
    cache.set(
        _state_key(project.pk),
        {"last_judgment_id": last_judgment, "refreshed_at": time.time()},
        timeout=None,
    )
    return changed


def pair_priorities_write(*, pair_ids: np.ndarray, priorities: np.ndarray) -> int:
    """Sets ``Pair.priority`` of each pair in ``pair_ids`` to the matching value of ``priorities`` (higher is
    handed out first) and returns how many pairs changed. The one way any assignment strategy writes
    priorities: this module's "uncertain_systems" and ``rewardtrain.services.assisted``'s "uncertain_model".

    Writes go in short chunks of ``UPDATE_CHUNK`` consecutive ids that skip unchanged rows (through a COPY
    into a temporary table), so concurrent claims, which lock the pairs they hand out, never
    wait long. Call it outside a long transaction; the pairs need no lock."""
    pair_id, priority = np.asarray(pair_ids, dtype=np.int64), np.asarray(priorities, dtype=np.float64)
    order = np.argsort(pair_id, kind="stable")
    pair_id, priority = pair_id[order], priority[order]
    return _priorities_write(pair_id, priority)


def _binary_copy_rows(pair_id: np.ndarray, priority: np.ndarray) -> bytes:
    """``COPY ... (FORMAT binary)`` data for rows (BIGINT id, DOUBLE PRECISION priority), built by numpy."""
    row = np.dtype(
        [
            ("count", ">i2"),
            ("id_length", ">i4"),
            ("id", ">i8"),
            ("priority_length", ">i4"),
            ("priority", ">f8"),
        ]
    )
    records = np.empty(pair_id.size, dtype=row)
    records["count"] = 2
    records["id_length"] = 8
    records["id"] = pair_id
    records["priority_length"] = 8
    records["priority"] = priority
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + records.tobytes() + (-1).to_bytes(2, "big", signed=True)


def _priorities_write(pair_id: np.ndarray, priority: np.ndarray) -> int:
    """COPY the new priorities into a temporary table, then update the pairs from it in short statements over
    consecutive id ranges. Each statement locks at most ``UPDATE_CHUNK`` pairs for a moment and skips pairs
    whose priority did not change; the id range lets PostgreSQL walk the primary key instead of the table."""
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS palate_pair_priority "
            "(id BIGINT PRIMARY KEY, priority DOUBLE PRECISION NOT NULL)"
        )
        try:
            cursor.execute("TRUNCATE palate_pair_priority")
            with cursor.cursor.copy(
                "COPY palate_pair_priority (id, priority) FROM STDIN (FORMAT binary)"
            ) as copy:
                copy.write(_binary_copy_rows(pair_id, priority))
            cursor.execute("ANALYZE palate_pair_priority")
            for start in range(0, pair_id.size, UPDATE_CHUNK):
                low, high = int(pair_id[start]), int(pair_id[min(start + UPDATE_CHUNK, pair_id.size) - 1])
                with transaction.atomic():
                    cursor.execute(
                        """
                        UPDATE annotate_pair AS p SET priority = t.priority
                        FROM palate_pair_priority AS t
                        WHERE p.id BETWEEN %s AND %s AND t.id BETWEEN %s AND %s
                          AND p.id = t.id AND p.priority <> t.priority
                        """,
                        [low, high, low, high],
                    )
                    changed += max(cursor.rowcount, 0)
        finally:
            cursor.execute("DROP TABLE IF EXISTS palate_pair_priority")
    return changed


def pair_priorities_due(*, project: Project, now: float | None = None) -> bool:
    """Whether the project's priorities are stale: never computed, ``REFRESH_EVERY_JUDGMENTS`` new human
    judgments since the last refresh, or any new one and the last refresh older than
    ``REFRESH_MAX_AGE_SECONDS``. Counting only judgments newer than the last one seen walks the primary key,
    so the check stays cheap however large the project is."""
    if project.assignment_strategy != STRATEGY:
        return False
    state = cache.get(_state_key(project.pk))
    if state is None:
        return True
    new = (
        Judgment.objects.filter(
            pk__gt=state["last_judgment_id"], pair__project=project, origin=Judgment.Origin.HUMAN
        )
        .values("pk")[:REFRESH_EVERY_JUDGMENTS]
        .count()
    )
    now = time.time() if now is None else now
    return new >= REFRESH_EVERY_JUDGMENTS or (
        new > 0 and now - state["refreshed_at"] >= REFRESH_MAX_AGE_SECONDS
    )


def pair_priorities_projects_due() -> list[int]:
    """For the beat task: ids of the "uncertain_systems" projects whose priorities are due."""
    return [
        project.pk
        for project in Project.objects.filter(assignment_strategy=STRATEGY)
        if pair_priorities_due(project=project)
    ]


def pair_priorities_refresh_once(*, project_id: int) -> int | None:
    """For the task: refreshes the project's priorities unless another worker is already doing so (then
    None). A redelivered or duplicate task is harmless either way."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    lock = f"{_state_key(project.pk)}:lock"
    if not cache.add(lock, 1, timeout=LOCK_SECONDS):
        return None
    try:
        changed = pair_priorities_refresh(project=project)
    finally:
        cache.delete(lock)
    logger.info("pair priorities of project %s refreshed: %s pairs changed", project.pk, changed)
    return changed
