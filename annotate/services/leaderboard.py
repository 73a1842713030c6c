"""Leaderboards: the project's human judgments read in bulk into integer arrays, rated by
``annotate.stats.ratings``, and returned as plain dicts for the API, the page and the CSV download.

Judgments are read by ``palate.db.read_arrays`` (system names and votes coded as indices on the way), so a
million judgments never become a million Python objects.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone
from numpy.typing import NDArray

from annotate.models import Judgment, Membership, Project, Prompt
from annotate.services.judgment_arrays import CHOICES
from annotate.stats.ratings import (
    DEFAULT_ANCHOR_RATING,
    SEPARATION_L2,
    Outcome,
    OutcomeTable,
    RatingResult,
    build_outcome_table,
    fit_crowd_bt,
    fit_ratings,
    online_elo,
    ratings_by_group,
)
from palate.db import read_arrays
from palate.errors import ApplicationError

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

METHODS = ("bt", "elo")
INTERVALS = ("sandwich", "bootstrap")
TIE_MODELS = ("half", "davidson")
WEIGHTINGS = ("none", "crowd_bt")
CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_ROUNDS = 1000
DEFAULT_ELO_ROUNDS = 100
MAX_ROUNDS = 10_000
# Chatbot Arena's K: small, because systems do not change while they are judged (ratings.online_elo).
ELO_K_FACTOR = 4.0
# Online Elo is a sequential Python loop (about half a second per million battles); its bootstrap runs at
# most this many battles in all, so a large project gets fewer rounds (and a warning) rather than a timeout.
ELO_BOOTSTRAP_BATTLE_BUDGET = 5_000_000
OVER_TIME_POINTS = 200
CACHE_SECONDS = 60
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

# ------------------------------------------------------------------------------------------------------------
# Reading judgments into arrays
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Battles:
    """Human judgments as battles between systems, in the order they were made (judgment id).

    ``systems`` lists every named system among the project's responses (judged or not); the arrays hold
    indices into it. Judgments that cannot count are left out and counted in ``skipped`` by reason.
    """

    systems: list[str]
    judgment_id: IntArray
    model_a: IntArray
    model_b: IntArray
    outcome: IntArray
    annotator: IntArray
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.judgment_id.size)

    def subset(self, keep: NDArray[np.bool_]) -> Battles:
        return Battles(
            systems=self.systems,
            judgment_id=self.judgment_id[keep],
            model_a=self.model_a[keep],
            model_b=self.model_b[keep],
            outcome=self.outcome[keep],
            annotator=self.annotator[keep],
            skipped=dict(self.skipped),
        )


def project_systems(*, project: Project) -> list[str]:
    """Every named system among the project's responses, sorted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT r.system FROM annotate_response r JOIN annotate_prompt q ON q.id = r.prompt_id "
            "WHERE q.project_id = %s AND r.system <> ''",
            [project.pk],
        )
        return sorted(name for (name,) in cursor.fetchall())


def _human_judgments(*, project: Project, criterion: str | None, category: str | None) -> QuerySet:
    """The project's human judgments (of prompts in ``category``, when given), each with its ``vote``: the
    overall choice, or the choice on ``criterion``."""
    judgments = Judgment.objects.filter(pair__project=project, origin=Judgment.Origin.HUMAN)
    if category is not None:
        judgments = judgments.filter(pair__prompt__category=category)
    vote = F("choice") if criterion is None else KeyTextTransform(criterion, "criteria")
    return judgments.annotate(vote=vote).order_by()


# Counted by the database, so that a few rows leave it; systems are numbered by their position in
# %(systems)s (-1 for a name not in it). Joining the names like a table lets PostgreSQL look the pairs' systems
# up once per pair rather than once per judgment.
OUTCOME_COUNTS = """
    SELECT COALESCE(sa.position - 1, -1), COALESCE(sb.position - 1, -1), j.choice, COUNT(*), MAX(j.id)
    FROM annotate_judgment j
    JOIN annotate_pair pr ON pr.id = j.pair_id
    JOIN annotate_response ra ON ra.id = pr.response_a_id
    JOIN annotate_response rb ON rb.id = pr.response_b_id
    LEFT JOIN unnest(CAST(%(systems)s AS TEXT[])) WITH ORDINALITY AS sa(name, position) ON sa.name = ra.system
    LEFT JOIN unnest(CAST(%(systems)s AS TEXT[])) WITH ORDINALITY AS sb(name, position) ON sb.name = rb.system
    WHERE pr.project_id = %(project)s AND j.origin = 'human'
    GROUP BY 1, 2, 3
"""


