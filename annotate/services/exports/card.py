"""The dataset card: the README.md of an export (and of its Hugging Face folder)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from annotate.models import Project
from annotate.services.exports.policy import SPLITS, ExportPolicy


def _yaml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def dataset_card(
    *,
    project: Project,
    policy: ExportPolicy,
    counts: dict[str, Any],
    files: dict[str, dict[str, Any]],
    schema: pa.Schema,
) -> str:
    """The README.md of an export (and of its Hugging Face folder): what the data is, how it was made, and
    the sha256 of every file. No date or export number, so the same data and policy give the same card."""
    raw = policy.kind == "raw"
    lines = ["---"]
    if policy.license:
        lines.append(f"license: {_yaml_string(policy.license)}")
    lines += [
        f"pretty_name: {_yaml_string(project.name + (' judgments' if raw else ' preferences'))}",
        "tags:",
        "- palate",
        "- human-feedback",
        "- preference" if not raw else "- annotations",
        "- trl",
        "---",
        "",
        f"# {project.name}: {'every human judgment' if raw else 'preference pairs'}",
        "",
    ]
    if raw:
        lines.append(
            "One row per counted judgment: the prompt, both responses, the choice in A/B terms and the "
            "annotator as a pseudonym (stable within this export, unrelated across exports)."
        )
    else:
        shape = "conversational (lists of {role, content} messages)" if counts["conversational"] else "text"
        lines.append(
            f"Pairwise preferences in TRL's explicit-prompt {shape} format: `prompt`, `chosen`, `rejected`. "
            "They feed `trl.RewardTrainer` and `trl.DPOTrainer` as they are."
        )
        if policy.keeps_tie_rows:
            lines.append(
                "Rows with `tie` true are ties (`vote_share` 0.5): filter them out for pairwise losses."
            )
    lines += ["", "## Splits", "", "| split | rows | prompts |", "|---|---:|---:|"]
    for split in SPLITS:
        if split in counts["rows"]:
            lines.append(f"| {split} | {counts['rows'][split]:,} | {counts['prompts'].get(split, 0):,} |")
    test_share = 1.0 - policy.split
    lines += [
        "",
        f"Split by prompt (no prompt is in both), {policy.split:g} / {test_share:g} with seed {policy.seed}"
        + (", stratified by category." if policy.stratify else "."),
        "",
        "## Columns",
        "",
        "| column | type |",
        "|---|---|",
    ]
    lines += [f"| `{item.name}` | `{item.type}` |" for item in schema]
    lines += [
        "",
        "## How the labels were made",
        "",
        "```json",
        json.dumps(policy.as_dict(), indent=2),
        "```",
        "",
    ]
    excluded = counts["annotators_excluded"]
    excluded_note = (
        f"{counts['judgments_excluded']:,} judgments of excluded annotators left out "
        f"({excluded['flagged']} flagged, {excluded['gold_accuracy']} below the gold accuracy)"
        if excluded["flagged"] or excluded["gold_accuracy"]
        else "no annotator was excluded"
    )
    lines += [
        f"- Pairs considered: {counts['pairs_considered']:,}; exported: {counts['pairs_exported']:,}.",
        f"- Judgments counted: {counts['judgments_counted']:,} from {counts['annotators_counted']:,} "
        f"annotators; {excluded_note}.",
    ]
    if counts.get("labels"):
        lines.append(
            f"- Labels: {counts['labels']['preference']:,} preferences, {counts['labels']['tie']:,} ties."
        )
    settled = counts.get("adjudicated") or {}
    if settled.get("pairs"):
        pairs = f"{settled['pairs']:,} pair{'s' if settled['pairs'] != 1 else ''}"
        lines.append(
            f"- Settled by a lead: {pairs}; their labels replace the votes' ({settled['exported']:,} exported, "
            f"{settled['changed']:,} differing from the votes)."
            if settled["used"]
            else f"- Settled by a lead: {pairs}; this export labels them by their votes instead."
        )
    if counts["dropped"]:
        dropped = ", ".join(
            f"{reason.replace('_', ' ')}: {count:,}" for reason, count in counts["dropped"].items()
        )
        lines.append(f"- Pairs left out: {dropped}.")
    lines += ["", "## Agreement", ""]
    alpha = counts.get("alpha")
    lines.append(
        f"- Krippendorff's alpha (nominal) over the counted votes: {alpha:.3f}."
        if alpha is not None
        else "- Krippendorff's alpha: not defined (no pair has two varying votes)."
    )
    if counts.get("mean_agreement") is not None:
        lines.append(f"- Mean share of votes for the exported label: {counts['mean_agreement']:.3f}.")
    if counts["systems"]:
        lines += ["", "## Systems", "", "| system | chosen | rejected | tie |", "|---|---:|---:|---:|"]
        for name, tally in counts["systems"].items():
            lines.append(
                f"| {name} | {tally.get('chosen', 0):,} | {tally.get('rejected', 0):,} | {tally.get('tie', 0):,} |"
            )
    lines += [
        "",
        "## Licence",
        "",
        policy.license or "Not stated: ask the project's lead before sharing this data.",
        "",
    ]
    lines += ["## Files", "", "| file | bytes | rows | sha256 |", "|---|---:|---:|---|"]
    for name, record in files.items():
        if name.endswith("README.md"):
            continue
        rows = f"{record['rows']:,}" if record["rows"] is not None else ""
        lines.append(f"| `{name}` | {record['bytes']:,} | {rows} | `{record['sha256']}` |")
    return "\n".join(lines) + "\n"
