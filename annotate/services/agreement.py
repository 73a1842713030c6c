"""Agreement snapshots: the quality dashboard's figures for a project, computed from its judgments.

The service only turns judgment rows into aligned arrays and feeds ``annotate/stats/agreement``; every
statistic is computed there. The unit of agreement is the pair. Only annotators' judgments count: labels
imported with the data (origin ``imported``) are not anyone's opinion to agree with.

Rows are read in bulk into numpy arrays (``judgment_arrays``), with no model instances, so a project with a
million judgments is read in a second or two. A snapshot is stored only when the project's judgments changed (their count or their latest ``updated_at``), which is what the Celery beat task
asks for every few minutes.

Flags and the training gate are derived from the stored figures and the project's *current* thresholds
(``agreement_figures``), so a lead who changes a threshold sees the flags move at once, without waiting for
new judgments.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from numpy.typing import NDArray

from annotate.models import AgreementSnapshot, Membership, Pair, Project
from annotate.selectors import agreement_snapshot_latest, project_judgment_state
from annotate.services.judgment_arrays import CHOICES, JudgmentArrays, judgment_arrays
from annotate.stats import agreement

CHOICE_CODE = {choice: float(code) for code, choice in enumerate(CHOICES)}
A, B, TIE, BOTH_BAD = (CHOICE_CODE[choice] for choice in CHOICES)

BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0
KAPPA_MIN_SHARED = 10
DRIFT_WINDOW = 50
# Fewer scored judgments than this and "recent agreement" is noise, so it is left empty.
DRIFT_MIN_OUTCOMES = 10
CONTESTED_PAIRS = 25
TIMELINE_MAX_POINTS = 30
# Each point is an alpha over all judgments up to it; on big projects fewer points keep the timeline's cost
# near that of a dozen alphas over everything.
TIMELINE_JUDGMENT_BUDGET = 6_000_000
TIMELINE_MIN_POINTS = 8
# An annotator is flagged only on enough evidence: a handful of gold pairs, or of sided choices with a
# binomial test that rejects "left half the time", says little.
GOLD_FLAG_MIN_JUDGMENTS = 5
POSITION_FLAG_MIN_JUDGMENTS = 20
POSITION_FLAG_P_VALUE = 0.05
SNAPSHOTS_KEPT = 10
REFRESH_LOCK_SECONDS = 15 * 60
PROMPT_PREVIEW_CHARS = 160


def signed_strength(*, choice: NDArray[np.float64], strength: NDArray[np.float64]) -> NDArray[np.float64]:
    """The preference on one scale -N..+N in A/B terms: A by s is +s, B by s is -s, a tie is 0.

    "Both bad" says nothing about which response is better and is left out (NaN), as is a sided choice
    without a strength.
    """
    signed = np.full(choice.shape, np.nan)
    signed[choice == A] = strength[choice == A]
    signed[choice == B] = -strength[choice == B]
    signed[choice == TIE] = 0.0
    return signed


# ----------------------------------------------------------------------------------------------------------
# Computing


def agreement_snapshot_compute(*, project: Project) -> dict[str, Any]:
    """The dashboard's figures for the project, as JSON-ready data (NaN becomes None).

    Reads the project's human judgments in bulk; flags and the training gate use the project's thresholds
    (``agreement_figures`` re-derives them when the thresholds change later).
    """
    started = time.perf_counter()
    rows = judgment_arrays(project=project)
    pair_ids, units = np.unique(rows.pair_ids, return_inverse=True)
    annotator_ids, coders = np.unique(rows.annotator_ids, return_inverse=True)
    units, coders = units.astype(np.int64), coders.astype(np.int64)
    coder_count = annotator_ids.size
    read_seconds = time.perf_counter() - started

    usernames = dict(
        get_user_model().objects.filter(pk__in=annotator_ids.tolist()).values_list("pk", "username")
    )
    names = [usernames.get(int(annotator_id), f"user {annotator_id}") for annotator_id in annotator_ids]
    choice = rows.choice
    long = {"units": units, "coders": coders}

    data: dict[str, Any] = {
        "summary": {
            "judgments": int(choice.size),
            "pairs": int(pair_ids.size),
            "annotators": int(coder_count),
            "pairs_with_overlap": int(np.count_nonzero(np.bincount(units, minlength=pair_ids.size) >= 2)),
            "strength_scale": int(project.strength_scale),
            "overlap": int(project.overlap),
        },
        "alpha": {"nominal": _alpha_with_interval(values=choice, level="nominal", **long)},
    }
    # With strength on, the signed scale -N..+N is ordinal and interval data too; off, those are None.
    signed = signed_strength(choice=choice, strength=rows.strength) if project.strength_scale else None
    for level in ("ordinal", "interval"):
        data["alpha"][level] = (
            None if signed is None else _alpha_with_interval(values=signed, level=level, **long)
        )
    data["criteria"] = [
        {
            "name": name,
            "alpha": _number(agreement.krippendorff_alpha(values=values, level="nominal", **long)),
            "judgments": int(np.count_nonzero(~np.isnan(values))),
        }
        for name, values in rows.criteria.items()
    ]
    data["percent_agreement"] = _number(agreement.percent_agreement(values=choice, **long))
    data["fleiss"] = _fleiss(project=project, choice=choice, **long)
    data["kappa"] = _kappa(choice=choice, names=names, coder_count=coder_count, **long)
    data["annotators"] = _annotator_table(
        rows=rows, names=names, annotator_ids=annotator_ids, coder_count=coder_count, **long
    )
    data["groups"] = _groups(project=project, choice=choice, annotator_ids=annotator_ids, **long)
    data["contested"] = _contested_pairs(choice=choice, pair_ids=pair_ids, **long)
    data["over_time"] = _alpha_over_time(choice=choice, created=rows.created, **long)
    data["thresholds"] = _thresholds(project)
    data["flags"], data["training_gate"] = quality_flags(data, thresholds=data["thresholds"])
    data["timings"] = {
        "read_seconds": _number(read_seconds, 3),
        "total_seconds": _number(time.perf_counter() - started, 3),
    }
    return data


def _alpha_with_interval(
    *, units: NDArray[np.int64], coders: NDArray[np.int64], values: NDArray[np.float64], level: str
) -> dict[str, Any]:
    result = agreement.krippendorff_alpha_bootstrap(
        units=units, coders=coders, values=values, level=level, rounds=BOOTSTRAP_ROUNDS, seed=BOOTSTRAP_SEED
    )
    return {
        "estimate": _number(result.estimate),
        "low": _number(result.low),
        "high": _number(result.high),
        "confidence": result.confidence,
        "rounds": BOOTSTRAP_ROUNDS,
        "judgments": int(np.count_nonzero(~np.isnan(values))),
    }


def _fleiss(
    *, project: Project, units: NDArray[np.int64], coders: NDArray[np.int64], choice: NDArray[np.float64]
) -> dict[str, Any]:
    # "Full overlap" is the project's overlap: gold pairs, seen by everyone, would otherwise set the bar.
    raters = max(int(project.overlap), 2)
    table = agreement.fleiss_count_table(units=units, coders=coders, values=choice, raters=raters)
    kappa = agreement.fleiss_kappa(table.counts) if table.counts.shape[0] else float("nan")
    return {"kappa": _number(kappa), "pairs": int(table.counts.shape[0]), "raters": raters}


def _kappa(
    *,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    choice: NDArray[np.float64],
    names: list[str],
    coder_count: int,
) -> dict[str, Any]:
    pairwise = agreement.cohen_kappa_matrix(
        units=units, coders=coders, values=choice, min_shared=KAPPA_MIN_SHARED, coder_count=coder_count
    )
    order = sorted(range(coder_count), key=lambda coder: names[coder].lower())
    kappa = pairwise.kappa[np.ix_(order, order)]
    shared = pairwise.shared_units[np.ix_(order, order)]
    return {
        "annotators": [names[coder] for coder in order],
        "matrix": [[_number(value, 4) for value in row] for row in kappa],
        "shared": shared.tolist(),
        "min_shared": KAPPA_MIN_SHARED,
    }


def _annotator_table(
    *,
    rows: JudgmentArrays,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    names: list[str],
    annotator_ids: NDArray[np.int64],
    coder_count: int,
) -> list[dict[str, Any]]:
    choice = rows.choice
    judgments = np.bincount(coders, minlength=coder_count)
    # Agreement with the leave-one-out majority, per judgment; summed per annotator here and read in time
    # order for drift.
    outcomes = agreement.majority_agreement_outcomes(units=units, coders=coders, values=choice)
    scored = ~np.isnan(outcomes)
    agreement_scored = np.bincount(coders[scored], minlength=coder_count)
    agreement_share = _share(
        np.bincount(coders[scored], weights=outcomes[scored], minlength=coder_count), agreement_scored
    )

    on_gold = ~np.isnan(rows.gold)
    gold_judgments = np.bincount(coders[on_gold], minlength=coder_count)
    gold_correct = np.bincount(
        coders[on_gold], weights=choice[on_gold] == rows.gold[on_gold], minlength=coder_count
    )
    gold_accuracy = _share(gold_correct, gold_judgments)

    # Choices are stored in A/B terms; the left-shown response is A unless the sides were swapped.
    sided = (choice == A) | (choice == B)
    chose_left = (choice[sided] == A) != rows.shown_swapped[sided]
    bias = agreement.position_bias(coders=coders[sided], chose_left=chose_left, coder_count=coder_count)

    ties = np.bincount(coders, weights=choice == TIE, minlength=coder_count)
    both_bad = np.bincount(coders, weights=choice == BOTH_BAD, minlength=coder_count)
    days = np.floor(rows.created / 86400.0).astype(np.int64) if rows.created.size else np.empty(0, np.int64)
    day_span = int(days.max() - days.min() + 1) if days.size else 1
    active_days = np.bincount(
        np.unique(coders * day_span + (days - (days.min() if days.size else 0))) // day_span,
        minlength=coder_count,
    )
    median_seconds, recent = _timing_and_recent_agreement(
        coders=coders,
        outcomes=outcomes,
        duration_ms=rows.duration_ms,
        created=rows.created,
        coder_count=coder_count,
    )

    table = []
    for coder in range(coder_count):
        share = _number(agreement_share[coder])
        recent_share = _number(recent[coder])
        table.append(
            {
                "id": int(annotator_ids[coder]),
                "username": names[coder],
                "judgments": int(judgments[coder]),
                "agreement": share,
                "agreement_scored": int(agreement_scored[coder]),
                "gold_accuracy": _number(gold_accuracy[coder]),
                "gold_judgments": int(gold_judgments[coder]),
                "left_share": _number(bias.left_share[coder]),
                "sided_judgments": int(bias.judgments[coder]),
                "position_p_value": _significant(bias.p_value[coder]),
                "tie_rate": _number(ties[coder] / judgments[coder]),
                "both_bad_rate": _number(both_bad[coder] / judgments[coder]),
                "median_seconds": _number(median_seconds[coder], 1),
                "active_days": int(active_days[coder]),
                "per_day": _number(judgments[coder] / max(int(active_days[coder]), 1), 1),
                "recent_agreement": recent_share,
                "drift": None if recent_share is None or share is None else _number(recent_share - share),
            }
        )
    table.sort(key=lambda row: row["username"].lower())
    return table


def _timing_and_recent_agreement(
    *,
    coders: NDArray[np.int64],
    outcomes: NDArray[np.float64],
    duration_ms: NDArray[np.float64],
    created: NDArray[np.float64],
    coder_count: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per annotator: median seconds per judgment, and agreement with the others' majority over their last
    ``DRIFT_WINDOW`` scored judgments (NaN with fewer than ``DRIFT_MIN_OUTCOMES``)."""
    order = np.lexsort((created, coders))
    bounds = np.searchsorted(coders[order], np.arange(coder_count + 1))
    ordered_seconds = duration_ms[order] / 1000.0
    ordered_outcomes = outcomes[order]
    median_seconds = np.full(coder_count, np.nan)
    recent = np.full(coder_count, np.nan)
    # A loop over annotators (hundreds at most), never over judgments.
    for coder in range(coder_count):
        seconds = ordered_seconds[bounds[coder] : bounds[coder + 1]]
        seconds = seconds[~np.isnan(seconds)]
        if seconds.size:
            median_seconds[coder] = np.median(seconds)
        own = ordered_outcomes[bounds[coder] : bounds[coder + 1]]
        own = own[~np.isnan(own)]
        if own.size:
            recent[coder] = agreement.rolling_agreement(
                own, window=DRIFT_WINDOW, min_outcomes=min(DRIFT_WINDOW, DRIFT_MIN_OUTCOMES)
            )[-1]
    return median_seconds, recent


