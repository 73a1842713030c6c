"""Leaderboards: the project's human judgments read in bulk into integer arrays (``battles``), rated by
``annotate.stats.ratings`` (``compute``, ``board``, ``groups``) and returned as plain dicts for the API, the
page and the CSV download (``serving``: cached, and behind the public link). ``outcomes`` counts the outcome
table that active comparison selection reads.
"""

from annotate.services.leaderboard.battles import Battles, project_battles, project_systems
from annotate.services.leaderboard.compute import CSV_COLUMNS, leaderboard_compute
from annotate.services.leaderboard.filters import leaderboard_filters
from annotate.services.leaderboard.groups import annotator_groups
from annotate.services.leaderboard.options import (
    INTERVALS,
    MAX_ROUNDS,
    METHODS,
    TIE_MODELS,
    WEIGHTINGS,
    LeaderboardOptions,
    leaderboard_options,
)
from annotate.services.leaderboard.outcomes import project_outcome_table
from annotate.services.leaderboard.serving import (
    leaderboard_get,
    leaderboard_public_link_set,
    project_for_public_leaderboard,
)

__all__ = [
    "CSV_COLUMNS",
    "INTERVALS",
    "MAX_ROUNDS",
    "METHODS",
    "TIE_MODELS",
    "WEIGHTINGS",
    "Battles",
    "LeaderboardOptions",
    "annotator_groups",
    "leaderboard_compute",
    "leaderboard_filters",
    "leaderboard_get",
    "leaderboard_options",
    "leaderboard_public_link_set",
    "project_battles",
    "project_for_public_leaderboard",
    "project_outcome_table",
    "project_systems",
]
