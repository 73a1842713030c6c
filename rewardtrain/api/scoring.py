"""Scoring over HTTP: score responses, rank best-of-N, start and follow batch scoring jobs, the model's pair
predictions (leads and engineers only; annotators never see them).

    POST /api/reward-models/{id}/score/                        {prompt | messages, responses}
    POST /api/reward-models/{id}/best-of-n/
    POST /api/projects/{project_id}/reward-models/active/score/ (and best-of-n/): the project's active model
    POST /api/reward-models/{id}/scoring-jobs/                 score every response of the project
    GET  /api/scoring-jobs/{id}/
    GET  /api/projects/{project_id}/reward-models/active/pair-predictions/

Engineers and leads (and site admins): annotators 403, outsiders 404, anonymous 401. Score and best-of-N also
take a project API token (``Authorization: Bearer plt_…``) for a model of the token's project or ``active``;
another project's model is 404 to it, and the other endpoints here refuse it (403 ``token_scope``).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.authentication import UserOrProjectApiToken, api_token
from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERROR_RESPONSE, ERRORS
from annotate.selectors import project_role
from rewardtrain.models import RewardModel, ScoringJob
from rewardtrain.services.assisted import pair_predictions
from rewardtrain.services.scoring import (
    reward_model_best_of_n,
    reward_model_for_project,
    reward_model_score,
    scoring_input_check,
    scoring_job_create,
)

UNAVAILABLE = {503: OpenApiResponse(ERROR_RESPONSE, description="No scoring worker answered in time.")}
CONFLICT = {409: OpenApiResponse(ERROR_RESPONSE, description="A job for this model is still pending.")}


class MessageInput(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ScoreInput(serializers.Serializer):
    prompt = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    messages = MessageInput(many=True, required=False, allow_empty=False)
    # An empty response is a response (models produce them); only what is not text is refused.
    responses = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), allow_empty=False
    )


class ModelRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")


class ScoreRowOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the response in the request.")
    raw = serializers.FloatField()
    normalised = serializers.FloatField(
        allow_null=True,
        help_text="(raw - mean) / std over the training run's held-out pairs; null without them.",
    )
    uncertainty = serializers.FloatField(
        allow_null=True,
        help_text="An ensemble's disagreement: the standard deviation of its members' scores (raw units); "
        "null for a single model.",
    )
    win_probability = serializers.FloatField(
        allow_null=True,
        help_text="The calibrated probability that this response is preferred to another of the request, "
        "averaged over the others; null for a single response.",
    )


class RankedRowOutput(ScoreRowOutput):
    rank = serializers.IntegerField(help_text="1 is the best response.")
    response = serializers.CharField()


class ScoreOutput(serializers.Serializer):
    reward_model = ModelRefOutput()
    scores = ScoreRowOutput(many=True)


class BestOfNOutput(serializers.Serializer):
    reward_model = ModelRefOutput()
    ranking = RankedRowOutput(many=True)
    best = serializers.IntegerField(help_text="Index of the best response in the request.")


class ScoringJobOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    reward_model = serializers.IntegerField(source="reward_model_id")
    status = serializers.ChoiceField(choices=ScoringJob.Status.choices)
    scored = serializers.IntegerField()
    total = serializers.IntegerField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class PairPredictionOutput(serializers.Serializer):
    pair = serializers.IntegerField()
    score_a = serializers.FloatField()
    score_b = serializers.FloatField()
    probability_a = serializers.FloatField(
        help_text="Calibrated: sigmoid((score_a - score_b) / the model's temperature)."
    )
    vote_balance = serializers.IntegerField(help_text="Human votes for A minus votes for B.")
    disagrees = serializers.BooleanField()


def _model_for_request(request, model_id: int) -> RewardModel:
    model = RewardModel.objects.select_related("project").filter(pk=model_id).first()
    token = api_token(request)
    if token is not None:
        if model is None or model.project_id != token.project_id:
            raise NotFound("no such reward model")
        return model
    if model is None or project_role(user=request.user, project=model.project) is None:
        raise NotFound("no such reward model")
    project_for_request(request, model.project_id, READERS)
    return model


def _active_model_for_request(request, project_id: int) -> RewardModel:
    token = api_token(request)
    if token is not None:
        if token.project_id != project_id:
            raise NotFound("no such project")
        project = token.project
    else:
        project, _ = project_for_request(request, project_id, READERS)
    return reward_model_for_project(project=project, reference="active")


def _scoring_input(request) -> tuple[str | list[dict[str, str]], list[str]]:
    data = ScoreInput(data=request.data)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    prompt = scoring_input_check(
        prompt=values.get("prompt"), messages=values.get("messages"), responses=values["responses"]
    )
    return prompt, values["responses"]


def _score(request, model: RewardModel) -> Response:
    prompt, responses = _scoring_input(request)
    scores = reward_model_score(reward_model=model, prompt=prompt, responses=responses)
    return Response(ScoreOutput({"reward_model": model, "scores": scores}).data)


def _best_of_n(request, model: RewardModel) -> Response:
    prompt, responses = _scoring_input(request)
    ranking = reward_model_best_of_n(reward_model=model, prompt=prompt, responses=responses)
    return Response(
        BestOfNOutput({"reward_model": model, "ranking": ranking, "best": ranking[0]["index"]}).data
    )


class RewardModelScoreApi(APIView):
    permission_classes = [UserOrProjectApiToken]

    @extend_schema(
        operation_id="reward_models_score",
        request=ScoreInput,
        responses={200: ScoreOutput, **ERRORS, **UNAVAILABLE},
    )
    def post(self, request, model_id: int):
        return _score(request, _model_for_request(request, model_id))


class RewardModelBestOfNApi(APIView):
    permission_classes = [UserOrProjectApiToken]

    @extend_schema(
        operation_id="reward_models_best_of_n",
        request=ScoreInput,
        responses={200: BestOfNOutput, **ERRORS, **UNAVAILABLE},
    )
    def post(self, request, model_id: int):
        return _best_of_n(request, _model_for_request(request, model_id))


class ActiveRewardModelScoreApi(APIView):
    permission_classes = [UserOrProjectApiToken]

    @extend_schema(
        operation_id="reward_models_active_score",
        request=ScoreInput,
        responses={200: ScoreOutput, **ERRORS, **UNAVAILABLE},
    )
    def post(self, request, project_id: int):
        return _score(request, _active_model_for_request(request, project_id))


class ActiveRewardModelBestOfNApi(APIView):
    permission_classes = [UserOrProjectApiToken]

    @extend_schema(
        operation_id="reward_models_active_best_of_n",
        request=ScoreInput,
        responses={200: BestOfNOutput, **ERRORS, **UNAVAILABLE},
    )
    def post(self, request, project_id: int):
        return _best_of_n(request, _active_model_for_request(request, project_id))


class ScoringJobCreateApi(APIView):
    @extend_schema(
        operation_id="scoring_jobs_create",
        request=None,
        responses={
            202: OpenApiResponse(ScoringJobOutput, description="Queued on the gpu queue."),
            **ERRORS,
            **CONFLICT,
        },
    )
    def post(self, request, model_id: int):
        model = _model_for_request(request, model_id)
        job = scoring_job_create(reward_model=model, created_by=request.user)
        return Response(ScoringJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ScoringJobDetailApi(APIView):
    @extend_schema(operation_id="scoring_jobs_retrieve", responses={200: ScoringJobOutput, **ERRORS})
    def get(self, request, job_id: int):
        job = ScoringJob.objects.select_related("project").filter(pk=job_id).first()
        if job is None or project_role(user=request.user, project=job.project) is None:
            raise NotFound("no such scoring job")
        project_for_request(request, job.project_id, READERS)
        return Response(ScoringJobOutput(job).data)


class ActivePairPredictionsApi(APIView):
    @extend_schema(
        operation_id="reward_models_active_pair_predictions",
        responses={200: PairPredictionOutput(many=True), **ERRORS},
    )
    def get(self, request, project_id: int):
        model = _active_model_for_request(request, project_id)
        rows = pair_predictions(project=model.project, reward_model=model)
        return Response(PairPredictionOutput(rows, many=True).data)