def _groups(
    *,
    project: Project,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    choice: NDArray[np.float64],
    annotator_ids: NDArray[np.int64],
) -> list[dict[str, Any]]:
    """For each membership attribute with two or more values: alpha within each value's annotators and
    between them. Annotators without the attribute are left out of that attribute's figures."""
    attributes = dict(
        Membership.objects.filter(project=project, user_id__in=annotator_ids.tolist()).values_list(
            "user_id", "attributes"
        )
    )
    keys = sorted({str(key) for values in attributes.values() if isinstance(values, dict) for key in values})
    results = []
    for key in keys:
        value_of_coder = [
            str(attributes.get(int(annotator_id), {}).get(key, "")).strip() for annotator_id in annotator_ids
        ]
        distinct = sorted({value for value in value_of_coder if value})
        if len(distinct) < 2:
            continue
        group_index = {value: index for index, value in enumerate(distinct)}
        coder_groups = np.array([group_index.get(value, -1) for value in value_of_coder], dtype=np.int64)
        member = coder_groups[coders] >= 0
        member_coders = coders[member]
        result = agreement.group_alpha(
            units=units[member],
            coders=member_coders,
            values=choice[member],
            coder_groups=np.maximum(coder_groups, 0),
        )
        judgments = np.bincount(coder_groups[member_coders], minlength=len(distinct))
        members = np.bincount(coder_groups[coder_groups >= 0], minlength=len(distinct))
        results.append(
            {
                "attribute": key,
                "between": _number(result.between),
                "groups": [
                    {
                        "value": value,
                        "alpha": _number(result.within[index]),
                        "annotators": int(members[index]),
                        "judgments": int(judgments[index]),
                    }
                    for index, value in enumerate(distinct)
                ],
            }
        )
    return results


