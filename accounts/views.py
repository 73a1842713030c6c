"""The user's own API tokens: list, make one, revoke one or all (the page behind "API tokens" in the
user menu). Tokens made by logging in over the API show here too."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.selectors import user_token_list
from accounts.services import user_token_create, user_token_revoke, user_tokens_revoke_all


def _tokens_page(request: HttpRequest, *, new_token: tuple | None = None) -> HttpResponse:
    now = timezone.now()
    tokens = [
        (token, "expired" if token.expiry is not None and token.expiry <= now else "active")
        for token in user_token_list(user=request.user)
    ]
    response = render(request, "accounts/tokens.html", {"tokens": tokens, "new_token": new_token})
    if new_token is not None:
        # The secret is in this page and nowhere else: no cache may keep it.
        response["Cache-Control"] = "no-store"
    return response


@login_required
def account_tokens(request: HttpRequest) -> HttpResponse:
    return _tokens_page(request)


@login_required
@require_POST
def account_token_create(request: HttpRequest) -> HttpResponse:
    """Shows the new token's secret on this response only (a reload asks to send the form again)."""
    return _tokens_page(request, new_token=user_token_create(user=request.user))


@login_required
@require_POST
def account_token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    if not user_token_revoke(user=request.user, token_key=token_id):
        raise Http404("No such token.")
    messages.success(request, f"The token {token_id}… is revoked.")
    return redirect("account-tokens")


@login_required
@require_POST
def account_tokens_revoke_all(request: HttpRequest) -> HttpResponse:
    count = user_tokens_revoke_all(user=request.user)
    messages.success(request, f"{count} token{'' if count == 1 else 's'} revoked.")
    return redirect("account-tokens")
