"""The agreement API: the quality dashboard's figures (the latest snapshot) and a way to ask for a refresh.

Leads and engineers only; annotators get 403, outsiders 404 and anonymous callers 401, as everywhere else.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERRORS
from annotate.models import Choice
from annotate.services.agreement import (
    agreement_figures,
    agreement_refresh_request,
    agreement_snapshot_current,
)


class AlphaOutput(serializers.Serializer):
    estimate = serializers.FloatField(allow_null=True, help_text="Krippendorff's alpha; null when undefined.")
    low = serializers.FloatField(allow_null=True, help_text="Lower end of the bootstrap interval over pairs.")
    high = serializers.FloatField(allow_null=True)
    confidence = serializers.FloatField()
    rounds = serializers.IntegerField(help_text="Bootstrap rounds.")
    judgments = serializers.IntegerField(help_text="Judgments with a value at this level.")


class AlphaLevelsOutput(serializers.Serializer):
    nominal = AlphaOutput(help_text="Over the choices a, b, tie, both_bad.")
    ordinal = AlphaOutput(
        allow_null=True, help_text="Over the signed strength -N..+N (tie 0); null when off."
    )
    interval = AlphaOutput(allow_null=True, help_text="Over the signed strength; null when strength is off.")


class SummaryOutput(serializers.Serializer):
    judgments = serializers.IntegerField(help_text="Annotators' judgments (imported labels are left out).")
    pairs = serializers.IntegerField(help_text="Pairs with at least one judgment.")
    annotators = serializers.IntegerField()
    pairs_with_overlap = serializers.IntegerField(help_text="Pairs with two or more judgments.")
    strength_scale = serializers.IntegerField()
    overlap = serializers.IntegerField()


class CriterionOutput(serializers.Serializer):
    name = serializers.CharField()
    alpha = serializers.FloatField(allow_null=True)
    judgments = serializers.IntegerField()


class FleissOutput(serializers.Serializer):
    kappa = serializers.FloatField(allow_null=True)
    pairs = serializers.IntegerField(help_text="Pairs with exactly `raters` judgments (the full overlap).")
    raters = serializers.IntegerField()


class KappaOutput(serializers.Serializer):
    annotators = serializers.ListField(child=serializers.CharField(), help_text="Row and column order.")
    matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Cohen's kappa per annotator pair; null on the diagonal and below `min_shared` shared pairs.",
    )
    shared = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))
    min_shared = serializers.IntegerField()


class AnnotatorOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    judgments = serializers.IntegerField()
    agreement = serializers.FloatField(
        allow_null=True, help_text="Share matching the majority of the other annotators."
    )
    agreement_scored = serializers.IntegerField(help_text="Judgments where the others had a clear majority.")
    gold_accuracy = serializers.FloatField(allow_null=True)
    gold_judgments = serializers.IntegerField()
    left_share = serializers.FloatField(
        allow_null=True, help_text="Share of A/B choices that picked the response shown left."
    )
    sided_judgments = serializers.IntegerField()
    position_p_value = serializers.FloatField(allow_null=True, help_text="Binomial test of left = 1/2.")
    tie_rate = serializers.FloatField(allow_null=True)
    both_bad_rate = serializers.FloatField(allow_null=True)
    median_seconds = serializers.FloatField(allow_null=True)
    active_days = serializers.IntegerField()
    per_day = serializers.FloatField(allow_null=True, help_text="Judgments per active day.")
    recent_agreement = serializers.FloatField(
        allow_null=True, help_text="Agreement over the last 50 scored judgments."
    )
    drift = serializers.FloatField(allow_null=True, help_text="recent_agreement - agreement.")
    flags = serializers.ListField(child=serializers.CharField(), help_text="gold_accuracy, position_bias.")


class GroupValueOutput(serializers.Serializer):
    value = serializers.CharField()
    alpha = serializers.FloatField(allow_null=True)
    annotators = serializers.IntegerField()
    judgments = serializers.IntegerField()


class GroupOutput(serializers.Serializer):
    attribute = serializers.CharField(help_text="A membership attribute, e.g. locale.")
    between = serializers.FloatField(
        allow_null=True, help_text="Alpha over pairs of votes from different groups."
    )
    groups = GroupValueOutput(many=True)


class ContestedPairOutput(serializers.Serializer):
    pair_id = serializers.IntegerField()
    external_id = serializers.CharField()
    prompt = serializers.CharField(help_text="The start of the prompt.")
    entropy = serializers.FloatField(help_text="Vote entropy in bits (0 = unanimous).")
    votes = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Votes per choice.")
    adjudicated = serializers.ChoiceField(
        choices=Choice.choices, allow_null=True, help_text="The label a lead settled, if any."
    )


class OverTimePointOutput(serializers.Serializer):
    period = serializers.DateField(help_text="First day of the period.")
    alpha = serializers.FloatField(allow_null=True, help_text="Alpha over every judgment up to its end.")
    judgments = serializers.IntegerField()


class OverTimeOutput(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=["day", "week", "month"])
    points = OverTimePointOutput(many=True)


class ThresholdsOutput(serializers.Serializer):
    target_alpha = serializers.FloatField()
    min_gold_accuracy = serializers.FloatField()
    max_position_bias = serializers.FloatField()


class FlagOutput(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["alpha_undefined", "alpha_below_target", "gold_accuracy", "position_bias"]
    )
    message = serializers.CharField()
    annotator = serializers.CharField(required=False)


class AdjudicationSummaryOutput(serializers.Serializer):
    pairs = serializers.IntegerField(help_text="Pairs a lead settled with a final label.")
    open_flags = serializers.IntegerField(help_text="Annotators' flags not yet settled or dismissed.")


class TrainingGateOutput(serializers.Serializer):
    ok = serializers.BooleanField(help_text="False while any threshold is breached.")
    reasons = serializers.ListField(child=serializers.CharField())


class AgreementOutput(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    judgment_count = serializers.IntegerField(help_text="Human judgments when the snapshot was taken.")
    last_judgment_at = serializers.DateTimeField(allow_null=True)
    seconds = serializers.FloatField(help_text="How long the computation took.")
    summary = SummaryOutput()
    alpha = AlphaLevelsOutput()
    criteria = CriterionOutput(many=True)
    percent_agreement = serializers.FloatField(allow_null=True)
    fleiss = FleissOutput()
    kappa = KappaOutput()
    annotators = AnnotatorOutput(many=True)
    groups = GroupOutput(many=True)
    contested = ContestedPairOutput(many=True)
    over_time = OverTimeOutput()
    thresholds = ThresholdsOutput()
    flags = FlagOutput(many=True)
    training_gate = TrainingGateOutput()
    adjudication = AdjudicationSummaryOutput()


class AgreementRefreshOutput(serializers.Serializer):
    queued = serializers.BooleanField(
        help_text="False when the latest snapshot already covers every judgment."
    )
    message = serializers.CharField()


class ProjectAgreementApi(APIView):
    @extend_schema(
        operation_id="agreement_retrieve",
        description="The latest agreement snapshot (computed now when the project has none yet), with flags "
        "and the training gate against the project's current thresholds.",
        responses={200: AgreementOutput, **ERRORS},
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        snapshot = agreement_snapshot_current(project=project)
        return Response(AgreementOutput(agreement_figures(snapshot=snapshot, project=project)).data)


class ProjectAgreementRefreshApi(APIView):
    @extend_schema(
        operation_id="agreement_refresh",
        request=None,
        responses={
            202: OpenApiResponse(AgreementRefreshOutput, description="Queued, or nothing to do."),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        queued = agreement_refresh_request(project=project)
        message = (
            "A refresh is queued; the figures update in a moment."
            if queued
            else "The figures already cover every judgment."
        )
        return Response({"queued": queued, "message": message}, status=status.HTTP_202_ACCEPTED)
