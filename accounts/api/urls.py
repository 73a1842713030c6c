from __future__ import annotations

from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/token/", views.TokenApi.as_view(), name="api-token"),
    path("auth/tokens/", views.UserTokensApi.as_view(), name="api-user-tokens"),
    path("auth/tokens/<str:token_id>/", views.UserTokenRevokeApi.as_view(), name="api-user-token"),
]
