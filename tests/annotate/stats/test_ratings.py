"""Bradley-Terry ratings: agreement with reference implementations, statistical behaviour, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import expit

from annotate.stats.ratings import (
    ELO_SCALE,
    SEPARATION_L2,
    Outcome,
    OutcomeTable,
    build_outcome_table,
    fit_battle_ratings,
    fit_crowd_bt,
    fit_ratings,
    online_elo,
    prompt_response_scores,
    ratings_by_group,
    theta_to_elo,
)
from annotate.stats.ratings.bootstrap import MultinomialSampler

A_WINS, B_WINS, TIE, BOTH_BAD = (int(code) for code in Outcome)


def table_of_counts(wins: np.ndarray, ties: np.ndarray) -> OutcomeTable:
    """An unweighted outcome table straight from its count matrices."""
    return OutcomeTable(wins, ties, wins, ties, wins, ties)


def simulate_battles(
    truth: np.ndarray,
    battles: int,
    *,
    tie_rate: float = 0.0,
    seed: int = 0,
    tie_model: str = "independent",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random pairs; a wins with sigmoid(theta_a - theta_b). With tie_model="half", ties happen at
    ``tie_rate`` and decisive outcomes are thinned so the expected score is still sigmoid(d): the half-win
    estimating equation is then unbiased for ``truth`` but the outcome is not Bernoulli."""
    rng = np.random.default_rng(seed)
    n = truth.size
    model_a = rng.integers(0, n, battles)
    model_b = (model_a + rng.integers(1, n, battles)) % n
    probability = expit(truth[model_a] - truth[model_b])
    tie = rng.random(battles) < tie_rate
    if tie_model == "half":
        a_wins = rng.random(battles) < (probability - tie_rate / 2) / (1 - tie_rate)
    else:
        a_wins = rng.random(battles) < probability
    outcome = np.where(tie, TIE, np.where(a_wins, A_WINS, B_WINS))
    return model_a, model_b, outcome


def centred(values: np.ndarray) -> np.ndarray:
    return values - values.mean()


# --- the outcome table ------------------------------------------------------------------------------------------


