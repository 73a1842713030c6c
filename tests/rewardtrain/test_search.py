"""The search's choices on plain records (rewardtrain/training/search.py): its settings, Optuna's suggestions,
the median pruner and the best trial. No database, no torch."""

from __future__ import annotations

import pytest

from rewardtrain.training.errors import ConfigError
from rewardtrain.training.search import (
    SearchConfig,
    TrialRecord,
    trial_best,
    trial_ranked,
    trial_should_prune,
    trial_suggest,
)


def test_the_search_settings_take_defaults_and_name_each_bad_field():
    search = SearchConfig.from_dict({})
    assert (search.trials, search.parallel, search.metric, search.time_budget_seconds) == (
        8,
        2,
        "accuracy",
        None,
    )
    assert [d.name for d in search.dimensions(use_lora=False)] == [
        "learning_rate",
        "num_epochs",
        "warmup_ratio",
        "weight_decay",
        "center_rewards_coefficient",
    ]
    with pytest.raises(ConfigError) as caught:
        SearchConfig.from_dict(
            {
                "trials": 0,
                "metric": "f1",
                "colour": "red",
                "space": {
                    "learning_rate": [0.0, 1e-3],
                    "num_epochs": [1.5, 2],
                    "warmup_ratio": [0.3, 0.1],
                    "batch_size": [4, 8],
                    "weight_decay": "small",
                },
            }
        )
    assert set(caught.value.errors) == {
        "trials",
        "metric",
        "colour",
        "space.learning_rate",
        "space.num_epochs",
        "space.warmup_ratio",
        "space.batch_size",
        "space.weight_decay",
    }
    assert (
        "log scale" in caught.value.errors["space.learning_rate"]
        or "> 0" in caught.value.errors["space.learning_rate"]
    )
    assert "not searchable" in caught.value.errors["space.batch_size"]
    with pytest.raises(ConfigError) as caught:
        SearchConfig.from_dict({"space": {"num_epochs": [1, 10**400]}, "trials": 10**400})
    assert set(caught.value.errors) == {"space.num_epochs", "trials"}
    with pytest.raises(ConfigError) as caught:
        SearchConfig.from_dict([1, 2])
    assert caught.value.errors == {"search": "must be a JSON object"}


def test_suggestions_stay_in_the_space_leave_out_what_is_not_searched_and_search_lora_rank_only_with_lora():
    search = SearchConfig.from_dict(
        {"trials": 6, "space": {"learning_rate": [1e-5, 1e-4], "num_epochs": [1, 2], "weight_decay": None}}
    )
    records: list[TrialRecord] = []
    for number in range(6):
        params = trial_suggest(search, records, use_lora=number % 2 == 1)
        assert 1e-5 <= params["learning_rate"] <= 1e-4 and params["num_epochs"] in (1, 2)
        assert "weight_decay" not in params
        assert ("lora_r" in params) == (number % 2 == 1)
        if "lora_r" in params:
            assert 4 <= params["lora_r"] <= 64 and isinstance(params["lora_r"], int)
        records.append(TrialRecord(number, params, "complete", 0.5 + 0.05 * number, {}))
    # Seeded by the search's seed and the trial's number: the same history gives the same suggestion.
    assert trial_suggest(search, records, use_lora=False) == trial_suggest(search, records, use_lora=False)


def _finished(number: int, figures: dict[int, float]) -> TrialRecord:
    return TrialRecord(number, {"learning_rate": 5e-5}, "complete", figures[max(figures)], figures)


def test_the_median_pruner_stops_a_trial_worse_than_the_finished_ones_at_the_same_step():
    search = SearchConfig.from_dict({"prune_after_trials": 2})
    finished = [_finished(0, {10: 0.80, 20: 0.85}), _finished(1, {10: 0.70, 20: 0.90})]
    bad = TrialRecord(2, {"learning_rate": 1e-5}, "running", None, {10: 0.55})
    good = TrialRecord(3, {"learning_rate": 1e-4}, "running", None, {10: 0.82})
    assert trial_should_prune(search, finished, bad, use_lora=False)
    assert not trial_should_prune(search, finished, good, use_lora=False)
    # Before two trials finished the pruner waits; with loss as the metric lower is better.
    assert not trial_should_prune(search, finished[:1], bad, use_lora=False)
    by_loss = SearchConfig.from_dict({"metric": "loss", "prune_after_trials": 2})
    assert not trial_should_prune(by_loss, finished, bad, use_lora=False)
    assert trial_should_prune(by_loss, finished, good, use_lora=False)


def test_the_best_trial_is_the_complete_one_with_the_best_validation_metric():
    records = [
        TrialRecord(0, {}, "complete", 0.70),
        TrialRecord(1, {}, "pruned", 0.95),
        TrialRecord(2, {}, "complete", 0.80),
        TrialRecord(3, {}, "failed", None),
        TrialRecord(4, {}, "complete", 0.80),
    ]
    assert trial_best(SearchConfig(), records).number == 2
    assert trial_best(SearchConfig(metric="loss"), records).number == 0
    assert trial_best(SearchConfig(), records[1:2]) is None
    # An ensemble of the best k takes the complete trials in that order.
    assert [record.number for record in trial_ranked(SearchConfig(), records)] == [2, 4, 0]
    assert [record.number for record in trial_ranked(SearchConfig(metric="loss"), records)] == [0, 2, 4]


def test_ensemble_top_k_is_one_by_default_and_at_most_the_trials():
    assert SearchConfig.from_dict({}).ensemble_top_k == 1
    assert SearchConfig.from_dict({"trials": 3, "ensemble_top_k": 3}).to_dict()["ensemble_top_k"] == 3
    with pytest.raises(ConfigError) as caught:
        SearchConfig.from_dict({"trials": 3, "ensemble_top_k": 4})
    assert caught.value.errors == {"ensemble_top_k": "must not exceed the trials (3), got 4"}
    with pytest.raises(ConfigError) as caught:
        SearchConfig.from_dict({"ensemble_top_k": 0})
    assert "ensemble_top_k" in caught.value.errors
