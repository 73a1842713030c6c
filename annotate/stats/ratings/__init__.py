"""Bradley-Terry ratings, confidence intervals and Elo leaderboards from pairwise preference judgments.

Pure functions on numpy arrays. Services turn judgment rows into integer system indices
(``0 .. n_systems-1``) and :class:`Outcome` codes, call these functions and store the arrays they return;
nothing here imports Django.

The model
---------
System ``i`` has a log-strength ``theta[i]``; under Bradley-Terry it is preferred to system ``j`` with
probability ``sigmoid(theta[i] - theta[j])``. By default a tie counts as half a win for each side (Chatbot
Arena's convention), so the likelihood depends on the battles only through the table of wins and ties between
every pair of systems: a million battles among a hundred systems reduce to a 100 x 100 table, and the maximum
likelihood fit is a handful of Newton steps on a small, dense, concave problem.

``ties="davidson"`` models ties explicitly (Davidson, 1970), with one tie parameter ``nu`` for all pairs::

    P(i beats j) = pi_i / (pi_i + pi_j + nu * sqrt(pi_i * pi_j)),   pi = exp(theta)
    P(i ties j)  = nu * sqrt(pi_i * pi_j) / (pi_i + pi_j + nu * sqrt(pi_i * pi_j))

Log-strengths are defined only up to a common shift. ``theta`` sums to zero, or is zero at the ``anchor``
system. The Elo scale is ``rating = anchor_rating + 400 / ln(10) * theta``: a 400-point gap means 10:1 odds,
the anchor gets exactly ``anchor_rating`` and, without an anchor, the mean rating is ``anchor_rating``.

When the maximum likelihood estimate does not exist (the comparison graph is disconnected, or some system
never lost or never won, so its log-strength runs off to infinity) the fit says so in ``warnings`` and adds an
L2 penalty ``SEPARATION_L2 / 2 * |theta|^2``: a Gaussian prior with standard deviation 10 in log-strength
(about 1,700 Elo points), enough to keep every number finite while barely moving identified systems.

The package, one concern a module: ``outcomes`` (battles to the table of wins and ties), ``bradley_terry``
(the public fits), ``half_ties`` and ``davidson`` (the two tie models' estimators, covariances and
bootstraps), ``bootstrap`` (resampling), ``identifiability`` (when the estimate exists, and the fallback
prior), ``numerics`` (the linear algebra they share), ``result`` (the Elo scale and the leaderboard type),
``elo`` (online Elo), ``crowd_bt`` (annotator-aware ratings) and ``prompt_scores`` (per-prompt scores).
What this module exports is the API; the modules' own names are free to change.
"""

from annotate.stats.ratings.bradley_terry import fit_battle_ratings, fit_ratings, ratings_by_group
from annotate.stats.ratings.crowd_bt import CrowdBTResult, fit_crowd_bt
from annotate.stats.ratings.elo import EloTrajectory, online_elo
from annotate.stats.ratings.identifiability import SEPARATION_L2
from annotate.stats.ratings.outcomes import Outcome, OutcomeTable, build_outcome_table
from annotate.stats.ratings.prompt_scores import PROMPT_SCORE_L2, ResponseScores, prompt_response_scores
from annotate.stats.ratings.result import DEFAULT_ANCHOR_RATING, ELO_SCALE, RatingResult, theta_to_elo

__all__ = [
    "DEFAULT_ANCHOR_RATING",
    "ELO_SCALE",
    "PROMPT_SCORE_L2",
    "SEPARATION_L2",
    "CrowdBTResult",
    "EloTrajectory",
    "Outcome",
    "OutcomeTable",
    "RatingResult",
    "ResponseScores",
    "build_outcome_table",
    "fit_battle_ratings",
    "fit_crowd_bt",
    "fit_ratings",
    "online_elo",
    "prompt_response_scores",
    "ratings_by_group",
    "theta_to_elo",
]
