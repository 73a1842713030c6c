"""Computing an agreement snapshot: the project's human judgments read as aligned arrays and fed to
``annotate/stats/agreement/``, where every statistic is computed. The unit of agreement is the pair."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from numpy.typing import NDArray

from annotate.models import Pair, Project
from annotate.services.agreement.annotators import annotator_table, attribute_groups
from annotate.services.agreement.coding import number, signed_strength
from annotate.services.agreement.figures import project_thresholds, quality_flags
from annotate.services.agreement.timeline import alpha_over_time
from annotate.services.judgment_arrays import CHOICES, judgment_arrays
from annotate.stats import agreement

BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0
KAPPA_MIN_SHARED = 10
CONTESTED_PAIRS = 25
PROMPT_PREVIEW_CHARS = 160


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
            "alpha": number(agreement.krippendorff_alpha(values=values, level="nominal", **long)),
            "judgments": int(np.count_nonzero(~np.isnan(values))),
        }
        for name, values in rows.criteria.items()
    ]
    data["percent_agreement"] = number(agreement.percent_agreement(values=choice, **long))
    data["fleiss"] = _fleiss(project=project, choice=choice, **long)
    data["kappa"] = _kappa(choice=choice, names=names, coder_count=coder_count, **long)
    data["annotators"] = annotator_table(
        rows=rows, names=names, annotator_ids=annotator_ids, coder_count=coder_count, **long
    )
    data["groups"] = attribute_groups(project=project, choice=choice, annotator_ids=annotator_ids, **long)
    data["contested"] = _contested_pairs(choice=choice, pair_ids=pair_ids, **long)
    data["over_time"] = alpha_over_time(choice=choice, created=rows.created, **long)
    data["thresholds"] = project_thresholds(project)
    data["flags"], data["training_gate"] = quality_flags(data, thresholds=data["thresholds"])
    data["timings"] = {
        "read_seconds": number(read_seconds, 3),
        "total_seconds": number(time.perf_counter() - started, 3),
    }
    return data


def _alpha_with_interval(
    *, units: NDArray[np.int64], coders: NDArray[np.int64], values: NDArray[np.float64], level: str
) -> dict[str, Any]:
    result = agreement.krippendorff_alpha_bootstrap(
        units=units, coders=coders, values=values, level=level, rounds=BOOTSTRAP_ROUNDS, seed=BOOTSTRAP_SEED
    )
    return {
        "estimate": number(result.estimate),
        "low": number(result.low),
        "high": number(result.high),
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
    return {"kappa": number(kappa), "pairs": int(table.counts.shape[0]), "raters": raters}


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
        "matrix": [[number(value, 4) for value in row] for row in kappa],
        "shared": shared.tolist(),
        "min_shared": KAPPA_MIN_SHARED,
    }


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
                "entropy": number(entropy[unit], 4),
                "votes": int(votes[unit]),
                "counts": {choice_name: int(counts[unit, code]) for code, choice_name in enumerate(CHOICES)},
            }
        )
    return contested