def test_table_counts_wins_and_symmetric_ties_with_both_bad_as_a_tie() -> None:
    table = build_outcome_table(
        [0, 1, 0, 2, 1], [1, 0, 2, 0, 2], [A_WINS, A_WINS, TIE, BOTH_BAD, B_WINS], n_systems=3
    )
    np.testing.assert_array_equal(table.wins, [[0, 1, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(table.wins, table.win_counts)
    np.testing.assert_array_equal(table.ties, [[0, 0, 2], [0, 0, 0], [2, 0, 0]])
    np.testing.assert_array_equal(table.battles, [[0, 2, 2], [2, 0, 1], [2, 1, 0]])


def test_both_bad_battles_are_dropped_when_not_counted_as_ties() -> None:
    table = build_outcome_table([0, 2], [2, 0], [TIE, BOTH_BAD], n_systems=3, both_bad_as_tie=False)
    assert table.ties[0, 2] == 1
    assert table.battles.sum() == 2  # one battle, counted for both systems


def test_weights_scale_votes_but_not_battle_counts() -> None:
    table = build_outcome_table([0, 0, 1], [1, 1, 0], [A_WINS, A_WINS, TIE], n_systems=2, weights=[0.5, 2, 3])
    assert table.wins[0, 1] == 2.5
    assert table.win_counts[0, 1] == 2
    assert table.win_squared_weights[0, 1] == 4.25
    assert table.ties[0, 1] == table.ties[1, 0] == 3
    assert table.tie_squared_weights[0, 1] == 9


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (([0], [0], [A_WINS]), "itself"),
        (([0], [5], [A_WINS]), "indices"),
        (([0], [1], [7]), "outcome"),
        (([0, 1], [1], [A_WINS]), "same length"),
        (([0.5], [1], [A_WINS]), "integer"),
    ],
)
def test_invalid_battles_raise_value_error(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_outcome_table(*arguments, n_systems=3)


# --- agreement with reference implementations -----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_battles() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    truth = np.linspace(-1.2, 1.2, 7)
    model_a, model_b, outcome = simulate_battles(truth, 3000, tie_rate=0.1, seed=11)
    return truth, model_a, model_b, outcome


def test_half_win_fit_matches_choix_with_decisive_battles_doubled_and_ties_as_a_win_each_way(
    reference_battles: tuple,
) -> None:
    import choix

    _, model_a, model_b, outcome = reference_battles
    # Chatbot Arena's expansion: every battle twice, a tie as one win each way; the same likelihood, doubled.
    data = []
    for a, b, code in zip(model_a.tolist(), model_b.tolist(), outcome.tolist(), strict=True):
        if code == A_WINS:
            data += [(a, b), (a, b)]
        elif code == B_WINS:
            data += [(b, a), (b, a)]
        else:
            data += [(a, b), (b, a)]
    reference = choix.ilsr_pairwise(7, data, tol=1e-13, max_iter=10_000)
    result = fit_battle_ratings(model_a, model_b, outcome, 7, interval="none")
    assert result.converged and not result.warnings
    np.testing.assert_allclose(result.theta, centred(reference), atol=1e-6)


def test_fit_matches_choix_when_each_tie_counts_as_a_win_for_both(reference_battles: tuple) -> None:
    import choix

    _, model_a, model_b, outcome = reference_battles
    data = []
    for a, b, code in zip(model_a.tolist(), model_b.tolist(), outcome.tolist(), strict=True):
        if code == A_WINS:
            data.append((a, b))
        elif code == B_WINS:
            data.append((b, a))
        else:
            data += [(a, b), (b, a)]
    reference = choix.ilsr_pairwise(7, data, tol=1e-13, max_iter=10_000)
    table = build_outcome_table(model_a, model_b, outcome, 7)
    result = fit_ratings(table_of_counts(table.wins + table.ties, np.zeros((7, 7))), interval="none")
    np.testing.assert_allclose(result.theta, centred(reference), atol=1e-6)


def test_fit_matches_unregularised_logistic_regression_on_the_one_hot_design(
    reference_battles: tuple,
) -> None:
    import statsmodels.api as statsmodels

    _, model_a, model_b, outcome = reference_battles
    battles = model_a.size
    # One row per battle and copy (Chatbot Arena's duplication): +1 for model_a, -1 for model_b.
    design = np.zeros((2 * battles, 7))
    rows = np.arange(2 * battles)
    design[rows, np.tile(model_a, 2)] = 1.0
    design[rows, np.tile(model_b, 2)] = -1.0
    a_scored = np.concatenate([outcome != B_WINS, outcome == A_WINS]).astype(float)
    # Dropping system 0's column anchors it at zero and makes the design full rank.
    fit = statsmodels.Logit(a_scored, design[:, 1:]).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    reference = np.concatenate([[0.0], fit.params])
    result = fit_battle_ratings(model_a, model_b, outcome, 7, interval="none", anchor=0)
    np.testing.assert_allclose(result.theta, reference, atol=1e-6)


def test_fit_matches_scikit_learn_logistic_regression_without_penalty(reference_battles: tuple) -> None:
    from sklearn import linear_model

    _, model_a, model_b, outcome = reference_battles
    decisive = outcome != TIE
    # Ties as two half-weighted rows, one won by each side.
    design = np.zeros((model_a.size + int((~decisive).sum()), 7))
    rows = np.arange(design.shape[0])
    first = np.concatenate([model_a, model_a[~decisive]])
    second = np.concatenate([model_b, model_b[~decisive]])
    design[rows, first] = 1.0
    design[rows, second] = -1.0
    label = np.concatenate([outcome == A_WINS, np.zeros(int((~decisive).sum()), dtype=bool)])
    label[: model_a.size][~decisive] = True
    weight = np.concatenate([np.where(decisive, 1.0, 0.5), np.full(int((~decisive).sum()), 0.5)])
    model = linear_model.LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-14, max_iter=100_000)
    model.fit(design, label, sample_weight=weight)
    result = fit_battle_ratings(model_a, model_b, outcome, 7, interval="none")
    np.testing.assert_allclose(result.theta, centred(model.coef_[0]), atol=1e-6)


# --- statistical behaviour ------------------------------------------------------------------------------------


def test_known_strengths_are_recovered_from_enough_battles() -> None:
    truth = np.random.default_rng(3).normal(0, 1, 12)
    result = fit_battle_ratings(*simulate_battles(truth, 60_000, seed=4), 12, interval="none")
    assert np.corrcoef(result.theta, truth)[0, 1] > 0.995
    assert np.abs(result.theta - centred(truth)).max() < 0.15


def test_sandwich_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    truth = np.linspace(-1, 1, 8)
    covered = []
    for simulation in range(200):
        # Ties chosen so the half-win estimand is the truth but the outcome is not Bernoulli: only a robust
        # variance gets the width right.
        battles = simulate_battles(truth, 1500, tie_rate=0.3, tie_model="half", seed=1000 + simulation)
        result = fit_battle_ratings(*battles, 8)
        target = theta_to_elo(truth)
        covered.append((result.lower <= target) & (target <= result.upper))
    coverage = np.mean(covered)
    assert 0.90 <= coverage <= 0.99, coverage


def test_sandwich_reduces_to_the_inverse_information_when_the_model_is_right() -> None:
    truth = np.linspace(-1, 1, 6)
    result = fit_battle_ratings(*simulate_battles(truth, 200_000, seed=5), 6)
    probability = expit(result.theta[:, None] - result.theta[None, :])
    table = build_outcome_table(*simulate_battles(truth, 200_000, seed=5), 6)
    weight = table.battles * probability * (1 - probability)
    information = np.diag(weight.sum(axis=1)) - weight
    model_based = np.linalg.pinv(information)
    np.testing.assert_allclose(np.diag(result.covariance), np.diag(model_based), rtol=0.05)


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_estimate() -> None:
    truth = np.linspace(-1, 1, 10)
    table = build_outcome_table(*simulate_battles(truth, 20_000, tie_rate=0.05, seed=6), 10)
    first = fit_ratings(table, interval="bootstrap", bootstrap_rounds=300, seed=42, workers=None)
    again = fit_ratings(table, interval="bootstrap", bootstrap_rounds=300, seed=42, workers=1)
    other_seed = fit_ratings(table, interval="bootstrap", bootstrap_rounds=300, seed=43)
    np.testing.assert_array_equal(first.bootstrap_ratings, again.bootstrap_ratings)
    np.testing.assert_array_equal(first.lower, again.lower)
    assert not np.array_equal(first.bootstrap_ratings, other_seed.bootstrap_ratings)
    assert np.all(first.lower < first.rating) and np.all(first.rating < first.upper)
    assert first.bootstrap_ratings.shape == (300, 10)


def test_bootstrap_and_sandwich_intervals_have_similar_widths() -> None:
    truth = np.linspace(-1, 1, 10)
    table = build_outcome_table(*simulate_battles(truth, 20_000, tie_rate=0.05, seed=7), 10)
    sandwich = fit_ratings(table)
    bootstrap = fit_ratings(table, interval="bootstrap", bootstrap_rounds=1000)
    ratio = (bootstrap.upper - bootstrap.lower) / (sandwich.upper - sandwich.lower)
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


@pytest.mark.parametrize("battles", [60, 20_000])
def test_every_bootstrap_round_is_the_exact_fit_of_a_multinomial_resample(battles: int) -> None:
    # 20,000 battles take the fixed-Hessian path, 60 mostly the Newton fallback; both must be exact fits.
    truth = np.linspace(-1, 1, 5)
    table = build_outcome_table(*simulate_battles(truth, battles, tie_rate=0.1, seed=8), 5)
    result = fit_ratings(table, interval="bootstrap", bootstrap_rounds=40, seed=1, anchor=0)
    # Replay the draws: one chunk of rounds, whose generator is the seed's first child.
    upper = np.triu_indices(5, k=1)
    cells = np.concatenate([table.win_counts[upper], table.win_counts.T[upper], table.tie_counts[upper]])
    present = np.flatnonzero(cells > 0)
    generator = np.random.default_rng(np.random.SeedSequence(1).spawn(1)[0])
    draws = MultinomialSampler(int(cells.sum()), cells[present]).draw(generator, 40)
    for draw, ratings in zip(draws, result.bootstrap_ratings, strict=True):
        resampled = np.zeros(cells.size)
        resampled[present] = draw
        first_wins, second_wins, ties = np.split(resampled, 3)
        wins, tie_matrix = np.zeros((5, 5)), np.zeros((5, 5))
        wins[upper], wins.T[upper] = first_wins, second_wins
        tie_matrix[upper] = tie_matrix.T[upper] = ties
        direct = fit_ratings(table_of_counts(wins, tie_matrix), interval="none", anchor=0)
        np.testing.assert_allclose(ratings, direct.rating, atol=1e-4)


def test_bootstrap_on_tiny_data_flags_separable_resamples_and_stays_finite() -> None:
    truth = np.linspace(-1, 1, 5)
    table = build_outcome_table(*simulate_battles(truth, 30, seed=8), 5)
    result = fit_ratings(table, interval="bootstrap", bootstrap_rounds=200, seed=1)
    assert not fit_ratings(table).warnings
    assert any("resampled separable data" in warning for warning in result.warnings)
    assert np.all(np.isfinite(result.bootstrap_ratings))
    assert np.all(result.lower <= result.rating) and np.all(result.rating <= result.upper)


def test_multinomial_sampler_draws_exact_totals_with_multinomial_moments() -> None:
    counts = np.array([400.0, 250.0, 200.0, 100.0, 50.0])
    sampler = MultinomialSampler(1000, counts)
    draws = sampler.draw(np.random.default_rng(0), 40_000)
    probability = counts / counts.sum()
    assert np.all(draws.sum(axis=1) == 1000)
    np.testing.assert_allclose(draws.mean(axis=0), 1000 * probability, rtol=0.01)
    expected_covariance = 1000 * (np.diag(probability) - np.outer(probability, probability))
    np.testing.assert_allclose(np.cov(draws.T), expected_covariance, atol=0.05 * expected_covariance.max())


# --- Elo scale, anchor, rank, result fields ------------------------------------------------------------------


def test_anchor_gets_exactly_the_anchor_rating_and_gaps_use_400_over_ln_10() -> None:
    truth = np.array([0.0, 0.5, 1.0])
    battles = simulate_battles(truth, 5000, seed=9)
    mean_centred = fit_battle_ratings(*battles, 3)
    anchored = fit_battle_ratings(*battles, 3, anchor=1, anchor_rating=1200.0)
    assert anchored.rating[1] == 1200.0
    assert anchored.theta[1] == 0.0
    assert anchored.lower[1] == anchored.upper[1] == 1200.0
    assert mean_centred.rating.mean() == pytest.approx(1000.0)
    np.testing.assert_allclose(np.diff(anchored.rating), np.diff(mean_centred.rating))
    np.testing.assert_allclose(np.diff(mean_centred.rating), ELO_SCALE * np.diff(mean_centred.theta))
    assert pytest.approx(400 / math.log(10)) == ELO_SCALE


def test_rank_is_one_plus_the_number_of_systems_clearly_better() -> None:
    truth = np.array([0.0, 0.02, 1.5, 3.0])
    result = fit_battle_ratings(*simulate_battles(truth, 4000, seed=10), 4)
    np.testing.assert_array_equal(result.rank, [3, 3, 2, 1])


def test_result_reports_battles_win_rates_and_predicted_win_probabilities() -> None:
    result = fit_battle_ratings([0, 0, 0, 1], [1, 1, 1, 0], [A_WINS, A_WINS, TIE, B_WINS], 2)
    np.testing.assert_array_equal(result.battles, [4, 4])
    np.testing.assert_allclose(result.win_rate, [3.5 / 4, 0.5 / 4])
    # Half-win MLE: sigmoid(d) = 3.5 / 4.
    assert result.win_probability[0, 1] == pytest.approx(3.5 / 4)
    np.testing.assert_allclose(result.win_probability + result.win_probability.T, 1.0)
    assert result.converged and result.iterations > 0
    assert result.systems == [0, 1]


def test_system_labels_are_kept_in_order() -> None:
    result = fit_battle_ratings([0, 1], [1, 2], [A_WINS, TIE], 3, systems=["gpt", "claude", "llama"])
    assert result.systems == ["gpt", "claude", "llama"]


def test_hitting_the_iteration_cap_is_reported() -> None:
    result = fit_battle_ratings(*simulate_battles(np.linspace(-2, 2, 6), 3000, seed=12), 6, max_iterations=1)
    assert not result.converged
    assert any("did not converge" in warning for warning in result.warnings)


# --- Davidson ties ------------------------------------------------------------------------------------------------


def davidson_negative_log_likelihood(parameters: np.ndarray, table: OutcomeTable) -> float:
    """Written straight from Davidson's formula, independently of the module."""
    theta = np.concatenate([[0.0], parameters[:-1]])
    nu = math.exp(parameters[-1])
    strength = np.exp(theta)
    root = np.sqrt(np.outer(strength, strength))
    denominator = strength[:, None] + strength[None, :] + nu * root
    win = strength[:, None] / denominator
    tie = nu * root / denominator
    upper = np.triu(np.ones_like(win, dtype=bool), k=1)
    return -float(np.sum(table.wins * np.log(win)) + np.sum((table.ties * np.log(tie))[upper]))


def test_davidson_fit_is_the_maximum_likelihood_estimate() -> None:
    truth = np.linspace(-1, 1, 5)
    table = build_outcome_table(*simulate_battles(truth, 4000, tie_rate=0.2, seed=13), 5)
    result = fit_ratings(table, ties="davidson", anchor=0)
    reference = minimize(
        davidson_negative_log_likelihood, np.zeros(5), args=(table,), method="BFGS", options={"gtol": 1e-9}
    )
    np.testing.assert_allclose(result.theta[1:], reference.x[:-1], atol=1e-5)
    assert result.tie_parameter == pytest.approx(math.exp(reference.x[-1]), rel=1e-5)
    # The gradient vanishes at the fit.
    at_fit = np.concatenate([result.theta[1:], [math.log(result.tie_parameter)]])
    step = 1e-6
    gradient = [
        (
            davidson_negative_log_likelihood(at_fit + step * unit, table)
            - davidson_negative_log_likelihood(at_fit - step * unit, table)
        )
        / (2 * step)
        for unit in np.eye(5)
    ]
    assert np.abs(gradient).max() < 1e-4


def test_davidson_win_probability_counts_ties_half_and_intervals_are_finite() -> None:
    truth = np.linspace(-1, 1, 4)
    table = build_outcome_table(*simulate_battles(truth, 4000, tie_rate=0.2, seed=14), 4)
    result = fit_ratings(table, ties="davidson")
    np.testing.assert_allclose(result.win_probability + result.win_probability.T, 1.0)
    assert np.all(np.isfinite(result.lower)) and np.all(result.lower < result.upper)
    bootstrap = fit_ratings(table, ties="davidson", interval="bootstrap", bootstrap_rounds=100)
    ratio = (bootstrap.upper - bootstrap.lower) / (result.upper - result.lower)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


def test_davidson_without_ties_is_plain_bradley_terry_and_says_so() -> None:
    battles = simulate_battles(np.linspace(-1, 1, 4), 2000, seed=15)
    davidson = fit_battle_ratings(*battles, 4, ties="davidson")
    plain = fit_battle_ratings(*battles, 4)
    np.testing.assert_allclose(davidson.theta, plain.theta)
    assert davidson.tie_parameter == 0.0
    assert any("no ties" in warning for warning in davidson.warnings)


# --- data that cannot identify the ratings ------------------------------------------------------------------------


def assert_finite(result) -> None:
    for values in (result.theta, result.rating, result.lower, result.upper, result.win_probability):
        assert np.all(np.isfinite(values))


def test_disconnected_comparison_graph_warns_regularises_and_stays_finite() -> None:
    # Systems {0, 1} and {2, 3} never meet.
    model_a = [0, 1, 0, 2, 3, 2]
    model_b = [1, 0, 1, 3, 2, 3]
    outcome = [A_WINS, A_WINS, B_WINS, A_WINS, TIE, B_WINS]
    for interval in ("sandwich", "bootstrap"):
        result = fit_battle_ratings(model_a, model_b, outcome, 4, interval=interval, bootstrap_rounds=50)
        assert_finite(result)
        assert any("disconnected" in warning for warning in result.warnings)
        assert result.l2 == SEPARATION_L2
        assert result.converged


def test_undefeated_system_warns_and_gets_a_finite_top_rating() -> None:
    model_a = [0, 0, 0, 1, 2, 1]
    model_b = [1, 2, 1, 2, 1, 2]
    outcome = [A_WINS, A_WINS, A_WINS, A_WINS, A_WINS, B_WINS]
    result = fit_battle_ratings(model_a, model_b, outcome, 3, systems=["champion", "b", "c"])
    assert_finite(result)
    assert any("undefeated" in warning and "champion" in warning for warning in result.warnings)
    assert np.argmax(result.rating) == 0
    assert result.converged


def test_system_that_never_won_warns() -> None:
    result = fit_battle_ratings([0, 1, 2, 1], [2, 2, 1, 0], [A_WINS, A_WINS, B_WINS, TIE], 3)
    assert_finite(result)
    assert any("never won" in warning for warning in result.warnings)


def test_system_without_battles_gets_the_prior_width() -> None:
    result = fit_battle_ratings([0, 1], [1, 0], [A_WINS, B_WINS], 3)
    assert_finite(result)
    assert any("no battles" in warning for warning in result.warnings)
    assert result.upper[2] - result.lower[2] > 1000  # prior standard deviation 10 ~ 1,700 Elo
    assert result.battles[2] == 0 and result.win_rate[2] == 0.0


def test_no_battles_at_all_gives_equal_finite_ratings() -> None:
    result = fit_battle_ratings([], [], [], 3, interval="bootstrap", bootstrap_rounds=10)
    assert_finite(result)
    np.testing.assert_allclose(result.rating, 1000.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(1, 4), st.sampled_from([A_WINS, B_WINS, TIE, BOTH_BAD])),
        max_size=25,
    ),
    st.sampled_from(["half", "davidson"]),
)
def test_any_battles_give_finite_ratings_independent_of_side_order(battles: list, ties: str) -> None:
    model_a = np.array([a for a, _, _ in battles], dtype=np.int64)
    model_b = (model_a + np.array([offset for _, offset, _ in battles], dtype=np.int64)) % 5
    outcome = np.array([code for _, _, code in battles], dtype=np.int64)
    result = fit_battle_ratings(model_a, model_b, outcome, 5, ties=ties)
    assert_finite(result)
    assert result.converged
    # Swapping the sides of every battle (and flipping the winner) describes the same battles.
    flipped = np.select([outcome == A_WINS, outcome == B_WINS], [B_WINS, A_WINS], outcome)
    swapped = fit_battle_ratings(model_b, model_a, flipped, 5, ties=ties)
    np.testing.assert_allclose(swapped.rating, result.rating, atol=1e-6)


