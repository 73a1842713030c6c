"""A lead settles a pair: a final label (A, B, tie or both bad) and a note. Exports use it in place of the
votes when their policy says so (``use_adjudicated``, see ``annotate/stats/aggregation.py``'s
``settle_labels``); settling a flagged pair closes its flags."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate.models import Adjudication, Choice, Pair, PairFlag
from annotate.services.flags import pair_flags_resolve
from palate.errors import ApplicationError

NOTE_MAX_LENGTH = 10_000


def pair_adjudicate(*, pair: Pair, label: str, note: str = "", decided_by: AbstractBaseUser) -> Adjudication:
    """Records (or replaces) the lead's label for the pair and closes its open flags as settled. The caller
    has checked that ``decided_by`` leads the pair's project."""
    note = (note or "").strip()
    if label not in Choice.values:
        choices = ", ".join(Choice.values)
        raise ApplicationError(
            f"label: must be one of {choices}", fields={"label": [f"must be one of {choices}"]}
        )
    if len(note) > NOTE_MAX_LENGTH:
        message = f"must be at most {NOTE_MAX_LENGTH} characters"
        raise ApplicationError(f"note: {message}", fields={"note": [message]})
    now = timezone.now()
    with transaction.atomic():
        # Two leads settling at once: the second waits, then replaces the first's label.
        Pair.objects.select_for_update().filter(pk=pair.pk).values_list("pk", flat=True).first()
        adjudication, _ = Adjudication.objects.update_or_create(
            pair=pair, defaults={"label": label, "note": note, "decided_by": decided_by, "decided_at": now}
        )
        pair_flags_resolve(
            pair_id=pair.pk, resolved_by=decided_by, resolution=PairFlag.Resolution.SETTLED, now=now
        )
    return adjudication
