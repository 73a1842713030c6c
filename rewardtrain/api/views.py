"""Training runs and reward models over HTTP: start a run (a gpu Celery job), follow it, cancel it, list
runs and models, make a model the project's active one.

Engineers and leads (and site admins) only: annotators get 403, outsiders 404, anonymous callers 401.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERRORS
from annotate.selectors import project_role
from rewardtrain.api.serializers import (
    RewardModelOutput,
    TrainingRunCreateInput,
    TrainingRunOutput,
    TrainingRunSummaryOutput,
)
from rewardtrain.models import RewardModel, TrainingRun
from rewardtrain.services.runs import reward_model_activate, training_run_cancel, training_run_create

CONFLICT = {409: OpenApiResponse(ERRORS[400].response, description="The run has already finished.")}


def _run_for_request(request, run_id: int) -> TrainingRun:
    run = (
        TrainingRun.objects.select_related("project", "created_by", "reward_model")
        .prefetch_related("trials")
        .filter(pk=run_id)
        .first()
    )
    if run is None or project_role(user=request.user, project=run.project) is None:
        raise NotFound("no such training run")
    project_for_request(request, run.project_id, READERS)
    return run


class ProjectTrainingRunsApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="training_runs_list", responses={200: TrainingRunSummaryOutput(many=True), **ERRORS}
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        runs = TrainingRun.objects.filter(project=project).select_related("created_by", "reward_model")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(runs.order_by("-created_at", "-id"), request, view=self)
        return paginator.get_paginated_response(TrainingRunSummaryOutput(page, many=True).data)

    @extend_schema(
        operation_id="training_runs_create",
        request=TrainingRunCreateInput,
        responses={
            202: OpenApiResponse(TrainingRunOutput, description="Queued; poll /api/training-runs/{id}/."),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        data = TrainingRunCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = training_run_create(
            project=project,
            base_model=values.get("base_model"),
            base_reward_model=values.get("base_reward_model"),
            hyperparameters=values.get("hyperparameters"),
            export=values.get("export"),
            policy=values.get("policy"),
            created_by=request.user,
            allow_below_target=values["allow_below_target"],
            time_limit_seconds=values.get("time_limit_seconds"),
            mode=values["mode"],
            search=values.get("search"),
        )
        return Response(TrainingRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    @extend_schema(operation_id="training_runs_retrieve", responses={200: TrainingRunOutput, **ERRORS})
    def get(self, request, run_id: int):
        return Response(TrainingRunOutput(_run_for_request(request, run_id)).data)


class TrainingRunCancelApi(APIView):
    @extend_schema(
        operation_id="training_runs_cancel",
        request=None,
        responses={
            202: OpenApiResponse(
                TrainingRunOutput,
                description="A queued run is cancelled at once; a running one stops before its next step.",
            ),
            **CONFLICT,
            **ERRORS,
        },
    )
    def post(self, request, run_id: int):
        run = training_run_cancel(run=_run_for_request(request, run_id))
        return Response(TrainingRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class ProjectRewardModelsApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="reward_models_list", responses={200: RewardModelOutput(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        models = RewardModel.objects.filter(project=project).order_by("-version", "-id")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(models, request, view=self)
        return paginator.get_paginated_response(RewardModelOutput(page, many=True).data)


class RewardModelActivateApi(APIView):
    @extend_schema(
        operation_id="reward_models_activate", request=None, responses={200: RewardModelOutput, **ERRORS}
    )
    def post(self, request, model_id: int):
        model = RewardModel.objects.select_related("project").filter(pk=model_id).first()
        if model is None or project_role(user=request.user, project=model.project) is None:
            raise NotFound("no such reward model")
        project_for_request(request, model.project_id, READERS)
        return Response(RewardModelOutput(reward_model_activate(reward_model=model)).data)