# --- online Elo --------------------------------------------------------------------------------------------------


def test_online_elo_two_games_by_hand() -> None:
    # Game 1: equal ratings, A beats B: expected 0.5, so A gains K/2 = 16. Game 2: B (984) ties A (1016):
    # B's expected score is 1 / (1 + 10^(32/400)) = 0.4540, so B gains 32 * (0.5 - 0.4540) = 1.4695.
    trajectory = online_elo([0, 1], [1, 0], [A_WINS, TIE], 2, k_factor=32.0)
    expected_b = 1 / (1 + 10 ** (32 / 400))
    np.testing.assert_allclose(trajectory.rating_a, [1016.0, 984.0 + 32 * (0.5 - expected_b)])
    np.testing.assert_allclose(trajectory.ratings, [1014.530463, 985.469537], atol=1e-6)
    steps, ratings = trajectory.history(0)
    np.testing.assert_array_equal(steps, [0, 1])
    np.testing.assert_allclose(ratings, [1016.0, 1014.530463], atol=1e-6)


def test_online_elo_processes_battles_in_time_order_and_drops_both_bad_on_request() -> None:
    trajectory = online_elo(
        [0, 1, 0], [1, 0, 1], [A_WINS, BOTH_BAD, B_WINS], 2, timestamps=[30, 10, 20], both_bad_as_tie=False
    )
    np.testing.assert_array_equal(trajectory.battle_index, [2, 0])
    assert trajectory.ratings[1] > trajectory.ratings[0] - 1  # b won first, at equal ratings
    assert trajectory.ratings.sum() == pytest.approx(2000.0)


