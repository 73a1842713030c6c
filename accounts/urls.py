from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

urlpatterns = [
    path("account/tokens/", views.account_tokens, name="account-tokens"),
    path("account/tokens/new/", views.account_token_create, name="account-token-create"),
    path("account/tokens/revoke-all/", views.account_tokens_revoke_all, name="account-tokens-revoke-all"),
    path("account/tokens/<str:token_id>/revoke/", views.account_token_revoke, name="account-token-revoke"),
    # Django's own password views with our templates (templates/registration/); the names are the ones
    # those views redirect to.
    path("account/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path(
        "account/password-reset/",
        auth_views.PasswordResetView.as_view(email_template_name="registration/password_reset_email.txt"),
        name="password_reset",
    ),
    path(
        "account/password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "account/password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "account/password-reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]
