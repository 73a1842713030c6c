"""The annotator's API: next pair, submit, skip, recent judgments and edits.

Annotators never see system names, other annotators' votes or gold answers: the serializers below are
the only place pair content leaves the server for them, and they carry content only.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.permissions import project_for_request
from annotate.api.views import ERRORS
from annotate.models import Judgment, Membership
from annotate.rendering import render_untrusted
from annotate.selectors import annotator_progress
from annotate.services.assignment import (
    NothingLeft,
    ShownPair,
    assignment_skip,
    pair_next_shown,
    project_remaining_pairs,
)
from annotate.services.judgments import (
    RATIONALE_MAX_LENGTH,
    JudgmentInput,
    judgment_edit,
    judgment_submit,
    judgments_recent,
    to_screen_terms,
)

ANNOTATORS = (Membership.Role.ANNOTATOR,)
BIGINT_MAX = 2**63 - 1  # the largest id PostgreSQL stores


class JsonAnswers(DefaultContentNegotiation):
    """Answers in JSON whatever the Accept header says, without parsing it (DRF's negotiation parses the
    header and the query string on every request); request bodies are still read by their content type."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class HotPathApi(APIView):
    """The page's two calls per judgment: JSON only, with no browsable-API renderer to negotiate with."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonAnswers


CONFLICT = {
    409: OpenApiResponse(
        ERRORS[400].response, description="The pair was completed by others, or already judged."
    )
}


class ShownMessageOutput(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()
    content_html = serializers.CharField()


class ShownPromptOutput(serializers.Serializer):
    content = serializers.CharField()
    content_html = serializers.CharField()
    messages = ShownMessageOutput(many=True, allow_null=True)


class ShownSideOutput(serializers.Serializer):
    content = serializers.CharField()
    content_html = serializers.CharField()


class ProgressOutput(serializers.Serializer):
    done_today = serializers.IntegerField()
    done_total = serializers.IntegerField()
    remaining = serializers.IntegerField(
        help_text="Pairs in the project that still need judgments (refreshed every 30 s)."
    )


class NextPairOutput(serializers.Serializer):
    assignment = serializers.IntegerField()
    pair = serializers.IntegerField()
    prompt = ShownPromptOutput()
    left = ShownSideOutput()
    right = ShownSideOutput()
    expires_at = serializers.DateTimeField()
    progress = ProgressOutput()


def _prompt_payload(content: str, messages: list[dict] | None) -> dict:
    shown_messages = None
    if messages is not None:
        shown_messages = [
            {
                "role": message["role"],
                "content": message["content"],
                "content_html": render_untrusted(message["content"]),
            }
            for message in messages
        ]
    return {"content": content, "content_html": render_untrusted(content), "messages": shown_messages}


def _sides(pair, shown_swapped: bool) -> tuple[dict, dict]:
    first, second = (
        (pair.response_b, pair.response_a) if shown_swapped else (pair.response_a, pair.response_b)
    )
    return (
        {"content": first.content, "content_html": render_untrusted(first.content)},
        {"content": second.content, "content_html": render_untrusted(second.content)},
    )


def next_pair_payload(shown: ShownPair, *, remaining: int) -> dict:
    assignment = shown.assignment
    return {
        "assignment": assignment.pk,
        "pair": assignment.pair_id,
        "prompt": _prompt_payload(shown.prompt, shown.messages),
        "left": {"content": shown.left, "content_html": render_untrusted(shown.left)},
        "right": {"content": shown.right, "content_html": render_untrusted(shown.right)},
        "expires_at": assignment.expires_at,
        "progress": {"done_today": shown.done_today, "done_total": shown.done_total, "remaining": remaining},
    }


class NextPairApi(HotPathApi):
    @extend_schema(
        operation_id="pairs_next",
        parameters=[
            OpenApiParameter(
                "after", int, description="the assignment on screen now: answer with another (to fetch ahead)"
            )
        ],
        responses={
            200: NextPairOutput,
            204: OpenApiResponse(description="Nothing left for you; the `Palate-Reason` header says why."),
            **ERRORS,
        },
    )
    def get(self, request, project_id: int):
        after = request.query_params.get("after")
        if after is not None and not (after.isdigit() and int(after) <= BIGINT_MAX):
            raise serializers.ValidationError({"after": ["must be an assignment id"]})
        if project_id > BIGINT_MAX:  # the database would refuse the number itself
            raise NotFound("no such project")
        shown = pair_next_shown(
            project_id=project_id, annotator=request.user, after=int(after) if after else None
        )
        if isinstance(shown, NothingLeft):
            response = Response(status=status.HTTP_204_NO_CONTENT)
            response["Palate-Reason"] = shown.reason
            return response
        # The payload already has NextPairOutput's shape (the schema's and the tests'): this endpoint
        # answers every few seconds per annotator, so it skips re-serialising it field by field.
        remaining = project_remaining_pairs(project_id=project_id, overlap=shown.overlap)
        return Response(next_pair_payload(shown, remaining=remaining))


class AnnotatorProgressOutput(serializers.Serializer):
    remaining_for_you = serializers.IntegerField(
        help_text="Pairs that still need judgments and that you have neither judged nor skipped."
    )
    done_total = serializers.IntegerField(help_text="Judgments you have submitted in the project.")


class AnnotatorProgressApi(APIView):
    """The annotator's own progress, counted on request: the annotate page asks once when it opens and
    takes its own judgments off since (``next`` stays free of counts over the project)."""

    @extend_schema(operation_id="progress_mine", responses={200: AnnotatorProgressOutput, **ERRORS})
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, ANNOTATORS)
        return Response(annotator_progress(project=project, annotator=request.user))


SCREEN_CHOICES = ("left", "right", "tie", "both_bad")
MAX_DURATION_MS = 24 * 3600 * 1000


class JudgmentInputSerializer(serializers.Serializer):
    """A judgment's shape; whether it fits the project's configuration is the service's to say."""

    choice = serializers.ChoiceField(choices=SCREEN_CHOICES)
    strength = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=32767)
    criteria = serializers.DictField(child=serializers.CharField(), required=False)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=RATIONALE_MAX_LENGTH)
    duration_ms = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_DURATION_MS
    )

    def validate_criteria(self, criteria: dict[str, str]) -> dict[str, str]:
        for name in criteria:
            if not name or len(name) > 100 or "\x00" in name:
                raise serializers.ValidationError(f"{name[:100]!r} is not a criterion name")
        return criteria


