"""Flags and the training gate, derived from the stored figures and the project's *current* thresholds, so a
lead who changes a threshold sees the flags move at once, without waiting for new judgments."""

from __future__ import annotations

from typing import Any

from annotate.models import Adjudication, AgreementSnapshot, Project
from annotate.selectors import adjudication_summary

# An annotator is flagged only on enough evidence: a handful of gold pairs, or of sided choices with a
# binomial test that rejects "left half the time", says little.
GOLD_FLAG_MIN_JUDGMENTS = 5
POSITION_FLAG_MIN_JUDGMENTS = 20
POSITION_FLAG_P_VALUE = 0.05


def project_thresholds(project: Project) -> dict[str, float]:
    """The project's thresholds as they stand now."""
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


def export_training_gate(*, figures: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """The training gate of the judgments an export counted. An export that left annotators out (its policy's
    ``exclude_flagged`` or ``min_gold_accuracy``) is judged on its own agreement (``counts["alpha"]``, over the
    votes it counted) and the flags of the annotators it kept; any other export on the project's ``figures``
    (as ``agreement_figures`` returns them)."""
    excluded = set(counts.get("excluded_annotators") or ())
    if not excluded:
        return figures["training_gate"]
    kept = {
        "alpha": {"nominal": {"estimate": counts.get("alpha")}},
        "annotators": [row for row in figures.get("annotators", []) if row.get("id") not in excluded],
    }
    return quality_flags(kept, thresholds=figures["thresholds"])[1]


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
    current thresholds, and how many pairs leads settled (each contested pair with its settled label)."""
    data = dict(snapshot.data)
    thresholds = project_thresholds(project)
    data["thresholds"] = thresholds
    data["annotators"] = [
        {**row, "flags": [flag["kind"] for flag in annotator_flags(row, thresholds=thresholds)]}
        for row in data.get("annotators", [])
    ]
    data["flags"], data["training_gate"] = quality_flags(data, thresholds=thresholds)
    # Settling changes no judgment, so these are read now rather than stored with the snapshot.
    data["adjudication"] = adjudication_summary(project=project)
    contested = data.get("contested", [])
    settled = dict(
        Adjudication.objects.filter(pair_id__in=[row["pair_id"] for row in contested]).values_list(
            "pair_id", "label"
        )
    )
    data["contested"] = [{**row, "adjudicated": settled.get(row["pair_id"])} for row in contested]
    data["computed_at"] = snapshot.created_at
    data["judgment_count"] = snapshot.judgment_count
    data["last_judgment_at"] = snapshot.last_judgment_at
    data["seconds"] = snapshot.seconds
    return data
