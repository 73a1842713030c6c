"""The login page. Failed attempts are counted, and refused once too many, by django-axes
(accounts/login.py), as for every way of logging in."""

from __future__ import annotations

from django.contrib.auth.views import LoginView


class PalateLoginView(LoginView):
    redirect_authenticated_user = True
