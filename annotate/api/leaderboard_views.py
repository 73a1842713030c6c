"""The leaderboard API: ratings of the project's systems from its human judgments, as JSON or CSV.

Leads and engineers only: annotators must never see which system wrote which response (403), outsiders get
404 and anonymous callers 401, as everywhere else.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERRORS
from annotate.services.leaderboard import (
    INTERVALS,
    MAX_ROUNDS,
    METHODS,
    TIE_MODELS,
    WEIGHTINGS,
    leaderboard_csv_text,
    leaderboard_get,
)


class LeaderboardCsvRenderer(BaseRenderer):
    """The leaderboard table as CSV (``?format=csv``)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return leaderboard_csv_text(data).encode(self.charset)


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


class ProjectLeaderboardApi(APIView):
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, LeaderboardCsvRenderer]

    @extend_schema(
        operation_id="leaderboard_retrieve",
        parameters=[
            OpenApiParameter(
                "method", str, enum=list(METHODS), description="`bt` (default) or `elo` (online Elo)."
            ),
            OpenApiParameter(
                "criterion", str, description="Rate one criterion (default: the overall choice)."
            ),
            OpenApiParameter(
                "group", str, description="Only annotators with this attribute, e.g. `locale=fr-FR`."
            ),
            OpenApiParameter("category", str, description="Only prompts of this category."),
            OpenApiParameter(
                "interval",
                str,
                enum=list(INTERVALS),
                description="`sandwich` (default for bt) or `bootstrap` (default and only choice for elo).",
            ),
            OpenApiParameter("rounds", int, description=f"Bootstrap rounds, 1 to {MAX_ROUNDS:,}."),
            OpenApiParameter(
                "ties", str, enum=list(TIE_MODELS), description="`half` (default) or `davidson`."
            ),
            OpenApiParameter("anchor", str, description="A system pinned at 1000."),
            OpenApiParameter(
                "weighting",
                str,
                enum=list(WEIGHTINGS),
                description="`crowd_bt` ranks by the Crowd-BT ratings.",
            ),
            OpenApiParameter(
                "split_by", str, description="An annotator attribute: one leaderboard per value."
            ),
        ],
        responses={
            (200, "application/json"): LeaderboardOutput,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="The table, with `?format=csv`."
            ),
            **ERRORS,
        },
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        data = LeaderboardInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        board = leaderboard_get(project=project, **data.validated_data)
        if request.accepted_renderer.format == LeaderboardCsvRenderer.format:
            response = Response(board)
            response["Content-Disposition"] = f'attachment; filename="{project.slug}-leaderboard.csv"'
            return response
        return Response(LeaderboardOutput(board).data)

    def handle_exception(self, exc):
        # Errors keep the one JSON error shape, even when the caller asked for CSV.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)