# --- annotators ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowd() -> dict:
    rng = np.random.default_rng(21)
    truth = np.linspace(-1.5, 1.5, 10)
    battles = 12_000
    model_a = rng.integers(0, 10, battles)
    model_b = (model_a + rng.integers(1, 10, battles)) % 10
    annotator = rng.integers(0, 6, battles)
    # Annotators 0-3 are careful, 4 clicks at random, 5 votes against their judgment most of the time.
    reliability = np.array([0.97, 0.95, 0.95, 0.9, 0.5, 0.15])
    true_a_wins = rng.random(battles) < expit(truth[model_a] - truth[model_b])
    agrees = rng.random(battles) < reliability[annotator]
    outcome = np.where(true_a_wins == agrees, A_WINS, B_WINS)
    return {
        "truth": truth,
        "battles": (model_a, model_b, outcome),
        "annotator": annotator,
        "reliability": reliability,
    }


def test_crowd_bt_flags_the_adversarial_and_the_random_annotator(crowd: dict) -> None:
    result = fit_crowd_bt(*crowd["battles"], crowd["annotator"], 10)
    assert result.converged
    assert result.reliability[5] < 0.3
    assert 0.35 < result.reliability[4] < 0.65
    assert np.all(result.reliability[:4] > 0.8)
    np.testing.assert_allclose(result.reliability, crowd["reliability"], atol=0.08)
    assert result.annotator_battles.sum() == crowd["annotator"].size


