"""What happens to a pair after the annotators: their reports of a problem with it (``PairFlag``) and a lead's
final word on its label (``Adjudication``). Imported by ``annotate.models``; a module of its own because
``models.py`` is long enough already."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotate.models import Choice


class PairFlag(models.Model):
    """An annotator's report that something is wrong with a pair. Flagging also skips the pair for them;
    the flag stays open on the lead's list until the pair is settled or the flag dismissed."""

    class Category(models.TextChoices):
        BROKEN = "broken", "Broken (missing, cut off or garbled)"
        HARMFUL = "harmful", "Harmful or offensive"
        DUPLICATE = "duplicate", "Duplicate of another item"
        OTHER = "other", "Something else"

    class Resolution(models.TextChoices):
        OPEN = "", "Open"
        SETTLED = "settled", "Settled by a lead"
        DISMISSED = "dismissed", "Dismissed by a lead"

    pair = models.ForeignKey("annotate.Pair", on_delete=models.CASCADE, related_name="flags", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=10, choices=Category.choices)
    text = models.TextField(blank=True, help_text="What is wrong, in the annotator's words.")
    created_at = models.DateTimeField()
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One report per annotator and pair: flagging skips the pair, so it never comes back to them.
            models.UniqueConstraint(fields=["pair", "annotator"], name="pairflag_one_per_annotator_and_pair"),
            models.CheckConstraint(
                condition=Q(category__in=["broken", "harmful", "duplicate", "other"]),
                name="pairflag_category_valid",
            ),
            models.CheckConstraint(
                condition=~Q(category="other") | ~Q(text=""), name="pairflag_other_says_what"
            ),
            models.CheckConstraint(
                condition=Q(resolution="", resolved_at__isnull=True)
                | Q(resolution__in=["settled", "dismissed"], resolved_at__isnull=False),
                name="pairflag_resolved_iff_resolution",
            ),
        ]
        indexes = [
            models.Index(
                fields=["pair"], condition=Q(resolved_at__isnull=True), name="pairflag_open_by_pair"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair} · {self.category} · {self.annotator}"


class Adjudication(models.Model):
    """A lead's final label for a pair (contested or flagged), with a note saying why. Exports use it in place
    of the votes when their policy says so (``use_adjudicated``); settling again replaces it."""

    pair = models.OneToOneField("annotate.Pair", on_delete=models.CASCADE, related_name="adjudication")
    label = models.CharField(max_length=10, choices=Choice.choices)
    note = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(label__in=["a", "b", "tie", "both_bad"]), name="adjudication_label_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair} settled as {self.label}"
