"""One view per operation: validate the input, call a service or selector, serialise the output."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import FormParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api import serializers as io
from annotate.api.permissions import LEADS, MEMBERS, READERS, project_for_request
from annotate.models import ImportJob, Membership, Pair, Prompt
from annotate.selectors import membership_list, project_role, projects_with_role, user_can_create_projects
from annotate.services.import_rows import ImportOptions
from annotate.services.import_uploads import import_job_create_from_upload, import_upload_url_create
from annotate.services.imports import import_job_progress, import_start
from annotate.services.members import membership_remove, membership_set
from annotate.services.projects import project_create, project_update
from palate.errors import ApplicationError
from palate.parsers import MultiPartParser
from rewardtrain.selectors import pair_model_predictions, reward_model_active

ERROR_RESPONSE = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorBody",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
            },
        )
    },
)
ERRORS = {
    400: OpenApiResponse(ERROR_RESPONSE, description="Invalid input; `fields` names each field."),
    401: OpenApiResponse(ERROR_RESPONSE, description="Not logged in."),
    403: OpenApiResponse(ERROR_RESPONSE, description="Your role in the project does not allow this."),
    404: OpenApiResponse(ERROR_RESPONSE, description="No such project (or not yours)."),
}


def _project_output(project, role: str, request):
    if role == Membership.Role.ANNOTATOR:
        return io.ProjectAnnotatorOutput(project).data
    return io.ProjectOutput(project, context={"roles": {project.pk: role}, "request": request}).data


class ProjectListCreateApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="projects_list", responses={200: io.project_for_caller(many=True), **ERRORS})
    def get(self, request):
        projects = projects_with_role(user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(projects, request, view=self)
        # A site admin's own memberships show as such (an annotator's view of the project), like the home page.
        memberships = dict(
            Membership.objects.filter(user=request.user, project__in=page).values_list("project_id", "role")
        )
        roles = {project.pk: memberships.get(project.pk, project.caller_role) for project in page}
        data = [
            io.ProjectAnnotatorOutput(project).data
            if roles.get(project.pk) == Membership.Role.ANNOTATOR
            else io.ProjectOutput(project, context={"roles": roles}).data
            for project in page
        ]
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="projects_create",
        request=io.ProjectCreateInput,
        responses={
            201: io.ProjectOutput,
            **ERRORS,
            409: OpenApiResponse(ERROR_RESPONSE, description="A project with this slug exists."),
        },
    )
    def post(self, request):
        if not user_can_create_projects(user=request.user):
            raise PermissionDenied(
                "creating projects needs the 'can add project' permission (ask a site admin)"
            )
        data = io.ProjectCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(created_by=request.user, **data.validated_data)
        return Response(
            _project_output(project, Membership.Role.LEAD, request), status=status.HTTP_201_CREATED
        )


class ProjectDetailApi(APIView):
    @extend_schema(operation_id="projects_retrieve", responses={200: io.project_for_caller(), **ERRORS})
    def get(self, request, project_id: int):
        project, role = project_for_request(request, project_id, MEMBERS)
        return Response(_project_output(project, role, request))

    @extend_schema(
        operation_id="projects_update",
        request=io.ProjectUpdateInput,
        responses={200: io.ProjectOutput, **ERRORS},
    )
    def patch(self, request, project_id: int):
        project, role = project_for_request(request, project_id, LEADS)
        data = io.ProjectUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, data=data.validated_data)
        return Response(_project_output(project, role, request))


class ProjectMembersApi(APIView):
    @extend_schema(operation_id="members_list", responses={200: io.MemberOutput(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        return Response(io.MemberOutput(membership_list(project=project), many=True).data)

    @extend_schema(
        operation_id="members_set",
        request=io.MemberInput,
        responses={201: io.MemberOutput, 200: io.MemberOutput, **ERRORS},
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        data = io.MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership, created = membership_set(project=project, **data.validated_data)
        return Response(
            io.MemberOutput(membership).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ProjectMemberDeleteApi(APIView):
    @extend_schema(operation_id="members_remove", responses={204: None, **ERRORS})
    def delete(self, request, project_id: int, username: str):
        project, _ = project_for_request(request, project_id, LEADS)
        membership_remove(project=project, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectImportApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="imports_create",
        request={"multipart/form-data": io.ImportInput},
        responses={
            201: OpenApiResponse(io.ImportJobOutput, description="Imported; `counts` says what was created."),
            202: OpenApiResponse(
                io.ImportJobOutput,
                description="A file whose work is large (content after gunzip, pairs): queued as a job; "
                "poll /api/imports/{id}/.",
            ),
            413: OpenApiResponse(
                ERROR_RESPONSE, description="The upload passed IMPORT_MAX_FILE_BYTES: stopped as it streamed."
            ),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        data = io.ImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data.pop("file")
        started = import_start(
            project=project,
            upload=upload,
            filename=upload.name,
            size=upload.size,
            options=ImportOptions(**data.validated_data),
            created_by=request.user,
        )
        if started.failure is not None:
            raise started.failure
        return Response(
            io.ImportJobOutput(started.job).data,
            status=status.HTTP_202_ACCEPTED if started.queued else status.HTTP_201_CREATED,
        )


class ProjectImportUploadUrlApi(APIView):
    @extend_schema(
        operation_id="imports_upload_url",
        request=io.ImportUploadUrlInput,
        responses={
            201: OpenApiResponse(
                io.ImportUploadUrlOutput,
                description="A link to PUT the file to, straight into the object store, and the ticket that "
                "then starts its import (POST /imports/from-upload/).",
            ),
            409: OpenApiResponse(
                ERROR_RESPONSE, description="The uploads store is a local folder: send the file to /imports/."
            ),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        data = io.ImportUploadUrlInput(data=request.data)
        data.is_valid(raise_exception=True)
        link = import_upload_url_create(project=project, **data.validated_data)
        return Response(io.ImportUploadUrlOutput(link).data, status=status.HTTP_201_CREATED)


class ProjectImportFromUploadApi(APIView):
    @extend_schema(
        operation_id="imports_create_from_upload",
        request=io.ImportFromUploadInput,
        responses={
            202: OpenApiResponse(io.ImportJobOutput, description="Queued as a job; poll /api/imports/{id}/."),
            409: OpenApiResponse(
                ERROR_RESPONSE, description="This upload's import is already queued or running."
            ),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        data = io.ImportFromUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data.pop("upload")
        job = import_job_create_from_upload(
            project=project,
            upload=upload,
            options=ImportOptions(**data.validated_data),
            created_by=request.user,
        )
        return Response(io.ImportJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobDetailApi(APIView):
    @extend_schema(operation_id="imports_retrieve", responses={200: io.ImportJobOutput, **ERRORS})
    def get(self, request, job_id: int):
        job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
        if job is None or project_role(user=request.user, project=job.project) is None:
            raise NotFound("no such import")
        project_for_request(request, job.project_id, LEADS)
        live = import_job_progress(job=job) if job.status == ImportJob.Status.RUNNING else None
        return Response(io.ImportJobOutput(job, context={"live_progress": live}).data)


class PromptListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="prompts_list",
        parameters=[OpenApiParameter("category", str, description="only prompts of this category")],
        responses={200: io.PromptOutput(many=True), **ERRORS},
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        prompts = Prompt.objects.filter(project=project).order_by("id")
        if request.query_params.get("category"):
            prompts = prompts.filter(category=request.query_params["category"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(prompts, request, view=self)
        return paginator.get_paginated_response(io.PromptOutput(page, many=True).data)


class PairListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="pairs_list",
        parameters=[
            OpenApiParameter(
                "gold", bool, description="only gold pairs (true) or only ordinary pairs (false)"
            )
        ],
        responses={200: io.PairWithPredictionOutput(many=True), **ERRORS},
    )
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        pairs = Pair.objects.filter(project=project).select_related("response_a", "response_b").order_by("id")
        gold = request.query_params.get("gold")
        if gold is not None:
            if gold.lower() not in {"true", "false"}:
                raise ApplicationError(
                    "gold must be true or false", fields={"gold": ["must be true or false"]}
                )
            pairs = pairs.filter(is_gold=gold.lower() == "true")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(pairs, request, view=self)
        model = reward_model_active(project_id=project.pk)
        predictions = {}
        if model is not None:
            predictions = {
                pair_id: {"reward_model_version": model.version, **prediction}
                for pair_id, prediction in pair_model_predictions(reward_model=model, pairs=page).items()
            }
        data = io.PairWithPredictionOutput(page, many=True, context={"predictions": predictions}).data
        return paginator.get_paginated_response(data)