def test_crowd_bt_ratings_are_closer_to_the_truth_than_unweighted_ones(crowd: dict) -> None:
    truth = centred(crowd["truth"])
    crowd_bt = fit_crowd_bt(*crowd["battles"], crowd["annotator"], 10)
    unweighted = fit_battle_ratings(*crowd["battles"], 10)
    crowd_error = np.abs(crowd_bt.ratings.theta - truth).max()
    unweighted_error = np.abs(unweighted.theta - truth).max()
    assert crowd_error < 0.5 * unweighted_error, (crowd_error, unweighted_error)
    assert np.all(np.isfinite(crowd_bt.ratings.lower)) and np.all(
        crowd_bt.ratings.lower < crowd_bt.ratings.upper
    )


def test_reliability_weighted_votes_are_closer_to_the_truth(crowd: dict) -> None:
    truth = centred(crowd["truth"])
    # Weight 2 * eta - 1 (zero for a coin-flipper, dropping the adversary too): a simple reliability weighting.
    weights = np.clip(2 * crowd["reliability"] - 1, 0, None)[crowd["annotator"]]
    weighted = fit_battle_ratings(*crowd["battles"], 10, weights=weights)
    unweighted = fit_battle_ratings(*crowd["battles"], 10)
    assert np.abs(weighted.theta - truth).max() < np.abs(unweighted.theta - truth).max()