def _usable(
    model_a: IntArray, model_b: IntArray, outcome: IntArray
) -> tuple[NDArray[np.bool_], dict[str, int]]:
    no_system = (model_a < 0) | (model_b < 0)
    same_system = ~no_system & (model_a == model_b)
    no_vote = ~no_system & ~same_system & (outcome < 0)
    masks = (("no_system", no_system), ("same_system", same_system), ("no_vote", no_vote))
    return ~(no_system | same_system | no_vote), dict(masks)


def project_battles(
    *,
    project: Project,
    criterion: str | None = None,
    category: str | None = None,
    systems: list[str] | None = None,
) -> Battles:
    """The project's human judgments as battles, optionally on one criterion (``Judgment.criteria[name]``) and
    for prompts of one category. Imported labels are not votes and are never read."""
    systems = project_systems(project=project) if systems is None else systems
    names = tuple(systems)
    judgments = _human_judgments(project=project, criterion=criterion, category=category).values_list(
        "id", "pair__response_a__system", "pair__response_b__system", "vote", "annotator_id"
    )
    columns = read_arrays(
        judgments,
        {"judgment_id": "int", "model_a": names, "model_b": names, "outcome": CHOICES, "annotator": "int"},
    )
    ids = columns["judgment_id"]
    if ids.size > 1 and np.any(ids[1:] < ids[:-1]):
        order = np.argsort(ids, kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
    judgment_id, model_a, model_b, outcome, annotator = columns.values()
    keep, reasons = _usable(model_a, model_b, outcome)
    return Battles(
        systems=systems,
        judgment_id=np.ascontiguousarray(judgment_id[keep]),
        model_a=np.ascontiguousarray(model_a[keep]),
        model_b=np.ascontiguousarray(model_b[keep]),
        outcome=np.ascontiguousarray(outcome[keep]),
        annotator=np.ascontiguousarray(annotator[keep]),
        skipped={reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()},
    )


def project_outcome_table(
    *, project: Project, systems: list[str], both_bad_as_tie: bool = True
) -> tuple[OutcomeTable, int]:
    """The outcome table of the project's human judgments (overall choice), counted by the database so that
    only a few hundred rows leave it, and the id of the latest judgment counted (0 when none)."""
    rows = read_arrays(
        OUTCOME_COUNTS,
        {"model_a": "int", "model_b": "int", "outcome": CHOICES, "count": "int", "last": "int"},
        {"project": project.pk, "systems": list(systems)},
    )
    last_judgment = int(rows["last"].max()) if rows["last"].size else 0
    model_a, model_b, outcome, count = rows["model_a"], rows["model_b"], rows["outcome"], rows["count"]
    keep, _ = _usable(model_a, model_b, outcome)
    table = build_outcome_table(
        np.repeat(model_a[keep], count[keep]),
        np.repeat(model_b[keep], count[keep]),
        np.repeat(outcome[keep], count[keep]),
        max(len(systems), 1),
        both_bad_as_tie=both_bad_as_tie,
    )
    return table, last_judgment


# ------------------------------------------------------------------------------------------------------------
# Filters: criteria, annotator groups, categories
# ------------------------------------------------------------------------------------------------------------


def annotator_groups(*, project: Project) -> dict[str, set[int]]:
    """``"key=value"`` -> the ids of members whose attributes say so (e.g. ``"locale=fr-FR"``)."""
    groups: dict[str, set[int]] = {}
    for user_id, attributes in Membership.objects.filter(project=project).values_list(
        "user_id", "attributes"
    ):
        if isinstance(attributes, dict):
            for key, value in attributes.items():
                groups.setdefault(f"{key}={value}", set()).add(user_id)
    return groups


def leaderboard_filters(*, project: Project, systems: list[str] | None = None, groups: bool = True) -> dict:
    """What the leaderboard can be narrowed to. ``groups=False`` (the public page) leaves annotator groups out."""
    categories = sorted(
        Prompt.objects.filter(project=project)
        .exclude(category="")
        .order_by()
        .values_list("category", flat=True)
        .distinct()
    )
    group_names = sorted(annotator_groups(project=project)) if groups else []
    return {
        "criteria": [str(name) for name in project.criteria],
        "groups": group_names,
        "group_keys": sorted({name.partition("=")[0] for name in group_names}),
        "categories": categories,
        "systems": project_systems(project=project) if systems is None else systems,
    }


# ------------------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardOptions:
    method: str = "bt"
    criterion: str | None = None
    group: str | None = None
    category: str | None = None
    interval: str = "sandwich"
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS
    ties: str = "half"
    anchor: str | None = None
    weighting: str = "none"
    split_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "criterion": self.criterion,
            "group": self.group,
            "category": self.category,
            "interval": self.interval,
            "rounds": self.rounds,
            "ties": self.ties,
            "anchor": self.anchor,
            "weighting": self.weighting,
            "split_by": self.split_by,
            "confidence": CONFIDENCE,
        }


