"""Computing a leaderboard: the project's battles under the options rated by ``annotate.stats.ratings`` and
returned as a plain dict for the API, the page and the CSV download."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.utils import timezone
from numpy.typing import NDArray

from annotate.models import Project
from annotate.services.leaderboard.battles import (
    Battles,
    FloatArray,
    IntArray,
    project_battles,
    project_systems,
)
from annotate.services.leaderboard.board import Board, board_from_result, elo_board, elo_over_time
from annotate.services.leaderboard.filters import leaderboard_filters, options_check_against_data
from annotate.services.leaderboard.groups import annotator_groups, boards_by_group
from annotate.services.leaderboard.options import CONFIDENCE, LeaderboardOptions, leaderboard_options
from annotate.stats.ratings import (
    SEPARATION_L2,
    CrowdBTResult,
    Outcome,
    OutcomeTable,
    build_outcome_table,
    fit_crowd_bt,
    fit_ratings,
)
from palate.errors import ApplicationError

CSV_COLUMNS = (
    "rank",
    "system",
    "rating",
    "lower",
    "upper",
    "battles",
    "win_rate",
    "crowd_bt_rating",
    "crowd_bt_lower",
    "crowd_bt_upper",
    "crowd_bt_rank",
)


def leaderboard_compute(*, project: Project, public: bool = False, **options: Any) -> dict[str, Any]:
    """The project's leaderboard as a plain dict (the API's JSON, the page's context, the CSV's rows).

    ``method`` "bt" is Bradley-Terry maximum likelihood on the Elo scale (``ties`` "half" or "davidson";
    ``interval`` "sandwich" or "bootstrap" with ``rounds``); "elo" is online Elo, median and percentile
    interval over resampled orderings. ``criterion`` rates one criterion (``Judgment.criteria[name]``),
    ``group`` (``"locale=fr-FR"``) only the votes of annotators with that attribute, ``category`` only prompts
    of that category; ``anchor`` names the system pinned at 1000. Crowd-BT ratings (votes weighted by each
    annotator's estimated reliability) are always computed beside the plain ones; ``weighting="crowd_bt"``
    ranks by them. ``split_by`` (an attribute key such as "locale") adds one leaderboard per group; the
    options and their defaults are ``leaderboard_options``'s.
    ``public`` leaves out everything about annotators beyond aggregates (groups, group filters).
    Raises ApplicationError naming the field when an option is invalid.
    """
    return leaderboard_from_options(project=project, options=leaderboard_options(**options), public=public)


def leaderboard_from_options(
    *, project: Project, options: LeaderboardOptions, public: bool = False
) -> dict[str, Any]:
    """:func:`leaderboard_compute` with options already through ``leaderboard_options``."""
    if public and (options.group or options.split_by):
        raise ApplicationError(
            "the public leaderboard has no annotator groups",
            fields={"group" if options.group else "split_by": ["not available on the public leaderboard"]},
        )
    systems = project_systems(project=project)
    filters = leaderboard_filters(project=project, systems=systems, groups=not public)
    options_check_against_data(options, filters)
    groups = annotator_groups(project=project) if (options.group or options.split_by) else {}
    battles = _filtered_battles(project=project, options=options, systems=systems, groups=groups)

    result: dict[str, Any] = {
        "computed_at": timezone.now().isoformat(),
        "options": options.as_dict(),
        "both_bad_as_tie": project.both_bad_as_tie,
        "judgments": battles.count,
        "skipped": dict(battles.skipped),
        "rows": [],
        "warnings": [],
        "systems": [],
        "observed_win_rate": [],
        "predicted_win_rate": [],
        "battle_matrix": [],
        "over_time": {"judgments": [], "at": [], "series": []},
        "crowd_bt": None,
        "tie_parameter": None,
        "by_group": None,
        "filters": filters,
    }
    skip_notes = _skipped_warnings(
        {reason: count for reason, count in battles.skipped.items() if reason != "both_bad"},
        options.criterion,
    )
    if battles.count == 0:
        result["warnings"] = [
            *skip_notes,
            "No human judgments match these filters yet, so there is nothing to rate.",
        ]
        return result

    battles = _battled_systems_only(battles)
    names = battles.systems
    warnings = list(skip_notes)
    anchor_index = None
    if options.anchor is not None:
        if options.anchor in names:
            anchor_index = names.index(options.anchor)
        else:
            warnings.append(
                f"the anchor {options.anchor} has no battles under these filters; ratings are mean-centred"
            )

    both_bad_as_tie = project.both_bad_as_tie
    table: OutcomeTable = build_outcome_table(
        battles.model_a, battles.model_b, battles.outcome, len(names), both_bad_as_tie=both_bad_as_tie
    )
    if options.method == "elo":
        plain = elo_board(
            battles, len(names), anchor=anchor_index, rounds=options.rounds, both_bad_as_tie=both_bad_as_tie
        )
    else:
        plain = board_from_result(
            fit_ratings(
                table,
                systems=names,
                ties=options.ties,
                anchor=anchor_index,
                interval=options.interval,
                confidence=CONFIDENCE,
                bootstrap_rounds=options.rounds,
                seed=0,
            )
        )
    crowd_fit, annotators = _crowd_bt(battles, anchor=anchor_index, both_bad_as_tie=both_bad_as_tie)
    crowd = board_from_result(crowd_fit.ratings)
    primary = crowd if options.weighting == "crowd_bt" else plain
    warnings += primary.warnings
    warnings += [f"Crowd-BT: {message}" for message in crowd_fit.warnings if message not in primary.warnings]

    order = np.array(
        sorted(range(len(names)), key=lambda index: (-primary.rating[index], names[index])), dtype=np.int64
    )
    result.update(_table_figures(table, primary=primary, crowd=crowd, names=names, order=order))
    result["warnings"] = _unique(warnings)
    result["tie_parameter"] = (
        None if primary.tie_parameter is None else round(float(primary.tie_parameter), 4)
    )
    result["crowd_bt"] = {
        "annotators": int(annotators),
        "converged": bool(crowd_fit.converged),
        "mean_reliability": round(float(np.mean(crowd_fit.reliability)), 4) if annotators else None,
    }
    result["over_time"] = elo_over_time(battles, names, order, anchor_index, both_bad_as_tie)
    if options.split_by is not None:
        result["by_group"] = boards_by_group(battles, names, options.split_by, groups, anchor_index, project)
    return result


def _filtered_battles(
    *, project: Project, options: LeaderboardOptions, systems: list[str], groups: dict[str, set[int]]
) -> Battles:
    """The battles the options select; "both bad" votes are left out (and counted) unless they are ties."""
    battles = project_battles(
        project=project, criterion=options.criterion, category=options.category, systems=systems
    )
    if options.group is not None:
        members = np.array(sorted(groups.get(options.group, set())), dtype=np.int64)
        battles = battles.subset(np.isin(battles.annotator, members))
    if not project.both_bad_as_tie:
        dropped = int(np.sum(battles.outcome == Outcome.BOTH_BAD))
        if dropped:
            battles = battles.subset(battles.outcome != Outcome.BOTH_BAD)
            battles.skipped["both_bad"] = dropped
    return battles


def _battled_systems_only(battles: Battles) -> Battles:
    """The battles renumbered over the systems that battled under these filters, the only ones rated."""
    present = np.unique(np.concatenate([battles.model_a, battles.model_b]))
    position = np.full(len(battles.systems), -1, dtype=np.int64)
    position[present] = np.arange(present.size)
    return Battles(
        systems=[battles.systems[index] for index in present.tolist()],
        judgment_id=battles.judgment_id,
        model_a=position[battles.model_a],
        model_b=position[battles.model_b],
        outcome=battles.outcome,
        annotator=battles.annotator,
        skipped=battles.skipped,
    )


def _crowd_bt(battles: Battles, *, anchor: int | None, both_bad_as_tie: bool) -> tuple[CrowdBTResult, int]:
    """Crowd-BT ratings (votes weighted by each annotator's estimated reliability), and how many annotators."""
    annotators, annotator_index = np.unique(battles.annotator, return_inverse=True)
    fit = fit_crowd_bt(
        battles.model_a,
        battles.model_b,
        battles.outcome,
        annotator_index,
        len(battles.systems),
        n_annotators=annotators.size,
        systems=battles.systems,
        both_bad_as_tie=both_bad_as_tie,
        anchor=anchor,
        confidence=CONFIDENCE,
        # A near-perfect annotator can explain every vote, so the Crowd-BT likelihood may run off to infinity
        # where plain Bradley-Terry does not: the small separation prior is always on (it barely moves
        # well-identified ratings).
        l2=SEPARATION_L2,
        tolerance=1e-6,
    )
    return fit, int(annotators.size)


def _table_figures(
    table: OutcomeTable, *, primary: Board, crowd: Board, names: list[str], order: IntArray
) -> dict[str, Any]:
    """The rows, the systems in rank order and the matrices between them."""
    battles_per_system = np.rint(table.battles.sum(axis=1)).astype(np.int64)
    score = table.win_counts + 0.5 * table.tie_counts
    played = table.battles
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(played.sum(axis=1) > 0, score.sum(axis=1) / played.sum(axis=1), 0.0)
        observed = np.where(played > 0, score / np.where(played > 0, played, 1.0), 0.0)
    rows = [
        {
            "rank": int(primary.rank[index]),
            "system": names[index],
            "rating": round(float(primary.rating[index]), 2),
            "lower": round(float(primary.lower[index]), 2),
            "upper": round(float(primary.upper[index]), 2),
            "battles": int(battles_per_system[index]),
            "win_rate": round(float(win_rate[index]), 4),
            "crowd_bt_rating": round(float(crowd.rating[index]), 2),
            "crowd_bt_lower": round(float(crowd.lower[index]), 2),
            "crowd_bt_upper": round(float(crowd.upper[index]), 2),
            "crowd_bt_rank": int(crowd.rank[index]),
        }
        for index in order.tolist()
    ]
    return {
        "rows": rows,
        "systems": [names[index] for index in order.tolist()],
        "observed_win_rate": _matrix(observed, order, 4, present=played > 0),
        "predicted_win_rate": _matrix(primary.predicted, order, 4),
        "battle_matrix": [
            [int(value) for value in row] for row in np.rint(played[np.ix_(order, order)]).tolist()
        ],
    }


def _matrix(
    values: FloatArray, order: IntArray, digits: int, present: NDArray[np.bool_] | None = None
) -> list:
    picked = values[np.ix_(order, order)]
    mask = None if present is None else present[np.ix_(order, order)]
    return [
        [
            None
            if (mask is not None and not mask[row, column])
            else round(float(picked[row, column]), digits)
            for column in range(order.size)
        ]
        for row in range(order.size)
    ]


def _unique(messages: list[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _skipped_warnings(skipped: dict[str, int], criterion: str | None) -> list[str]:
    text = {
        "no_system": "{count:,} judgment{s} left out: a response has no system name",
        "same_system": "{count:,} judgment{s} left out: both responses come from the same system",
        "no_vote": "{count:,} judgment{s} left out: no valid choice for the criterion '"
        + str(criterion)
        + "'",
    }
    return [
        text[reason].format(count=count, s="" if count == 1 else "s")
        for reason, count in skipped.items()
        if count
    ]
