"""The leaderboard API: ratings of the project's systems from its human judgments, as JSON or CSV.

Leads and engineers only: annotators must never see which system wrote which response (403), outsiders get
404 and anonymous callers 401, as everywhere else.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api.leaderboard_serializers import LeaderboardInput, LeaderboardOutput, leaderboard_csv_text
from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERRORS
from annotate.services.leaderboard import (
    INTERVALS,
    MAX_ROUNDS,
    METHODS,
    TIE_MODELS,
    WEIGHTINGS,
    leaderboard_get,
)


class LeaderboardCsvRenderer(BaseRenderer):
    """The leaderboard table as CSV (``?format=csv``)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return leaderboard_csv_text(data).encode(self.charset)


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
        # A plain dict, not the QueryDict: DRF reads a QueryDict as an HTML form, where an empty value
        # (``?method=``) means "not given"; here it is a value, and not one of the choices.
        data = LeaderboardInput(data=request.query_params.dict())
        data.is_valid(raise_exception=True)
        board = leaderboard_get(project=project, **data.validated_data)
        if request.accepted_renderer.format == LeaderboardCsvRenderer.format:
            response = Response(board)
            response["Content-Disposition"] = f'attachment; filename="{project.slug}-leaderboard.csv"'
            return response
        return Response(LeaderboardOutput(board).data)

    def options(self, request, *args, **kwargs):
        # The endpoint's description is JSON, whatever ``?format=`` asks the table in.
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
        return super().options(request, *args, **kwargs)

    def handle_exception(self, exc):
        # Errors keep the one JSON error shape, even when the caller asked for CSV.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)
