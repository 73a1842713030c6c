"""The audit's arithmetic against reference values (statsmodels' Wilson interval)."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from generation.stats import best_of_n_kl_bound, rising_until, wilson_interval


def test_the_kl_bound_is_zero_for_one_sample_and_grows_like_log_n():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl_bound(16) == pytest.approx(math.log(16) - 15 / 16)


@pytest.mark.parametrize(("wins", "total"), [(0, 5), (3, 10), (17, 20), (50, 50), (1, 1)])
def test_the_wilson_interval_matches_statsmodels(wins, total):
    low, high = wilson_interval(wins, total)
    expected = proportion_confint(wins, total, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx(expected, abs=1e-9)


def test_an_empty_sample_says_nothing():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_win_rate_stops_rising_where_the_next_value_is_no_higher():
    assert rising_until([1, 2, 4, 8], [0.5, 0.6, 0.7, 0.65]) == 4
    assert rising_until([1, 2, 4], [0.5, 0.55, 0.6]) == 4
    assert rising_until([1, 2, 4], [0.5, None, 0.4]) == 1
    assert rising_until([1, 2], [None, None]) is None


@pytest.mark.parametrize(("wins", "total"), [(0, 6), (6, 6), (0.5, 7), (3, 3)])
def test_the_share_always_lies_within_its_interval(wins, total):
    low, high = wilson_interval(wins, total)
    assert 0.0 <= low <= wins / total <= high <= 1.0