def test_crowd_bt_sandwich_intervals_cover_the_truth(crowd: dict) -> None:
    result = fit_crowd_bt(*crowd["battles"], crowd["annotator"], 10)
    target = theta_to_elo(crowd["truth"])
    assert np.mean((result.ratings.lower <= target) & (target <= result.ratings.upper)) >= 0.8


# --- groups and prompts -------------------------------------------------------------------------------------------


def test_group_leaderboards_are_fits_on_each_subset_with_only_its_systems() -> None:
    truth = np.linspace(-1, 1, 6)
    model_a, model_b, outcome = simulate_battles(truth, 6000, tie_rate=0.1, seed=22)
    group = np.where(np.isin(model_a, [0, 1, 2]) & np.isin(model_b, [0, 1, 2]), "small", "rest")
    results = ratings_by_group(group, model_a, model_b, outcome, 6, systems=list("abcdef"), anchor=4)
    assert set(results) == {"small", "rest"}
    assert results["small"].systems == ["a", "b", "c"]
    assert any("anchor e" in warning for warning in results["small"].warnings)
    rest = group == "rest"
    direct = fit_battle_ratings(model_a[rest], model_b[rest], outcome[rest], 6, anchor=4)
    np.testing.assert_allclose(results["rest"].rating, direct.rating)
    assert results["rest"].rating[4] == 1000.0


