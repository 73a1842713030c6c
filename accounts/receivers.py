"""Signal receivers, connected in AccountsConfig.ready."""

from __future__ import annotations

from accounts.services import user_tokens_revoke_all
from annotate.services.assignment import leases_release

WATCHED_FIELDS = {"password", "is_active"}


def revoke_tokens_when_credentials_change(sender, instance, update_fields=None, **kwargs) -> None:
    """Every save of a user passes here (the admin, the password change form, ``changepassword``,
    ``create_user``): a new password or a deactivation revokes the user's API tokens, as Django's session
    hash ends their sessions. A deactivation also hands the pairs they held back to the pool at once."""
    if instance.pk is None or (update_fields is not None and not WATCHED_FIELDS & set(update_fields)):
        return
    before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    deactivated = before["is_active"] and not instance.is_active
    if before["password"] != instance.password or deactivated:
        user_tokens_revoke_all(user=instance)
    if deactivated:
        leases_release(user_id=instance.pk)