def _blank_to_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def leaderboard_options(
    *,
    method: str = "bt",
    criterion: str | None = None,
    group: str | None = None,
    category: str | None = None,
    interval: str | None = None,
    rounds: int | None = None,
    ties: str = "half",
    anchor: str | None = None,
    weighting: str = "none",
    split_by: str | None = None,
) -> LeaderboardOptions:
    """Checks the options that do not depend on the data. Raises ApplicationError naming each bad field.

    ``interval`` defaults to the sandwich for Bradley-Terry and to the bootstrap for Elo (which has no
    sandwich); ``rounds`` to 1,000 bootstrap rounds for Bradley-Terry and 100 orderings for Elo.
    """
    problems: dict[str, list[str]] = {}
    method = method or "bt"
    ties = ties or "half"
    weighting = weighting or "none"
    interval = _blank_to_none(interval)
    for name, value, allowed in (
        ("method", method, METHODS),
        ("ties", ties, TIE_MODELS),
        ("weighting", weighting, WEIGHTINGS),
        ("interval", interval or INTERVALS[0], INTERVALS),
    ):
        if value not in allowed:
            problems[name] = [f"must be one of {', '.join(allowed)}, got {value!r}"]
    if interval is None:
        interval = "bootstrap" if method == "elo" else "sandwich"
    if method == "elo" and interval == "sandwich":
        problems["interval"] = ["Elo ratings have bootstrap intervals only: use interval=bootstrap"]
    if method == "elo" and ties == "davidson":
        problems["ties"] = ["the Davidson tie model applies to Bradley-Terry only (method=bt)"]
    if weighting == "crowd_bt" and (method != "bt" or interval != "sandwich" or ties != "half"):
        problems["weighting"] = ["crowd_bt weighting needs method=bt, interval=sandwich and ties=half"]
    if rounds is None:
        rounds = DEFAULT_ELO_ROUNDS if method == "elo" else DEFAULT_BOOTSTRAP_ROUNDS
    elif not 1 <= rounds <= MAX_ROUNDS:
        problems["rounds"] = [f"must lie between 1 and {MAX_ROUNDS:,}"]
    group = _blank_to_none(group)
    if group is not None and "=" not in group:
        problems["group"] = ["must look like key=value, e.g. locale=fr-FR"]
    if problems:
        first_field, messages = next(iter(problems.items()))
        raise ApplicationError(f"{first_field}: {messages[0]}", fields=problems)
    return LeaderboardOptions(
        method=method,
        criterion=_blank_to_none(criterion),
        group=group,
        category=_blank_to_none(category),
        interval=interval,
        rounds=rounds,
        ties=ties,
        anchor=_blank_to_none(anchor),
        weighting=weighting,
        split_by=_blank_to_none(split_by),
    )


def _check_against_data(options: LeaderboardOptions, filters: dict) -> None:
    problems: dict[str, list[str]] = {}
    checks = (
        ("criterion", options.criterion, filters["criteria"], "criteria"),
        ("group", options.group, filters["groups"], "annotator groups"),
        ("category", options.category, filters["categories"], "categories"),
        ("anchor", options.anchor, filters["systems"], "systems"),
        ("split_by", options.split_by, filters["group_keys"], "annotator attributes"),
    )
    for name, value, known, what in checks:
        if value is not None and value not in known:
            listed = ", ".join(known[:20]) if known else "none"
            problems[name] = [f"unknown {name} {value!r}; this project's {what}: {listed}"]
    if problems:
        raise ApplicationError(next(iter(problems.values()))[0], fields=problems)


# ------------------------------------------------------------------------------------------------------------
# Computing a leaderboard
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Board:
    """One set of ratings on the Elo scale, indexed like the fitted systems."""

    rating: FloatArray
    lower: FloatArray
    upper: FloatArray
    rank: IntArray
    predicted: FloatArray
    warnings: list[str]
    tie_parameter: float | None = None


