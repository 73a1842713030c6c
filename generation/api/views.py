"""Systems (model endpoints), generation jobs and best-of-N sampling over HTTP.

    GET  /api/projects/{project_id}/systems/         POST the same: register a system
    GET  /api/systems/{id}/    PATCH: change it    DELETE: remove it (its responses stay)
    GET  /api/projects/{project_id}/generation-jobs/ POST the same: queue a job on the generate queue
    GET  /api/generation-jobs/{id}/                  POST .../cancel/, POST .../rerun/
    POST /api/reward-models/{id}/sample-best-of-n/   generate N from a system, score, choose
    POST /api/reward-models/{id}/audits/             audit the model's best of N with annotators
    GET  /api/audits/{id}/ (with its figures)        POST .../cancel/, POST .../report/ (into the model's files)

Engineers and leads (and site admins): annotators 403, outsiders 404, anonymous 401. Keys are never
stored or shown: a system names the environment variable that holds its key.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERROR_RESPONSE, ERRORS
from annotate.selectors import project_role
from generation.api.serializers import (
    AuditInput,
    AuditOutput,
    GenerationJobInput,
    GenerationJobOutput,
    SampleBestOfNInput,
    SampleBestOfNOutput,
    SystemInput,
    SystemOutput,
)
from generation.models import GenerationJob, ModelAudit, System
from generation.selectors import systems_of_project
from generation.services.audits import audit_cancel, audit_create, audit_report_write
from generation.services.best_of_n import reward_model_sample_best_of_n
from generation.services.jobs import generation_job_cancel, generation_job_create, generation_job_rerun
from generation.services.systems import system_create, system_delete, system_update
from palate.errors import ApplicationError
from rewardtrain.models import RewardModel

CONFLICT = {409: OpenApiResponse(ERROR_RESPONSE, description="The name is taken, or the job has finished.")}
UNAVAILABLE = {
    503: OpenApiResponse(ERROR_RESPONSE, description="The endpoint or the scoring worker did not answer.")
}


def _system_for_request(request, system_id: int) -> System:
    system = System.objects.select_related("project").filter(pk=system_id).first()
    if system is None or project_role(user=request.user, project=system.project) is None:
        raise NotFound("no such system")
    project_for_request(request, system.project_id, READERS)
    return system


def _job_for_request(request, job_id: int) -> GenerationJob:
    job = GenerationJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None or project_role(user=request.user, project=job.project) is None:
        raise NotFound("no such generation job")
    project_for_request(request, job.project_id, READERS)
    return job


class ProjectSystemsApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="systems_list", responses={200: SystemOutput(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(systems_of_project(project=project), request, view=self)
        return paginator.get_paginated_response(SystemOutput(page, many=True).data)

    @extend_schema(
        operation_id="systems_create",
        request=SystemInput,
        responses={201: SystemOutput, **ERRORS, **CONFLICT},
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        data = SystemInput(data=request.data)
        data.is_valid(raise_exception=True)
        system = system_create(project=project, created_by=request.user, **data.validated_data)
        return Response(SystemOutput(system).data, status=status.HTTP_201_CREATED)


class SystemDetailApi(APIView):
    @extend_schema(operation_id="systems_retrieve", responses={200: SystemOutput, **ERRORS})
    def get(self, request, system_id: int):
        return Response(SystemOutput(_system_for_request(request, system_id)).data)

    @extend_schema(
        operation_id="systems_partial_update",
        request=SystemInput(partial=True),
        responses={200: SystemOutput, **ERRORS, **CONFLICT},
    )
    def patch(self, request, system_id: int):
        system = _system_for_request(request, system_id)
        data = SystemInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return Response(SystemOutput(system_update(system=system, **data.validated_data)).data)

    @extend_schema(operation_id="systems_destroy", responses={204: None, **ERRORS})
    def delete(self, request, system_id: int):
        system_delete(system=_system_for_request(request, system_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectGenerationJobsApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="generation_jobs_list", responses={200: GenerationJobOutput(many=True), **ERRORS}
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        jobs = GenerationJob.objects.filter(project=project).prefetch_related("systems").defer("log")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(jobs.order_by("-created_at", "-id"), request, view=self)
        return paginator.get_paginated_response(GenerationJobOutput(page, many=True).data)

    @extend_schema(
        operation_id="generation_jobs_create",
        request=GenerationJobInput,
        responses={
            202: OpenApiResponse(GenerationJobOutput, description="Queued on the generate queue."),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        data = GenerationJobInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        systems = list(System.objects.filter(project=project, pk__in=values["systems"]))
        missing = sorted(set(values["systems"]) - {system.pk for system in systems})
        if missing:
            raise ApplicationError(
                f"systems: no system {', '.join(map(str, missing))} in this project",
                fields={"systems": [f"no system {pk} in this project" for pk in missing]},
            )
        job = generation_job_create(
            project=project,
            systems=systems,
            samples=values["samples"],
            scope=values["scope"],
            scope_value=values["scope_value"],
            pairing=dict(values.get("pairing") or {}),
            created_by=request.user,
        )
        return Response(GenerationJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationJobDetailApi(APIView):
    @extend_schema(operation_id="generation_jobs_retrieve", responses={200: GenerationJobOutput, **ERRORS})
    def get(self, request, job_id: int):
        return Response(GenerationJobOutput(_job_for_request(request, job_id)).data)


class GenerationJobCancelApi(APIView):
    @extend_schema(
        operation_id="generation_jobs_cancel",
        request=None,
        responses={
            202: OpenApiResponse(
                GenerationJobOutput,
                description="A queued job is cancelled at once; a running one stops within seconds, keeping "
                "what it stored.",
            ),
            **ERRORS,
            **CONFLICT,
        },
    )
    def post(self, request, job_id: int):
        job = generation_job_cancel(job=_job_for_request(request, job_id))
        return Response(GenerationJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationJobRerunApi(APIView):
    @extend_schema(
        operation_id="generation_jobs_rerun",
        request=None,
        responses={
            202: OpenApiResponse(
                GenerationJobOutput, description="A new job with the same settings; it skips what is stored."
            ),
            **ERRORS,
            **CONFLICT,
        },
    )
    def post(self, request, job_id: int):
        job = generation_job_rerun(job=_job_for_request(request, job_id), created_by=request.user)
        return Response(GenerationJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


def _model_for_request(request, model_id: int) -> RewardModel:
    model = RewardModel.objects.select_related("project").filter(pk=model_id).first()
    if model is None or project_role(user=request.user, project=model.project) is None:
        raise NotFound("no such reward model")
    project_for_request(request, model.project_id, READERS)
    return model


def _system_of_model(model: RewardModel, system_id: int) -> System:
    system = System.objects.filter(project_id=model.project_id, pk=system_id).first()
    if system is None:
        raise ApplicationError(
            "system: no such system in the reward model's project", fields={"system": ["not found"]}
        )
    return system


def _audit_for_request(request, audit_id: int) -> ModelAudit:
    audit = ModelAudit.objects.select_related("project", "generation_job").filter(pk=audit_id).first()
    if audit is None or project_role(user=request.user, project=audit.project) is None:
        raise NotFound("no such audit")
    project_for_request(request, audit.project_id, READERS)
    return audit


class RewardModelAuditCreateApi(APIView):
    @extend_schema(
        operation_id="reward_models_audits_create",
        request=AuditInput,
        responses={202: OpenApiResponse(AuditOutput, description="Queued on the generate queue."), **ERRORS},
    )
    def post(self, request, model_id: int):
        model = _model_for_request(request, model_id)
        data = AuditInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        audit = audit_create(
            reward_model=model,
            system=_system_of_model(model, values["system"]),
            n_values=values["n_values"],
            scope=values["scope"],
            scope_value=values["scope_value"],
            seed=values["seed"],
            created_by=request.user,
        )
        return Response(AuditOutput(audit).data, status=status.HTTP_202_ACCEPTED)


class AuditDetailApi(APIView):
    @extend_schema(operation_id="audits_retrieve", responses={200: AuditOutput, **ERRORS})
    def get(self, request, audit_id: int):
        return Response(AuditOutput(_audit_for_request(request, audit_id)).data)


class AuditCancelApi(APIView):
    @extend_schema(
        operation_id="audits_cancel", request=None, responses={202: AuditOutput, **ERRORS, **CONFLICT}
    )
    def post(self, request, audit_id: int):
        audit = audit_cancel(audit=_audit_for_request(request, audit_id))
        return Response(AuditOutput(audit).data, status=status.HTTP_202_ACCEPTED)


class AuditReportApi(APIView):
    @extend_schema(
        operation_id="audits_report",
        request=None,
        responses={
            200: OpenApiResponse(
                AuditOutput, description="The figures as they stand, written into the model's directory."
            ),
            **ERRORS,
            409: OpenApiResponse(
                ERROR_RESPONSE, description="The model's files are not in the artifacts store."
            ),
        },
    )
    def post(self, request, audit_id: int):
        audit = _audit_for_request(request, audit_id)
        audit_report_write(audit=audit)
        return Response(AuditOutput(audit).data)


class RewardModelSampleBestOfNApi(APIView):
    @extend_schema(
        operation_id="reward_models_sample_best_of_n",
        request=SampleBestOfNInput,
        responses={200: SampleBestOfNOutput, **ERRORS, **UNAVAILABLE},
    )
    def post(self, request, model_id: int):
        model = _model_for_request(request, model_id)
        data = SampleBestOfNInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        system = _system_of_model(model, values["system"])
        outcome = reward_model_sample_best_of_n(
            reward_model=model,
            system=system,
            prompt=values.get("prompt"),
            messages=values.get("messages"),
            n=values["n"],
        )
        return Response(SampleBestOfNOutput(outcome).data)
