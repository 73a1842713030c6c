from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from accounts import schema  # noqa: F401  (registers the user token scheme with drf-spectacular)
        from accounts.receivers import revoke_tokens_when_credentials_change

        pre_save.connect(
            revoke_tokens_when_credentials_change,
            sender=get_user_model(),
            dispatch_uid="accounts-revoke-tokens-when-credentials-change",
        )