def _board_from_result(result: RatingResult) -> _Board:
    return _Board(
        rating=result.rating,
        lower=result.lower,
        upper=result.upper,
        rank=result.rank,
        predicted=result.win_probability,
        warnings=list(result.warnings),
        tie_parameter=result.tie_parameter,
    )


def _rank(lower: FloatArray, upper: FloatArray) -> IntArray:
    """1 + the number of systems whose lower bound is above this one's upper bound (as ratings.fit_ratings)."""
    return (1 + np.sum(lower[None, :] > upper[:, None], axis=1)).astype(np.int64)


def _elo_board(
    battles: Battles, n_systems: int, *, anchor: int | None, rounds: int, both_bad_as_tie: bool
) -> _Board:
    """Online Elo, order-free: the median and percentile interval of ``rounds`` runs, each over the battles
    resampled with replacement in a random order (Chatbot Arena's original method)."""
    count = battles.count
    rounds_run = min(rounds, max(1, ELO_BOOTSTRAP_BATTLE_BUDGET // max(count, 1)))
    warnings = []
    if rounds_run < rounds:
        warnings.append(
            f"Elo intervals use {rounds_run} resampled orderings instead of {rounds}: online Elo over "
            f"{count:,} battles is sequential, so larger requests would take too long"
        )
    generator = np.random.default_rng(0)
    samples = np.empty((rounds_run, n_systems))
    for round_index in range(rounds_run):
        chosen = generator.integers(0, count, count)
        samples[round_index] = online_elo(
            battles.model_a[chosen],
            battles.model_b[chosen],
            battles.outcome[chosen],
            n_systems,
            k_factor=ELO_K_FACTOR,
            both_bad_as_tie=both_bad_as_tie,
        ).ratings
    if anchor is not None:
        samples = samples - samples[:, anchor : anchor + 1] + DEFAULT_ANCHOR_RATING
    tail = 100 * (1 - CONFIDENCE) / 2
    rating = np.median(samples, axis=0)
    lower, upper = np.percentile(samples, [tail, 100 - tail], axis=0)
    predicted = 1.0 / (1.0 + 10.0 ** ((rating[None, :] - rating[:, None]) / 400.0))
    np.fill_diagonal(predicted, 0.5)
    return _Board(rating, lower, upper, _rank(lower, upper), predicted, warnings)


def _over_time(
    battles: Battles, names: list[str], order: IntArray, anchor: int | None, both_bad: bool
) -> dict:
    """Online Elo battle by battle, sampled at up to ``OVER_TIME_POINTS`` evenly spaced moments; each
    system's line carries its last rating forward between its battles."""
    trajectory = online_elo(
        battles.model_a,
        battles.model_b,
        battles.outcome,
        len(names),
        k_factor=ELO_K_FACTOR,
        both_bad_as_tie=both_bad,
    )
    processed = trajectory.battle_index.size
    if processed == 0:
        return {"judgments": [], "at": [], "series": []}
    grid = np.unique(np.linspace(0, processed - 1, min(OVER_TIME_POINTS, processed)).round().astype(np.int64))
    lines = np.empty((len(names), grid.size))
    for system in range(len(names)):
        steps, ratings = trajectory.history(system)
        last = np.searchsorted(steps, grid, side="right") - 1
        lines[system] = np.where(last >= 0, ratings[np.maximum(last, 0)], trajectory.initial_rating)
    if anchor is not None:
        lines = lines - lines[anchor] + DEFAULT_ANCHOR_RATING
    sampled_ids = battles.judgment_id[trajectory.battle_index[grid]]
    created = dict(Judgment.objects.filter(pk__in=sampled_ids.tolist()).values_list("pk", "created_at"))
    return {
        "judgments": (grid + 1).tolist(),
        "at": [
            created[judgment].isoformat() if judgment in created else None
            for judgment in sampled_ids.tolist()
        ],
        "series": [
            {"system": names[system], "rating": _rounded(lines[system], 2)} for system in order.tolist()
        ],
    }


def _rounded(values: FloatArray, digits: int) -> list[float]:
    return [round(float(value), digits) for value in values]


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


def _by_group(
    battles: Battles,
    names: list[str],
    key: str,
    groups: dict[str, set[int]],
    anchor: int | None,
    project: Project,
) -> dict:
    """One Bradley-Terry leaderboard per value of the annotator attribute ``key``, fitted independently, so
    leaderboards side by side show whose preferences a ranking reflects."""
    label_of_annotator: dict[int, str] = {}
    for name, members in groups.items():
        attribute, _, value = name.partition("=")
        if attribute == key:
            for user_id in members:
                label_of_annotator[user_id] = value
    labels = np.array(
        [label_of_annotator.get(int(user), "") for user in battles.annotator.tolist()], dtype=object
    )
    labelled = labels != ""
    result: dict[str, Any] = {"key": key, "groups": []}
    if not labelled.any():
        return result
    fits = ratings_by_group(
        labels[labelled].astype(str),
        battles.model_a[labelled],
        battles.model_b[labelled],
        battles.outcome[labelled],
        len(names),
        systems=names,
        both_bad_as_tie=project.both_bad_as_tie,
        anchor=anchor,
        interval="sandwich",
    )
    for value, fit in fits.items():
        in_group = labelled & (labels == value)
        result["groups"].append(
            {
                "group": f"{key}={value}",
                "judgments": int(in_group.sum()),
                "annotators": len(set(battles.annotator[in_group].tolist())),
                "ratings": {
                    str(system): {
                        "rating": round(float(fit.rating[index]), 2),
                        "lower": round(float(fit.lower[index]), 2),
                        "upper": round(float(fit.upper[index]), 2),
                        "rank": int(fit.rank[index]),
                        "battles": int(fit.battles[index]),
                    }
                    for index, system in enumerate(fit.systems)
                },
                "warnings": list(fit.warnings),
            }
        )
    return result


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


def leaderboard_compute(
    *,
    project: Project,
    method: str = "bt",
    criterion: str | None = None,
    group: str | None = None,
    category: str | None = None,
    interval: str | None = None,
    rounds: int | None = None,
    ties: str = "half",
    anchor: str | None = None,
    weighting: str = "none",
    split_by: str | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """The project's leaderboard as a plain dict (the API's JSON, the page's context, the CSV's rows).

    ``method`` "bt" is Bradley-Terry maximum likelihood on the Elo scale (``ties`` "half" or "davidson";
    ``interval`` "sandwich" or "bootstrap" with ``rounds``); "elo" is online Elo, median and percentile
    interval over resampled orderings. ``criterion`` rates one criterion (``Judgment.criteria[name]``),
    ``group`` (``"locale=fr-FR"``) only the votes of annotators with that attribute, ``category`` only prompts
    of that category; ``anchor`` names the system pinned at 1000. Crowd-BT ratings (votes weighted by each
    annotator's estimated reliability) are always computed beside the plain ones; ``weighting="crowd_bt"``
    ranks by them. ``split_by`` (an attribute key such as "locale") adds one leaderboard per group.
    ``public`` leaves out everything about annotators beyond aggregates (groups, group filters).
    Raises ApplicationError naming the field when an option is invalid.
    """
    options = leaderboard_options(
        method=method,
        criterion=criterion,
        group=group,
        category=category,
        interval=interval,
        rounds=rounds,
        ties=ties,
        anchor=anchor,
        weighting=weighting,
        split_by=split_by,
    )
    if public and (options.group or options.split_by):
        raise ApplicationError(
            "the public leaderboard has no annotator groups",
            fields={"group" if options.group else "split_by": ["not available on the public leaderboard"]},
        )
    systems = project_systems(project=project)
    filters = leaderboard_filters(project=project, systems=systems, groups=not public)
    _check_against_data(options, filters)
    groups = annotator_groups(project=project) if (options.group or options.split_by) else {}

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

    # Rate only the systems that battled under these filters.
    present = np.unique(np.concatenate([battles.model_a, battles.model_b]))
    position = np.full(len(systems), -1, dtype=np.int64)
    position[present] = np.arange(present.size)
    names = [systems[index] for index in present.tolist()]
    battles = Battles(
        systems=names,
        judgment_id=battles.judgment_id,
        model_a=position[battles.model_a],
        model_b=position[battles.model_b],
        outcome=battles.outcome,
        annotator=battles.annotator,
        skipped=battles.skipped,
    )
    warnings = list(skip_notes)
    anchor_index = None
    if options.anchor is not None:
        if options.anchor in names:
            anchor_index = names.index(options.anchor)
        else:
            warnings.append(
                f"the anchor {options.anchor} has no battles under these filters; ratings are mean-centred"
            )

    n_systems = len(names)
    table: OutcomeTable = build_outcome_table(
        battles.model_a, battles.model_b, battles.outcome, n_systems, both_bad_as_tie=project.both_bad_as_tie
    )
    if options.method == "elo":
        plain = _elo_board(
            battles,
            n_systems,
            anchor=anchor_index,
            rounds=options.rounds,
            both_bad_as_tie=project.both_bad_as_tie,
        )
    else:
        plain = _board_from_result(
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

    annotators, annotator_index = np.unique(battles.annotator, return_inverse=True)
    crowd_fit = fit_crowd_bt(
        battles.model_a,
        battles.model_b,
        battles.outcome,
        annotator_index,
        n_systems,
        n_annotators=annotators.size,
        systems=names,
        both_bad_as_tie=project.both_bad_as_tie,
        anchor=anchor_index,
        confidence=CONFIDENCE,
        # A near-perfect annotator can explain every vote, so the Crowd-BT likelihood may run off to infinity
        # where plain Bradley-Terry does not: the small separation prior is always on (it barely moves
        # well-identified ratings).
        l2=SEPARATION_L2,
        tolerance=1e-6,
    )
    crowd = _board_from_result(crowd_fit.ratings)
    primary = crowd if options.weighting == "crowd_bt" else plain
    warnings += primary.warnings
    warnings += [f"Crowd-BT: {message}" for message in crowd_fit.warnings if message not in primary.warnings]

    order = np.array(
        sorted(range(n_systems), key=lambda index: (-primary.rating[index], names[index])), dtype=np.int64
    )
    battles_per_system = np.rint(table.battles.sum(axis=1)).astype(np.int64)
    score = table.win_counts + 0.5 * table.tie_counts
    played = table.battles
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(played.sum(axis=1) > 0, score.sum(axis=1) / played.sum(axis=1), 0.0)
        observed = np.where(played > 0, score / np.where(played > 0, played, 1.0), 0.0)
    result["rows"] = [
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
    result["warnings"] = _unique(warnings)
    result["systems"] = [names[index] for index in order.tolist()]
    result["observed_win_rate"] = _matrix(observed, order, 4, present=played > 0)
    result["predicted_win_rate"] = _matrix(primary.predicted, order, 4)
    result["battle_matrix"] = [
        [int(value) for value in row] for row in np.rint(played[np.ix_(order, order)]).tolist()
    ]
    result["tie_parameter"] = (
        None if primary.tie_parameter is None else round(float(primary.tie_parameter), 4)
    )
    result["crowd_bt"] = {
        "annotators": int(annotators.size),
        "converged": bool(crowd_fit.converged),
        "mean_reliability": round(float(np.mean(crowd_fit.reliability)), 4) if annotators.size else None,
    }
    result["over_time"] = _over_time(battles, names, order, anchor_index, project.both_bad_as_tie)
    if options.split_by is not None:
        result["by_group"] = _by_group(battles, names, options.split_by, groups, anchor_index, project)
    return result


def leaderboard_get(*, project: Project, public: bool = False, **options: Any) -> dict[str, Any]:
    """:func:`leaderboard_compute`, cached for ``CACHE_SECONDS``: a million judgments take seconds to rate, and
    a leaderboard a minute old is still the leaderboard. A change to the project's settings (such as
    ``both_bad_as_tie``) starts afresh."""
    checked = leaderboard_options(**options)
    fingerprint = json.dumps(
        {"options": checked.as_dict(), "public": public, "updated": project.updated_at.isoformat()},
        sort_keys=True,
    )
    key = f"palate:leaderboard:{project.pk}:{hashlib.sha1(fingerprint.encode()).hexdigest()}"
    cached = cache.get(key)
    if cached is None:
        cached = leaderboard_compute(project=project, public=public, **options)
        cache.set(key, cached, timeout=CACHE_SECONDS)
    return cached


def leaderboard_public_link_set(*, project: Project, enabled: bool) -> Project:
    """Turns the public read-only link on (a fresh unguessable token, so re-enabling revokes the old link) or
    off."""
    project.leaderboard_public_token = secrets.token_urlsafe(24) if enabled else ""
    project.save(update_fields=["leaderboard_public_token", "updated_at"])
    return project


def project_for_public_leaderboard(*, token: str) -> Project | None:
    if not token:
        return None
    return Project.objects.filter(leaderboard_public_token=token).exclude(leaderboard_public_token="").first()
