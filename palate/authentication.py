"""API token authentication, read with one hand-written statement.

DRF's ``TokenAuthentication`` builds an ORM query with a join on every request, which cost more CPU than
all the SQL of an annotator's "next pair" (bench/README.md). This class accepts the same tokens and header
(``Authorization: Token <key>``) and reads the token with its user in one statement; ``request.auth`` is the
Token, as with DRF's class.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from palate.sql import model_columns, model_from_row, model_width


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request):
        # A view that checks user tokens in its own statement (``checks_user_tokens``) gets the key
        # unchecked: see palate.callers.UncheckedToken. DRF makes authenticators per request.
        view = (request.parser_context or {}).get("view")
        self.checked_by_view = getattr(view, "checks_user_tokens", False)
        return super().authenticate(request)

    def authenticate_credentials(self, key: str):
        if getattr(self, "checked_by_view", False):
            # Imported here: DRF loads this module while rest_framework.views is still being imported,
            # and palate.callers needs palate.errors, which needs rest_framework.views.
            from palate.callers import UncheckedToken

            return UncheckedToken(key), key
        user_model = get_user_model()
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT {model_columns(Token, "t")}, {model_columns(user_model, "u")}
                FROM {quote(Token._meta.db_table)} t JOIN {quote(user_model._meta.db_table)} u ON u.id = t.user_id
                WHERE t.key = %s
                """,
                [key],
            )
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = model_from_row(Token, row)
        token.user = model_from_row(user_model, row, model_width(Token))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
