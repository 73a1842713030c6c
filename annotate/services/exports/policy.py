"""What an export contains: its policy (validated against the project, every default filled in) and its
formats (from the registry in ``formats``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from annotate.models import Project, Prompt
from annotate.services.exports.formats import export_format_names
from palate.errors import ApplicationError

SPLITS = ("train", "test")
OPTIONAL_COLUMNS = (
    "margin",
    "score_chosen",
    "score_rejected",
    "vote_share",
    "n_votes",
    "agreement",
    "system_chosen",
    "system_rejected",
    "category",
    "ids",
)
DEFAULT_COLUMNS = ("vote_share", "n_votes", "agreement", "system_chosen", "system_rejected", "ids")
DROP_OR_KEEP = ("drop", "keep")


class ExportFailed(ApplicationError):
    code = "export_failed"


@dataclass(frozen=True)
class ExportPolicy:
    """What an export contains. Saved, with every default filled in, on the Export row and in the card."""

    kind: str = field(
        default="preference",
        metadata={"choices": ("preference", "raw"), "help": "one row per labelled pair, or one per judgment"},
    )
    # Which judgments count.
    exclude_flagged: bool = field(
        default=False, metadata={"help": "leave out annotators flagged on the quality dashboard"}
    )
    exclude_gold: bool = field(default=True, metadata={"help": "leave gold pairs out of the dataset"})
    min_gold_accuracy: float | None = field(
        default=None, metadata={"help": "leave out annotators below this accuracy on gold pairs"}
    )
    min_gold_judgments: int = field(
        default=1, metadata={"help": "gold votes an annotator needs before min_gold_accuracy applies"}
    )
    include_imported: bool = field(
        default=False, metadata={"help": "count labels imported with the data as one vote each"}
    )
    # How votes become a label.
    label: str = field(
        default="majority",
        metadata={
            "choices": ("majority", "unanimous", "weighted"),
            "help": "weighted: votes weigh the annotator's smoothed gold accuracy",
        },
    )
    tied_vote: str = field(
        default="drop",
        metadata={
            "choices": ("drop", "tie"),
            "help": "a vote split evenly at the top: drop the pair, or make it a tie row",
        },
    )
    min_votes: int = field(default=1, metadata={"help": "pairs with fewer counted votes are dropped"})
    min_agreement: float = field(
        default=0.0, metadata={"help": "pairs whose winning share of the votes is lower are dropped"}
    )
    ties: str = field(
        default="drop",
        metadata={
            "choices": DROP_OR_KEEP,
            "help": "a pair labelled tie: drop, or keep as a tie row (vote_share 0.5)",
        },
    )
    both_bad: str = field(
        default="drop",
        metadata={
            "choices": DROP_OR_KEEP,
            "help": "a pair labelled both bad: drop, or keep as a tie row",
        },
    )
    criterion: str = field(
        default="", metadata={"help": "label by this criterion's votes instead of the overall choice"}
    )
    use_adjudicated: bool = field(
        default=True,
        metadata={
            "help": "a pair a lead settled takes the lead's label instead of the votes' (labels by the "
            "overall choice only)"
        },
    )
    # Rows and files.
    shape: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "text", "conversational"),
            "help": "auto: conversational when any prompt is a conversation",
        },
    )
    columns: tuple[str, ...] = field(
        default=DEFAULT_COLUMNS,
        metadata={"choices": OPTIONAL_COLUMNS, "help": "optional columns after prompt, chosen, rejected"},
    )
    split: float = field(
        default=0.9, metadata={"help": "share of prompts in the train split (1 for no test split)"}
    )
    seed: int = field(default=0, metadata={"help": "seeds the split"})
    stratify: bool = field(
        default=False, metadata={"help": "split each prompt category in the same proportion"}
    )
    license: str = field(default="", metadata={"help": "licence named in the dataset card, e.g. cc-by-4.0"})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data

    @property
    def keeps_tie_rows(self) -> bool:
        return self.ties == "keep" or self.both_bad == "keep"

    @property
    def settles_labels(self) -> bool:
        """Whether leads' adjudications replace the votes' labels: a lead settles the overall choice, so
        never for a criterion's labels, and raw exports carry every vote and no label."""
        return self.use_adjudicated and self.kind == "preference" and not self.criterion


