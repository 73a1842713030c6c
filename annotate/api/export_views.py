"""Dataset exports over HTTP: start one (a Celery job), follow it, list them, download their files.

Engineers and leads (and site admins) only: annotators get 403, outsiders 404, like every project endpoint.
"""

from __future__ import annotations

from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotate.api.permissions import READERS, project_for_request
from annotate.api.views import ERRORS
from annotate.models import Export
from annotate.selectors import project_role
from annotate.services.exports import (
    DEFAULT_COLUMNS,
    DROP_OR_KEEP,
    EXPORT_FORMATS,
    OPTIONAL_COLUMNS,
    ExportPolicy,
    export_create,
    export_file,
    export_hf_tar,
    export_progress,
)

_DEFAULTS = ExportPolicy()


class ExportPolicyDoc(serializers.Serializer):
    """The policy's keys, for the schema. Every key is optional; the service validates them and names the
    field of any error as ``policy.<key>``."""

    kind = serializers.ChoiceField(
        choices=["preference", "raw"], required=False, help_text="default preference"
    )
    exclude_flagged = serializers.BooleanField(required=False, help_text="default false")
    exclude_gold = serializers.BooleanField(required=False, help_text="default true")
    min_gold_accuracy = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    min_gold_judgments = serializers.IntegerField(required=False, min_value=1, help_text="default 1")
    include_imported = serializers.BooleanField(required=False, help_text="default false")
    label = serializers.ChoiceField(choices=["majority", "unanimous", "weighted"], required=False)
    use_adjudicated = serializers.BooleanField(
        required=False,
        help_text="default true: a pair a lead settled takes the lead's label (overall-choice labels only)",
    )
    tied_vote = serializers.ChoiceField(choices=["drop", "tie"], required=False)
    min_votes = serializers.IntegerField(required=False, min_value=1, help_text="default 1")
    min_agreement = serializers.FloatField(required=False, min_value=0, max_value=1, help_text="default 0")
    ties = serializers.ChoiceField(choices=list(DROP_OR_KEEP), required=False)
    both_bad = serializers.ChoiceField(choices=list(DROP_OR_KEEP), required=False)
    criterion = serializers.CharField(required=False, allow_blank=True, help_text="empty: the overall choice")
    shape = serializers.ChoiceField(choices=["auto", "text", "conversational"], required=False)
    columns = serializers.ListField(
        child=serializers.ChoiceField(choices=list(OPTIONAL_COLUMNS)),
        required=False,
        help_text=f"default {', '.join(DEFAULT_COLUMNS)}",
    )
    split = serializers.FloatField(
        required=False, help_text=f"share of prompts in train, default {_DEFAULTS.split}"
    )
    seed = serializers.IntegerField(required=False, min_value=0, help_text="default 0")
    stratify = serializers.BooleanField(required=False, help_text="default false")
    license = serializers.CharField(required=False, allow_blank=True, max_length=100)


class ExportCreateInput(serializers.Serializer):
    policy = serializers.JSONField(required=False, default=dict)
    formats = serializers.JSONField(required=False, default=["jsonl"])


class ExportCreateDoc(serializers.Serializer):
    policy = ExportPolicyDoc(required=False)
    formats = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EXPORT_FORMATS)),
        required=False,
        help_text="default ['jsonl']",
    )


class ExportFileOutput(serializers.Serializer):
    bytes = serializers.IntegerField()
    rows = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField()
    download = serializers.CharField(help_text="URL that streams the file")


class ExportOutput(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "project",
            "version",
            "status",
            "progress",
            "policy",
            "formats",
            "counts",
            "files",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_progress(self, export: Export) -> float:
        return export_progress(export=export)

    @extend_schema_field(serializers.DictField(child=ExportFileOutput()))
    def get_files(self, export: Export) -> dict[str, dict]:
        base = reverse("api-export-download", args=[export.pk])
        return {
            name: {
                "bytes": record["bytes"],
                "rows": record["rows"],
                "sha256": record["sha256"],
                "download": f"{base}?file={name}",
            }
            for name, record in export.files.items()
        }


def _export_for_request(request, export_id: int) -> Export:
    export = Export.objects.select_related("project", "created_by").filter(pk=export_id).first()
    if export is None or project_role(user=request.user, project=export.project) is None:
        raise NotFound("no such export")
    project_for_request(request, export.project_id, READERS)
    return export


class ProjectExportsApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="exports_list", responses={200: ExportOutput(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        exports = Export.objects.filter(project=project).select_related("created_by").order_by("-version")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(exports, request, view=self)
        return paginator.get_paginated_response(ExportOutput(page, many=True).data)

    @extend_schema(
        operation_id="exports_create",
        request=ExportCreateDoc,
        responses={
            202: OpenApiResponse(ExportOutput, description="Queued; poll /api/exports/{id}/ for progress."),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        data = ExportCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        export = export_create(
            project=project,
            policy=data.validated_data["policy"],
            formats=data.validated_data["formats"],
            created_by=request.user,
        )
        return Response(ExportOutput(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    @extend_schema(operation_id="exports_retrieve", responses={200: ExportOutput, **ERRORS})
    def get(self, request, export_id: int):
        return Response(ExportOutput(_export_for_request(request, export_id)).data)


class _FormatIsAFileFormat(DefaultContentNegotiation):
    """``?format=`` names the file's format here, not DRF's renderer: always answer errors in JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# What a download is sent as, as the schema says. Django would guess a file's type from its name through the
# machine's mime.types (text/markdown, application/gzip, …), which differs from one server to the next.
FILE_MEDIA_TYPE = "application/octet-stream"
TAR_MEDIA_TYPE = "application/x-tar"


class ExportDownloadApi(APIView):
    content_negotiation_class = _FormatIsAFileFormat

    @extend_schema(
        operation_id="exports_download",
        parameters=[
            OpenApiParameter("split", str, enum=["train", "test"], description="default train"),
            OpenApiParameter(
                "format",
                str,
                enum=["jsonl", "jsonl.gz", "parquet", "hf", "card"],
                description="default jsonl (the gzipped file when that is what was made); hf: the Hugging Face "
                "folder as a tar; card: the dataset card",
            ),
            OpenApiParameter(
                "file", str, description="a file by its name in `files`, instead of split and format"
            ),
        ],
        responses={
            (200, FILE_MEDIA_TYPE): OpenApiResponse(OpenApiTypes.BINARY, description="The file, streamed."),
            (200, TAR_MEDIA_TYPE): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="With `format=hf`: the Hugging Face folder as a tar, streamed.",
            ),
            409: OpenApiResponse(ERRORS[400].response, description="The export has not succeeded (yet)."),
            **ERRORS,
        },
    )
    def get(self, request, export_id: int):
        export = _export_for_request(request, export_id)
        params = request.query_params
        if params.get("format") == "hf" and not params.get("file"):
            chunks, filename, size = export_hf_tar(export=export)
            response = StreamingHttpResponse(chunks, content_type=TAR_MEDIA_TYPE)
            response["Content-Length"] = str(size)
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        path, filename = export_file(
            export=export,
            split=params.get("split", "train"),
            fmt=params.get("format", "jsonl"),
            name=params.get("file", ""),
        )
        return FileResponse(
            path.open("rb"), as_attachment=True, filename=filename, content_type=FILE_MEDIA_TYPE
        )
