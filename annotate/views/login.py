"""The login page, with failed attempts throttled per username and per address."""

from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError

from palate.login_throttle import (
    blocked_message,
    client_address,
    login_blocked,
    login_failed,
    login_succeeded,
)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses further attempts after repeated failures for a username or from an address."""

    def clean(self):
        username = self.data.get("username", "")
        address = client_address(self.request) if self.request else "unknown"
        if login_blocked(username=username, address=address):
            raise ValidationError(blocked_message(), code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            login_failed(username=username, address=address)
            raise
        login_succeeded(username=username)
        return cleaned


class PalateLoginView(LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True