POLICY_KEYS = tuple(item.name for item in fields(ExportPolicy))


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _check_int(value: Any, minimum: int, maximum: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, got {value!r}"
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        return f"must be at least {minimum}{upper}, got {value}"
    return None


def _check_share(value: Any, *, low_open: bool = False) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        return f"must be a number between 0 and 1, got {value!r}"
    if value > 1 or value < 0 or (low_open and value == 0):
        bound = "above 0" if low_open else "at least 0"
        return f"must be {bound} and at most 1, got {value}"
    return None


def export_policy_parse(data: Any, *, project: Project) -> ExportPolicy:
    """Validates a policy (a dict; missing keys take their defaults) against the project.

    Raises ApplicationError naming every bad field as ``policy.<key>``; unknown keys are errors too, so a
    typo never silently falls back to a default."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApplicationError("policy must be a JSON object", fields={"policy": ["must be a JSON object"]})
    problems: dict[str, list[str]] = {}

    def problem(key: str, message: str | None) -> None:
        if message:
            problems.setdefault(f"policy.{key}", []).append(message)

    for key in data:
        if key not in POLICY_KEYS:
            problem(str(key), f"unknown policy key; known keys: {', '.join(POLICY_KEYS)}")
    values = {key: data[key] for key in POLICY_KEYS if key in data}
    defaults = ExportPolicy()
    choices = {item.name: item.metadata.get("choices") for item in fields(ExportPolicy)}
    for key in ("kind", "label", "tied_vote", "ties", "both_bad", "shape"):
        if key in values and values[key] not in choices[key]:
            problem(key, f"must be one of {', '.join(choices[key])}, got {values[key]!r}")
    for key in ("exclude_flagged", "exclude_gold", "include_imported", "use_adjudicated", "stratify"):
        if key in values:
            problem(key, _check_bool(values[key]))
    if values.get("min_gold_accuracy") is not None:
        problem("min_gold_accuracy", _check_share(values["min_gold_accuracy"]))
    if "min_gold_judgments" in values:
        problem("min_gold_judgments", _check_int(values["min_gold_judgments"], 1))
    if "min_votes" in values:
        problem("min_votes", _check_int(values["min_votes"], 1, 1000))
    if "min_agreement" in values:
        problem("min_agreement", _check_share(values["min_agreement"]))
    if "split" in values:
        problem("split", _check_share(values["split"], low_open=True))
    if "seed" in values:
        problem("seed", _check_int(values["seed"], 0, 2**63 - 1))
    for key in ("criterion", "license"):
        if key in values and not isinstance(values[key], str):
            problem(key, f"must be a string, got {values[key]!r}")
    if "license" in values and isinstance(values["license"], str) and len(values["license"]) > 100:
        problem("license", "must be at most 100 characters")
    if "columns" in values:
        columns = values["columns"]
        if not isinstance(columns, list | tuple) or not all(isinstance(column, str) for column in columns):
            problem("columns", "must be a list of column names")
        else:
            unknown = [column for column in columns if column not in OPTIONAL_COLUMNS]
            if unknown:
                problem(
                    "columns",
                    f"unknown column {unknown[0]!r}; optional columns: {', '.join(OPTIONAL_COLUMNS)}",
                )
            else:
                values["columns"] = tuple(column for column in OPTIONAL_COLUMNS if column in columns)

    if not problems:
        policy = ExportPolicy(
            **{**asdict(defaults), **values, "columns": values.get("columns", defaults.columns)}
        )
        if policy.criterion and policy.criterion not in (project.criteria or []):
            known = ", ".join(map(str, project.criteria or [])) or "none"
            problem("criterion", f"the project has no criterion {policy.criterion!r} (its criteria: {known})")
        if policy.tied_vote == "tie" and policy.ties == "drop":
            problem("tied_vote", "'tie' makes tie rows, which ties='drop' would remove: set ties to 'keep'")
        if "margin" in policy.columns and not project.strength_scale:
            problem("columns", "'margin' is the mean strength, but this project does not ask for a strength")
        if policy.shape == "text" and project_has_conversations(project):
            problem(
                "shape",
                "the project has conversation prompts, which text rows cannot hold: use 'conversational' or 'auto'",
            )
        if policy.kind == "raw" and policy.label == "weighted":
            problem("label", "raw exports carry every vote and no label; leave label at its default")
    if problems:
        first_field, first_messages = next(iter(problems.items()))
        raise ApplicationError(f"{first_field}: {first_messages[0]}", code="invalid_policy", fields=problems)
    return policy


def export_formats_parse(formats: Any) -> list[str]:
    """Validates the list of formats against the registry; returns them de-duplicated in a fixed order."""
    known = export_format_names()
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list | tuple) or not formats:
        raise ApplicationError(
            "formats: name at least one format",
            fields={"formats": [f"choose from {', '.join(known)}"]},
        )
    unknown = [item for item in formats if item not in known]
    if unknown:
        message = f"unknown format {unknown[0]!r}; formats: {', '.join(known)}"
        raise ApplicationError(f"formats: {message}", fields={"formats": [message]})
    return [item for item in known if item in formats]


def project_has_conversations(project: Project) -> bool:
    return Prompt.objects.filter(project=project, messages__isnull=False).exists()
