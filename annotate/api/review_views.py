"""Flags, adjudication and an annotator's own history over HTTP: annotators flag the pair of their lease and
read their judgments; leads list flags, dismiss them and settle pairs. One view per operation."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api.permissions import LEADS, project_for_request
from annotate.api.views import ERROR_RESPONSE, ERRORS
from annotate.api.workspace_views import ANNOTATORS, CONFLICT, JudgmentOutput, judgment_payload
from annotate.models import Choice, PairFlag
from annotate.selectors import judgment_history, pair_flag_list, pair_for_lead
from annotate.services.adjudication import NOTE_MAX_LENGTH, pair_adjudicate
from annotate.services.flags import FLAG_TEXT_MAX_LENGTH, pair_flag_create, pair_flag_dismiss
from annotate.services.judgments import judgment_editable_since
from palate.errors import ApplicationError

PROMPT_EXCERPT_CHARS = 160
FLAG_STATES = ("open", "closed", "all")


def prompt_excerpt(content: str) -> str:
    """The start of a prompt on one line, for lists."""
    text = " ".join((content or "").split())
    if len(text) > PROMPT_EXCERPT_CHARS:
        text = text[: PROMPT_EXCERPT_CHARS - 1].rstrip() + "…"
    return text


class FlagInput(serializers.Serializer):
    category = serializers.ChoiceField(choices=PairFlag.Category.values)
    text = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=FLAG_TEXT_MAX_LENGTH,
        help_text="What is wrong; required for the category 'other'.",
    )


class PairFlagOutput(serializers.Serializer):
    id = serializers.IntegerField()
    pair = serializers.IntegerField(source="pair_id")
    category = serializers.ChoiceField(choices=PairFlag.Category.values)
    text = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolution = serializers.ChoiceField(
        choices=["", "settled", "dismissed"], help_text="Empty while the flag is open."
    )
    resolved_at = serializers.DateTimeField(allow_null=True)


class ProjectPairFlagOutput(PairFlagOutput):
    annotator = serializers.CharField(source="annotator.username")
    prompt = serializers.SerializerMethodField(help_text="The start of the pair's prompt.")
    resolved_by = serializers.CharField(source="resolved_by.username", allow_null=True, default=None)

    def get_prompt(self, flag: PairFlag) -> str:
        return prompt_excerpt(flag.pair.prompt.content)


class AssignmentFlagApi(APIView):
    @extend_schema(
        operation_id="assignments_flag",
        description="Reports a problem with the pair of your lease and skips it for you; the project's leads "
        "see the flag. A retried request answers 200 with the flag it made.",
        request=FlagInput,
        responses={201: PairFlagOutput, 200: PairFlagOutput, **ERRORS, **CONFLICT},
    )
    def post(self, request, assignment_id: int):
        data = FlagInput(data=request.data)
        data.is_valid(raise_exception=True)
        flag, created = pair_flag_create(
            assignment_id=assignment_id,
            annotator=request.user,
            category=data.validated_data["category"],
            text=data.validated_data.get("text", ""),
        )
        return Response(
            PairFlagOutput(flag).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ProjectFlagsApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="flags_list",
        parameters=[
            OpenApiParameter("state", str, enum=list(FLAG_STATES), description="default open; newest first")
        ],
        responses={200: ProjectPairFlagOutput(many=True), **ERRORS},
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        state = request.query_params.get("state", "open")
        if state not in FLAG_STATES:
            message = f"must be one of {', '.join(FLAG_STATES)}"
            raise ApplicationError(f"state: {message}", fields={"state": [message]})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(pair_flag_list(project=project, state=state), request, view=self)
        return paginator.get_paginated_response(ProjectPairFlagOutput(page, many=True).data)


class FlagDismissApi(APIView):
    @extend_schema(
        operation_id="flags_dismiss",
        description="Closes one flag without settling its pair. A flag already closed is a 409.",
        request=None,
        responses={
            200: ProjectPairFlagOutput,
            **ERRORS,
            409: OpenApiResponse(ERROR_RESPONSE, description="The flag is already closed."),
        },
    )
    def post(self, request, project_id: int, flag_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        flag = pair_flag_dismiss(flag_id=flag_id, project=project, dismissed_by=request.user)
        return Response(ProjectPairFlagOutput(flag).data)


class AdjudicationInput(serializers.Serializer):
    label = serializers.ChoiceField(choices=Choice.choices, help_text="In the pair's A/B terms.")
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH, help_text="Why, for the record."
    )


class AdjudicationOutput(serializers.Serializer):
    pair = serializers.IntegerField(source="pair_id")
    label = serializers.ChoiceField(choices=Choice.choices)
    note = serializers.CharField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    decided_at = serializers.DateTimeField()


class PairAdjudicationApi(APIView):
    @extend_schema(
        operation_id="pairs_adjudication_retrieve",
        responses={
            200: AdjudicationOutput,
            **ERRORS,
            404: OpenApiResponse(ERROR_RESPONSE, description="No such pair, or it is not settled."),
        },
    )
    def get(self, request, project_id: int, pair_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        pair = pair_for_lead(project=project, pair_id=pair_id)
        adjudication = getattr(pair, "adjudication", None)
        if adjudication is None:
            raise ApplicationError("this pair is not settled", code="not_found", http_status=404)
        return Response(AdjudicationOutput(adjudication).data)

    @extend_schema(
        operation_id="pairs_adjudicate",
        description="Settles the pair with a final label and a note (replacing an earlier one) and closes "
        "its open flags. Exports use the label when their policy's use_adjudicated is on.",
        request=AdjudicationInput,
        responses={200: AdjudicationOutput, **ERRORS},
    )
    def put(self, request, project_id: int, pair_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        data = AdjudicationInput(data=request.data)
        data.is_valid(raise_exception=True)
        adjudication = pair_adjudicate(
            pair=pair_for_lead(project=project, pair_id=pair_id),
            label=data.validated_data["label"],
            note=data.validated_data.get("note", ""),
            decided_by=request.user,
        )
        return Response(AdjudicationOutput(adjudication).data)


class HistoryJudgmentOutput(JudgmentOutput):
    prompt = serializers.CharField(help_text="The start of the prompt.")
    editable = serializers.BooleanField(help_text="Still inside the project's edit window.")


class JudgmentHistoryApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="judgments_mine",
        description="Your own judgments in the project, newest first, in the left/right terms you saw them.",
        responses={200: HistoryJudgmentOutput(many=True), **ERRORS},
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, ANNOTATORS)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            judgment_history(project=project, annotator=request.user), request, view=self
        )
        since = judgment_editable_since(project=project)
        items = [
            {
                **judgment_payload(judgment),
                "prompt": prompt_excerpt(judgment.pair.prompt.content),
                "editable": judgment.created_at >= since,
            }
            for judgment in page
        ]
        return paginator.get_paginated_response(HistoryJudgmentOutput(items, many=True).data)
