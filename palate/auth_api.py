"""POST /api/auth/token/: username and password in, API token out. Failed attempts are throttled."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from palate.errors import ApplicationError
from palate.login_throttle import (
    blocked_message,
    client_address,
    login_blocked,
    login_failed,
    login_succeeded,
)


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        username = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer}, auth=[])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, password = data.validated_data["username"], data.validated_data["password"]
        address = client_address(request)
        if login_blocked(username=username, address=address):
            raise ApplicationError(
                blocked_message(), code="throttled", http_status=status.HTTP_429_TOO_MANY_REQUESTS
            )
        user = authenticate(request, username=username, password=password)
        if user is None:
            login_failed(username=username, address=address)
            raise ApplicationError(
                "wrong username or password",
                code="authentication_failed",
                http_status=status.HTTP_401_UNAUTHORIZED,
            )
        login_succeeded(username=username)
        token, _ = Token.objects.get_or_create(user=user)
        return Response(self.OutputSerializer({"token": token.key, "username": user.username}).data)
