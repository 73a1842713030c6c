"""Inter-annotator agreement for pairwise preference judgments.

Pure numpy (scipy for sparse products and the binomial test), no Django: services turn judgment rows into
arrays and call in, so every number here can be checked against reference libraries and benchmarked alone.

Most functions take the "long" form, one row per judgment, as three aligned keyword-only arrays (keyword-only
because ``units`` and ``coders`` are both integer arrays and swapping them would silently give wrong numbers):

- ``units``: the unit of agreement, which in Palate is always the pair being judged, as an index >= 0;
- ``coders``: the annotator who judged it, as an index >= 0;
- ``values``: the judgment, a number: a category code for nominal data, a point on a scale otherwise.

Conventions shared by every function:

- NaN in ``values`` means "no judgment" and the row is ignored, like the NaN cells of a reliability matrix.
- A coder judges a unit at most once (the database enforces unique (pair, annotator)); a repeat raises
  ValueError because it would silently double that coder's weight.
- Results indexed by unit or coder are aligned with the indices: entry ``i`` belongs to index ``i``, so map
  database ids to dense indices first.
- At most ``MAX_DISTINCT_VALUES`` distinct values: the statistics are built on units x values count tables and
  values x values coincidence matrices, which suit category codes and rating scales. Bin continuous scores.
- Degenerate input returns NaN, never an obscure numpy error, and each function documents when; malformed
  input (mismatched lengths, negative or non-integer indices, infinite values) raises ValueError.

The package, one concern a module: ``arrays`` (checking the long form and counting it into units x values
tables), ``alpha`` (Krippendorff's alpha, overall and by coder group), ``bootstrap`` (its confidence
interval), ``kappa`` (Fleiss' and Cohen's), ``consensus`` (per-unit agreement: raw, with the majority, vote
entropy) and ``coders`` (per-coder habits: position bias, drift). What this module exports is the API; the
modules' own names are free to change.
"""

from annotate.stats.agreement.alpha import LEVELS, GroupAlpha, Level, group_alpha, krippendorff_alpha
from annotate.stats.agreement.arrays import MAX_DISTINCT_VALUES, LongJudgments
from annotate.stats.agreement.bootstrap import AlphaBootstrap, krippendorff_alpha_bootstrap
from annotate.stats.agreement.coders import PositionBias, position_bias, rolling_agreement
from annotate.stats.agreement.consensus import majority_agreement_outcomes, percent_agreement, vote_entropy
from annotate.stats.agreement.kappa import (
    FleissTable,
    PairwiseKappa,
    cohen_kappa_matrix,
    fleiss_count_table,
    fleiss_kappa,
)

__all__ = [
    "LEVELS",
    "MAX_DISTINCT_VALUES",
    "AlphaBootstrap",
    "FleissTable",
    "GroupAlpha",
    "Level",
    "LongJudgments",
    "PairwiseKappa",
    "PositionBias",
    "cohen_kappa_matrix",
    "fleiss_count_table",
    "fleiss_kappa",
    "group_alpha",
    "krippendorff_alpha",
    "krippendorff_alpha_bootstrap",
    "majority_agreement_outcomes",
    "percent_agreement",
    "position_bias",
    "rolling_agreement",
    "vote_entropy",
]