def judgment_input(validated: dict) -> JudgmentInput:
    return JudgmentInput(
        choice=validated["choice"],
        strength=validated.get("strength"),
        criteria=validated.get("criteria"),
        rationale=validated.get("rationale", ""),
        duration_ms=validated.get("duration_ms"),
    )


class JudgmentSubmitInput(JudgmentInputSerializer):
    assignment = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX)


# The submit's input is checked by one long-lived instance: run_validation keeps no state on it, and DRF
# builds a serializer's fields anew for each instance, which cost more than the rest of the check.
SUBMIT_INPUT = JudgmentSubmitInput()


class JudgmentOutput(serializers.Serializer):
    """A judgment in the terms its annotator saw it (left/right)."""

    id = serializers.IntegerField()
    assignment = serializers.IntegerField(allow_null=True)
    pair = serializers.IntegerField()
    choice = serializers.CharField()
    strength = serializers.IntegerField(allow_null=True)
    criteria = serializers.DictField(child=serializers.CharField())
    rationale = serializers.CharField()
    duration_ms = serializers.IntegerField(allow_null=True)
    revision = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def judgment_payload(judgment: Judgment) -> dict:
    swapped = judgment.shown_swapped
    return {
        "id": judgment.pk,
        "assignment": judgment.assignment_id,
        "pair": judgment.pair_id,
        "choice": to_screen_terms(judgment.choice, shown_swapped=swapped),
        "strength": judgment.strength,
        "criteria": {
            name: to_screen_terms(value, shown_swapped=swapped) for name, value in judgment.criteria.items()
        },
        "rationale": judgment.rationale,
        "duration_ms": judgment.duration_ms,
        "revision": judgment.revision,
        "created_at": judgment.created_at,
        "updated_at": judgment.updated_at,
    }


class JudgmentSubmitApi(HotPathApi):
    @extend_schema(
        operation_id="judgments_create",
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                description="any unique string per judgment: a retried submit returns the first result",
            )
        ],
        request=JudgmentSubmitInput,
        responses={201: JudgmentOutput, 200: JudgmentOutput, **ERRORS, **CONFLICT},
    )
    def post(self, request):
        # A JSON null body is answered as an empty one: each required field is named.
        validated = SUBMIT_INPUT.run_validation({} if request.data is None else request.data)
        judgment, created = judgment_submit(
            assignment_id=validated["assignment"],
            annotator=request.user,
            data=judgment_input(validated),
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        return Response(  # judgment_payload has JudgmentOutput's shape (see NextPairApi)
            judgment_payload(judgment), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class JudgmentEditApi(APIView):
    @extend_schema(
        operation_id="judgments_update",
        request=JudgmentInputSerializer,
        responses={200: JudgmentOutput, **ERRORS, **CONFLICT},
    )
    def patch(self, request, judgment_id: int):
        data = JudgmentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        judgment = judgment_edit(
            judgment_id=judgment_id, annotator=request.user, data=judgment_input(data.validated_data)
        )
        return Response(JudgmentOutput(judgment_payload(judgment)).data)


class SkipInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class AssignmentSkipApi(APIView):
    @extend_schema(
        operation_id="assignments_skip", request=SkipInput, responses={204: None, **ERRORS, **CONFLICT}
    )
    def post(self, request, assignment_id: int):
        data = SkipInput(data=request.data)
        data.is_valid(raise_exception=True)
        assignment_skip(
            assignment_id=assignment_id, annotator=request.user, reason=data.validated_data.get("reason", "")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecentJudgmentOutput(JudgmentOutput):
    prompt = ShownPromptOutput()
    left = ShownSideOutput()
    right = ShownSideOutput()


class RecentJudgmentsApi(APIView):
    @extend_schema(
        operation_id="judgments_recent", responses={200: RecentJudgmentOutput(many=True), **ERRORS}
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, ANNOTATORS)
        items = []
        for judgment in judgments_recent(project=project, annotator=request.user):
            left, right = _sides(judgment.pair, judgment.shown_swapped)
            items.append(
                {
                    **judgment_payload(judgment),
                    "prompt": _prompt_payload(judgment.pair.prompt.content, judgment.pair.prompt.messages),
                    "left": left,
                    "right": right,
                }
            )
        return Response(RecentJudgmentOutput(items, many=True).data)