def _contested_pairs(
    *,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    choice: NDArray[np.float64],
    pair_ids: NDArray[np.int64],
) -> list[dict[str, Any]]:
    """The pairs whose votes are most split (highest vote entropy), most votes first among equals."""
    if not pair_ids.size:
        return []
    entropy = agreement.vote_entropy(units=units, coders=coders, values=choice, unit_count=pair_ids.size)
    counts = np.zeros((pair_ids.size, len(CHOICES)), dtype=np.int64)
    np.add.at(counts, (units, choice.astype(np.int64)), 1)
    votes = counts.sum(axis=1)
    candidates = np.flatnonzero((votes >= 2) & (entropy > 0))
    order = candidates[np.lexsort((-votes[candidates], -entropy[candidates]))][:CONTESTED_PAIRS]
    details = {
        pk: (external_id, content)
        for pk, external_id, content in Pair.objects.filter(pk__in=pair_ids[order].tolist()).values_list(
            "pk", "external_id", "prompt__content"
        )
    }
    contested = []
    for unit in order:
        external_id, content = details.get(int(pair_ids[unit]), ("", ""))
        preview = " ".join((content or "").split())
        if len(preview) > PROMPT_PREVIEW_CHARS:
            preview = preview[: PROMPT_PREVIEW_CHARS - 1].rstrip() + "…"
        contested.append(
            {
                "pair_id": int(pair_ids[unit]),
                "external_id": external_id,
                "prompt": preview,
                "entropy": _number(entropy[unit], 4),
                "votes": int(votes[unit]),
                "counts": {choice_name: int(counts[unit, code]) for code, choice_name in enumerate(CHOICES)},
            }
        )
    return contested


