"""The outcome table of a project's human judgments, counted by the database: what active comparison
selection (``annotate.services.selection``) reads on every refresh, without reading the judgments."""

from __future__ import annotations

import numpy as np

from annotate.models import Project
from annotate.services.judgment_arrays import CHOICES
from annotate.services.leaderboard.battles import usable
from annotate.stats.ratings import OutcomeTable, build_outcome_table
from palate.db import read_arrays

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
    keep, _ = usable(model_a, model_b, outcome)
    table = build_outcome_table(
        np.repeat(model_a[keep], count[keep]),
        np.repeat(model_b[keep], count[keep]),
        np.repeat(outcome[keep], count[keep]),
        max(len(systems), 1),
        both_bad_as_tie=both_bad_as_tie,
    )
    return table, last_judgment
