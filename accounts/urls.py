from __future__ import annotations

from django.urls import path

from accounts import views

urlpatterns = [
    path("account/tokens/", views.account_tokens, name="account-tokens"),
    path("account/tokens/new/", views.account_token_create, name="account-token-create"),
    path("account/tokens/revoke-all/", views.account_tokens_revoke_all, name="account-tokens-revoke-all"),
    path("account/tokens/<str:token_id>/revoke/", views.account_token_revoke, name="account-token-revoke"),
]