def _alpha_over_time(
    *,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    choice: NDArray[np.float64],
    created: NDArray[np.float64],
) -> dict[str, Any]:
    """Cumulative nominal alpha at the end of each day (week, or month for long projects), at most
    ``TIMELINE_MAX_POINTS`` points (fewer on big projects, see ``TIMELINE_JUDGMENT_BUDGET``) spread evenly
    over the periods, always including the last."""
    if not created.size:
        return {"granularity": "day", "points": []}
    order = np.argsort(created, kind="stable")
    stamps = (created[order] * 1e6).astype("datetime64[us]").astype("datetime64[D]")
    span = int((stamps[-1] - stamps[0]).astype(np.int64)) + 1
    if span <= 62:
        granularity, periods = "day", stamps
    elif span <= 2 * 365:
        # numpy counts weeks from a Thursday (1970-01-01); shifting by four days makes them start on Monday.
        granularity = "week"
        periods = ((stamps - np.timedelta64(4, "D")).astype("datetime64[W]") + np.timedelta64(4, "D")).astype(
            "datetime64[D]"
        )
    else:
        granularity, periods = "month", stamps.astype("datetime64[M]").astype("datetime64[D]")
    starts = np.unique(periods)
    # The prefixes average half the judgments, so that many points cost about the budget in all.
    most = int(
        np.clip(2 * TIMELINE_JUDGMENT_BUDGET // created.size, TIMELINE_MIN_POINTS, TIMELINE_MAX_POINTS)
    )
    if starts.size > most:
        starts = starts[np.unique(np.linspace(0, starts.size - 1, most).round().astype(np.int64))]
    ordered_units, ordered_coders, ordered_choice = units[order], coders[order], choice[order]
    points = []
    for start in starts:
        end = int(np.searchsorted(periods, start, side="right"))
        alpha = agreement.krippendorff_alpha(
            units=ordered_units[:end],
            coders=ordered_coders[:end],
            values=ordered_choice[:end],
            level="nominal",
        )
        points.append({"period": str(start), "alpha": _number(alpha), "judgments": end})
    return {"granularity": granularity, "points": points}


# ----------------------------------------------------------------------------------------------------------
# Flags and the training gate


def _thresholds(project: Project) -> dict[str, float]:
    return {
        "target_alpha": float(project.target_alpha),
        "min_gold_accuracy": float(project.min_gold_accuracy),
        "max_position_bias": float(project.max_position_bias),
    }


def quality_flags(
    data: dict[str, Any], *, thresholds: dict[str, float]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Threshold breaches in the figures, and the training gate they add up to.

    Pure: reads only ``data`` (as ``agreement_snapshot_compute`` builds it) and the thresholds. Returns the
    flags (each with ``kind``, ``message`` and, for an annotator, ``annotator``) and
    ``{"ok": bool, "reasons": [...]}``. Training should wait while any flag stands.
    """
    flags: list[dict[str, Any]] = []
    alpha = (data.get("alpha") or {}).get("nominal") or {}
    estimate = alpha.get("estimate")
    target = thresholds["target_alpha"]
    if estimate is None:
        flags.append(
            {
                "kind": "alpha_undefined",
                "message": "Agreement cannot be measured yet: no pair has two judgments that vary.",
            }
        )
    elif estimate < target:
        flags.append(
            {
                "kind": "alpha_below_target",
                "message": f"Krippendorff's alpha is {estimate:.3f}, below the target of {target:.3f}.",
            }
        )
    for row in data.get("annotators", []):
        for flag in annotator_flags(row, thresholds=thresholds):
            flags.append({**flag, "annotator": row["username"]})
    reasons = [flag["message"] for flag in flags]
    return flags, {"ok": not reasons, "reasons": reasons}


def annotator_flags(row: dict[str, Any], *, thresholds: dict[str, float]) -> list[dict[str, str]]:
    """The threshold breaches of one annotator's row of the table."""
    flags = []
    accuracy = row.get("gold_accuracy")
    minimum = thresholds["min_gold_accuracy"]
    if (
        accuracy is not None
        and row.get("gold_judgments", 0) >= GOLD_FLAG_MIN_JUDGMENTS
        and accuracy < minimum
    ):
        flags.append(
            {
                "kind": "gold_accuracy",
                "message": f"{row['username']}: gold accuracy {accuracy:.0%} on {row['gold_judgments']} gold "
                f"pairs, below {minimum:.0%}.",
            }
        )
    left = row.get("left_share")
    limit = thresholds["max_position_bias"]
    p_value = row.get("position_p_value")
    if (
        left is not None
        and p_value is not None
        and row.get("sided_judgments", 0) >= POSITION_FLAG_MIN_JUDGMENTS
        and p_value < POSITION_FLAG_P_VALUE
        and max(left, 1.0 - left) > limit
    ):
        side, share = ("left", left) if left >= 0.5 else ("right", 1.0 - left)
        flags.append(
            {
                "kind": "position_bias",
                "message": f"{row['username']}: chose the {side} response {share:.0%} of the time "
                f"({'p < 0.001' if p_value < 0.001 else f'p = {p_value:.2g}'}), above {limit:.0%}.",
            }
        )
    return flags


def agreement_figures(*, snapshot: AgreementSnapshot, project: Project) -> dict[str, Any]:
    """The snapshot's figures with flags (per annotator too) and the training gate against the project's
    current thresholds."""
    data = dict(snapshot.data)
    thresholds = _thresholds(project)
    data["thresholds"] = thresholds
    data["annotators"] = [
        {**row, "flags": [flag["kind"] for flag in annotator_flags(row, thresholds=thresholds)]}
        for row in data.get("annotators", [])
    ]
    data["flags"], data["training_gate"] = quality_flags(data, thresholds=thresholds)
    data["computed_at"] = snapshot.created_at
    data["judgment_count"] = snapshot.judgment_count
    data["last_judgment_at"] = snapshot.last_judgment_at
    data["seconds"] = snapshot.seconds
    return data


# ----------------------------------------------------------------------------------------------------------
# Snapshots


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
    from annotate.tasks import agreement_refresh_project

    latest = agreement_snapshot_latest(project=project)
    if latest is not None and (latest.judgment_count, latest.last_judgment_at) == project_judgment_state(
        project=project
    ):
        return False
    agreement_refresh_project.delay_on_commit(project.pk)
    return True


def agreement_training_gate(*, project: Project) -> dict[str, Any]:
    """Whether the project's data meets its quality thresholds, for the training trigger: brings the
    snapshot up to date first (a no-op when nothing changed). Call from worker code, not a request."""
    agreement_snapshot_refresh(project_id=project.pk)
    snapshot = agreement_snapshot_latest(project=project)
    if snapshot is None:
        return {"ok": False, "reasons": ["No agreement figures yet."]}
    return agreement_figures(snapshot=snapshot, project=project)["training_gate"]


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _number(value: float, digits: int = 6) -> float | None:
    """A finite float rounded for storage, or None (JSON has no NaN)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def _significant(value: float, digits: int = 3) -> float | None:
    """A finite float to ``digits`` significant digits (p-values can be tiny), or None."""
    value = float(value)
    return float(f"{value:.{digits}g}") if np.isfinite(value) else None


def _share(numerator: NDArray[np.float64], denominator: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.divide(numerator, denominator, out=np.full(denominator.shape, np.nan), where=denominator > 0)