def test_prompt_scores_rank_responses_consistently_with_the_votes() -> None:
    # Prompt 7: response 30 beats 10 and 20, 20 beats 10. Prompt 8: one comparison, response 5 wins.
    prompt = [7, 7, 7, 8]
    response_a = [10, 30, 20, 5]
    response_b = [30, 20, 10, 6]
    outcome = [B_WINS, A_WINS, A_WINS, A_WINS]
    scores = prompt_response_scores(prompt, response_a, response_b, outcome)
    order = {(p, r): s for p, r, s in zip(scores.prompt, scores.response, scores.score, strict=True)}
    assert order[(7, 30)] > order[(7, 20)] > order[(7, 10)]
    assert np.isfinite(order[(8, 5)]) and order[(8, 5)] > 0 > order[(8, 6)]
    assert order[(8, 5)] == pytest.approx(-order[(8, 6)])
    np.testing.assert_array_equal(scores.battles, [2, 2, 2, 1, 1])
    assert scores.converged


def test_prompt_scores_match_one_regularised_fit_per_prompt() -> None:
    rng = np.random.default_rng(23)
    prompts, sizes = 300, rng.integers(2, 6, 300)
    rows = []
    for prompt_id in range(prompts):
        for _ in range(rng.integers(1, 8)):
            a, b = rng.choice(sizes[prompt_id], 2, replace=False)
            rows.append((prompt_id, a, b, rng.choice([A_WINS, B_WINS, TIE])))
    prompt, response_a, response_b, outcome = (np.array(column) for column in zip(*rows, strict=True))
    scores = prompt_response_scores(prompt, response_a, response_b, outcome, l2=0.1)
    for prompt_id in (0, 1, 17, 299):
        mine = prompt == prompt_id
        responses, local = np.unique(
            np.concatenate([response_a[mine], response_b[mine]]), return_inverse=True
        )
        count = mine.sum()
        direct = fit_battle_ratings(local[:count], local[count:], outcome[mine], responses.size, l2=0.1)
        np.testing.assert_allclose(scores.score[scores.prompt == prompt_id], direct.theta, atol=1e-8)
        np.testing.assert_array_equal(scores.response[scores.prompt == prompt_id], responses)


def test_prompt_scores_handle_a_hundred_thousand_prompts() -> None:
    rng = np.random.default_rng(24)
    battles = 300_000
    prompt = rng.integers(0, 100_000, battles)
    response_a = rng.integers(0, 4, battles)
    response_b = (response_a + rng.integers(1, 4, battles)) % 4
    outcome = rng.integers(0, 4, battles)
    scores = prompt_response_scores(prompt, response_a, response_b, outcome)
    assert scores.converged
    assert np.all(np.isfinite(scores.score))
    totals = np.bincount(np.unique(scores.prompt, return_inverse=True)[1], weights=scores.score)
    np.testing.assert_allclose(totals, 0.0, atol=1e-9)
