"""The leaderboard's input and output: the API's contract, and the JSON and CSV the leaderboard page offers
for download, so both give the same shape."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from annotate.services.leaderboard import (
    CSV_COLUMNS,
    INTERVALS,
    MAX_ROUNDS,
    METHODS,
    TIE_MODELS,
    WEIGHTINGS,
)
from palate.safe_csv import csv_text


def leaderboard_csv_text(board: dict[str, Any]) -> str:
    """The leaderboard's table as CSV, header first; system names cannot run as spreadsheet formulas."""
    return csv_text([CSV_COLUMNS, *([row[column] for column in CSV_COLUMNS] for row in board["rows"])])


class LeaderboardInput(serializers.Serializer):
    method = serializers.ChoiceField(choices=METHODS, default="bt")
    criterion = serializers.CharField(required=False, allow_blank=True, max_length=200)
    group = serializers.CharField(required=False, allow_blank=True, max_length=400)
    category = serializers.CharField(required=False, allow_blank=True, max_length=100)
    interval = serializers.ChoiceField(choices=INTERVALS, required=False)
    rounds = serializers.IntegerField(min_value=1, max_value=MAX_ROUNDS, required=False)
    ties = serializers.ChoiceField(choices=TIE_MODELS, default="half")
    anchor = serializers.CharField(required=False, allow_blank=True, max_length=200)
    weighting = serializers.ChoiceField(choices=WEIGHTINGS, default="none")
    split_by = serializers.CharField(required=False, allow_blank=True, max_length=200)


class LeaderboardRowOutput(serializers.Serializer):
    rank = serializers.IntegerField(
        help_text="1 + the number of systems whose lower bound is above this upper bound."
    )
    system = serializers.CharField()
    rating = serializers.FloatField(help_text="Elo scale: 1000 is the mean (or the anchor).")
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    battles = serializers.IntegerField()
    win_rate = serializers.FloatField(help_text="Share of its battles won, a tie counting half.")
    crowd_bt_rating = serializers.FloatField(
        help_text="Votes weighted by each annotator's estimated reliability."
    )
    crowd_bt_lower = serializers.FloatField()
    crowd_bt_upper = serializers.FloatField()
    crowd_bt_rank = serializers.IntegerField()


class LeaderboardOptionsOutput(serializers.Serializer):
    method = serializers.CharField()
    criterion = serializers.CharField(allow_null=True)
    group = serializers.CharField(allow_null=True)
    category = serializers.CharField(allow_null=True)
    interval = serializers.CharField()
    rounds = serializers.IntegerField()
    ties = serializers.CharField()
    anchor = serializers.CharField(allow_null=True)
    weighting = serializers.CharField()
    split_by = serializers.CharField(allow_null=True)
    confidence = serializers.FloatField()


class RatingSeriesOutput(serializers.Serializer):
    system = serializers.CharField()
    rating = serializers.ListField(child=serializers.FloatField())


class RatingOverTimeOutput(serializers.Serializer):
    judgments = serializers.ListField(child=serializers.IntegerField(), help_text="Judgments counted so far.")
    at = serializers.ListField(
        child=serializers.CharField(allow_null=True), help_text="When that judgment was made."
    )
    series = RatingSeriesOutput(many=True)


class CrowdBtSummaryOutput(serializers.Serializer):
    annotators = serializers.IntegerField()
    converged = serializers.BooleanField()
    mean_reliability = serializers.FloatField(allow_null=True)


class GroupRatingOutput(serializers.Serializer):
    rating = serializers.FloatField()
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    rank = serializers.IntegerField()
    battles = serializers.IntegerField()


class GroupLeaderboardOutput(serializers.Serializer):
    group = serializers.CharField()
    judgments = serializers.IntegerField()
    annotators = serializers.IntegerField()
    ratings = serializers.DictField(child=GroupRatingOutput(), help_text="By system.")
    warnings = serializers.ListField(child=serializers.CharField())


class ByGroupOutput(serializers.Serializer):
    key = serializers.CharField()
    groups = GroupLeaderboardOutput(many=True)


class LeaderboardFiltersOutput(serializers.Serializer):
    criteria = serializers.ListField(child=serializers.CharField())
    groups = serializers.ListField(child=serializers.CharField())
    group_keys = serializers.ListField(child=serializers.CharField())
    categories = serializers.ListField(child=serializers.CharField())
    systems = serializers.ListField(child=serializers.CharField())


class LeaderboardOutput(serializers.Serializer):
    computed_at = serializers.CharField()
    options = LeaderboardOptionsOutput()
    both_bad_as_tie = serializers.BooleanField()
    judgments = serializers.IntegerField(help_text="Human judgments rated.")
    skipped = serializers.DictField(
        child=serializers.IntegerField(), help_text="Judgments left out, by reason."
    )
    rows = LeaderboardRowOutput(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    systems = serializers.ListField(
        child=serializers.CharField(), help_text="Row and column order of the matrices."
    )
    observed_win_rate = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Row system's share of wins against the column system (null: they never met).",
    )
    predicted_win_rate = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))
    battle_matrix = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))
    over_time = RatingOverTimeOutput(help_text="Online Elo, sampled at up to 200 moments.")
    crowd_bt = CrowdBtSummaryOutput(allow_null=True)
    tie_parameter = serializers.FloatField(allow_null=True, help_text="Davidson's nu (ties=davidson).")
    by_group = ByGroupOutput(allow_null=True, help_text="One leaderboard per value of `split_by`.")
    filters = LeaderboardFiltersOutput()
