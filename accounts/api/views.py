"""User API tokens over HTTP.

    POST   /api/auth/token/          username and password → a new token (one per login), with its expiry
    DELETE /api/auth/token/          revokes the token the request carries (logging out a script)
    GET    /api/auth/tokens/         the caller's tokens, never their secrets
    DELETE /api/auth/tokens/         revokes every token of the caller
    DELETE /api/auth/tokens/{id}/    revokes one

Failed logins are counted by django-axes (accounts/login.py): once an account or address is locked out,
axes' middleware answers 429 ``throttled`` in place of the view's answer.
"""

from __future__ import annotations

from django.contrib.auth import authenticate, user_logged_in
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.login import login_username
from accounts.selectors import user_token_list
from accounts.services import user_token_create, user_token_revoke, user_tokens_revoke_all
from annotate.api.views import ERROR_RESPONSE, ERRORS
from palate.errors import ApplicationError
from palate.parsers import JSONParser, MultiPartParser

USERNAME_MAX_LENGTH = 150


class LoginInput(serializers.Serializer):
    username = serializers.CharField(max_length=USERNAME_MAX_LENGTH)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)

    def validate_username(self, value: str) -> str:
        username = login_username(value)
        if len(username) > USERNAME_MAX_LENGTH:
            raise serializers.ValidationError(
                f"Ensure this field has no more than {USERNAME_MAX_LENGTH} characters."
            )
        return username


class LoginOutput(serializers.Serializer):
    token = serializers.CharField(
        help_text="Send as 'Authorization: Token <token>'. Shown only in this response."
    )
    username = serializers.CharField()
    expires_at = serializers.DateTimeField()


class UserTokenOutput(serializers.Serializer):
    id = serializers.CharField(source="token_key", help_text="The token's first characters, which name it.")
    created_at = serializers.DateTimeField(source="created")
    expires_at = serializers.DateTimeField(source="expiry", allow_null=True)
    state = serializers.SerializerMethodField(help_text="active or expired")
    current = serializers.SerializerMethodField(help_text="Whether this request carries this token.")

    def get_state(self, token: AuthToken) -> str:
        return "expired" if token.expiry is not None and token.expiry <= self.context["now"] else "active"

    def get_current(self, token: AuthToken) -> bool:
        current = self.context["current"]
        return current is not None and current.digest == token.digest


def _request_token(request) -> AuthToken | None:
    return request.auth if isinstance(request.auth, AuthToken) else None


LOCKED_OUT = OpenApiResponse(
    ERROR_RESPONSE, description="Too many failed logins for this username or from this address."
)


class TokenApi(APIView):
    # Two flat fields: a form will do too (``curl -d username=… -d password=…``).
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def perform_authentication(self, request) -> None:
        # Logging in needs no credentials but the body's: a stale header or session must not stand in the way.
        if request.method != "POST":
            super().perform_authentication(request)

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        operation_id="auth_token_create",
        request=LoginInput,
        responses={
            200: LoginOutput,
            400: ERRORS[400],
            401: OpenApiResponse(ERROR_RESPONSE, description="Wrong username or password."),
            429: LOCKED_OUT,
        },
        auth=[],
    )
    def post(self, request):
        data = LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        # The Django request: axes marks a locked-out attempt on it, for its middleware.
        user = authenticate(
            request._request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if user is None:
            raise ApplicationError(
                "wrong username or password",
                code="authentication_failed",
                http_status=status.HTTP_401_UNAUTHORIZED,
            )
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        token, secret = user_token_create(user=user)
        return Response(
            LoginOutput({"token": secret, "username": user.get_username(), "expires_at": token.expiry}).data
        )

    @extend_schema(
        operation_id="auth_token_revoke_current",
        responses={
            204: OpenApiResponse(description="The token this request carries is revoked."),
            400: OpenApiResponse(ERROR_RESPONSE, description="This request carries no user token."),
            401: ERRORS[401],
            403: OpenApiResponse(ERROR_RESPONSE, description="A project API token cannot log out."),
        },
    )
    def delete(self, request):
        token = _request_token(request)
        if token is None:
            raise ApplicationError(
                "this request carries no user token (it is logged in with a session); revoke a token by "
                "its id with DELETE /api/auth/tokens/{id}/",
                code="no_token",
            )
        token.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserTokensApi(APIView):
    @extend_schema(operation_id="auth_tokens_list", responses={200: UserTokenOutput(many=True), **ERRORS})
    def get(self, request):
        context = {"now": timezone.now(), "current": _request_token(request)}
        return Response(UserTokenOutput(user_token_list(user=request.user), many=True, context=context).data)

    @extend_schema(
        operation_id="auth_tokens_revoke_all",
        responses={204: OpenApiResponse(description="Every token of yours is revoked."), **ERRORS},
    )
    def delete(self, request):
        user_tokens_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserTokenRevokeApi(APIView):
    @extend_schema(
        operation_id="auth_tokens_revoke",
        responses={
            204: OpenApiResponse(description="Revoked."),
            **ERRORS,
            404: OpenApiResponse(ERROR_RESPONSE, description="You have no token with this id."),
        },
    )
    def delete(self, request, token_id: str):
        if not user_token_revoke(user=request.user, token_key=token_id):
            raise NotFound("you have no token with this id")
        return Response(status=status.HTTP_204_NO_CONTENT)
