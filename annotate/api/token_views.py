"""Project API tokens over HTTP (for scoring and best-of-N from scripts and services).

    GET    /api/projects/{id}/api-tokens/             leads and engineers: the tokens, never their secrets
    POST   /api/projects/{id}/api-tokens/             leads: {"name", "expires_at"?} → 201 with the secret, once
    DELETE /api/projects/{id}/api-tokens/{token_id}/  leads: revokes it (204; the row stays, for the record)

Annotators 403, outsiders 404, anonymous 401, like every project endpoint; a project API token itself is
refused here (403 ``token_scope``), so a token cannot mint or revoke tokens.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.permissions import LEADS, READERS, project_for_request
from annotate.api.views import ERRORS
from annotate.models import ProjectApiToken
from annotate.selectors import api_token_list
from annotate.services.api_tokens import api_token_create, api_token_revoke


class ApiTokenInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What uses it, e.g. 'best-of-n sampler'.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Optional; the token stops working then."
    )


class ApiTokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The secret's first characters, to recognise it.")
    state = serializers.SerializerMethodField(help_text="active, expired or revoked")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(
        allow_null=True, help_text="Accurate to a minute: the time is written at most once a minute."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_state(self, token: ProjectApiToken) -> str:
        return token.state(self.context.get("now") or timezone.now())


class ApiTokenCreatedOutput(ApiTokenOutput):
    secret = serializers.CharField(
        help_text="Send as 'Authorization: Bearer <secret>'. Shown only in this response: it is not stored."
    )


class ProjectApiTokensApi(APIView):
    @extend_schema(operation_id="api_tokens_list", responses={200: ApiTokenOutput(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, READERS)
        tokens = api_token_list(project=project)
        return Response(ApiTokenOutput(tokens, many=True, context={"now": timezone.now()}).data)

    @extend_schema(
        operation_id="api_tokens_create",
        request=ApiTokenInput,
        responses={
            201: OpenApiResponse(
                ApiTokenCreatedOutput, description="The token, with its secret (shown once)."
            ),
            **ERRORS,
        },
    )
    def post(self, request, project_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        data = ApiTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = api_token_create(
            project=project,
            name=data.validated_data["name"],
            expires_at=data.validated_data.get("expires_at"),
            created_by=request.user,
        )
        return Response({**ApiTokenOutput(token).data, "secret": secret}, status=status.HTTP_201_CREATED)


class ProjectApiTokenRevokeApi(APIView):
    @extend_schema(
        operation_id="api_tokens_revoke",
        responses={204: OpenApiResponse(description="Revoked (or already revoked)."), **ERRORS},
    )
    def delete(self, request, project_id: int, token_id: int):
        project, _ = project_for_request(request, project_id, LEADS)
        token = ProjectApiToken.objects.filter(pk=token_id, project=project).first()
        if token is None:
            raise NotFound("no such API token in this project")
        api_token_revoke(token=token, revoked_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
