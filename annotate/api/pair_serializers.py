"""The data browser's query: filters, search and the page's place, read from a query string. The pairs page
and the pairs API validate with this one serializer, so both refuse the same input with the same message."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from annotate.selectors_pairs import AGREEMENTS, PAIR_FILTERS, STATUSES

LARGEST_ID = 2**63 - 1  # PostgreSQL's bigint
YES_NO = {"true": True, "yes": True, "false": False, "no": False}


class YesNoField(serializers.Field):
    """'yes'/'true' or 'no'/'false'; empty or absent means no filter."""

    default_error_messages = {"invalid": "must be yes or no (or true or false), not {value!r}"}

    def to_internal_value(self, data: Any) -> bool | None:
        text = str(data).strip().lower()
        if text == "":
            return None
        if text not in YES_NO:
            self.fail("invalid", value=str(data)[:40])
        return YES_NO[text]

    def to_representation(self, value: bool | None) -> str:
        return "" if value is None else ("yes" if value else "no")


class PairFilterInput(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=300,
        help_text='Full-text search over the prompt and both responses: words, "a phrase", OR, -word.',
    )
    status = serializers.ChoiceField(
        choices=list(STATUSES.items()),
        required=False,
        allow_blank=True,
        error_messages={"invalid_choice": f"{{input!r}} is not one of {', '.join(STATUSES)}"},
    )
    system = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Either response's system."
    )
    category = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="The prompt's category."
    )
    gold = YesNoField(required=False, help_text="Gold pairs only (yes) or ordinary pairs only (no).")
    agreement = serializers.ChoiceField(
        choices=list(AGREEMENTS.items()),
        required=False,
        allow_blank=True,
        error_messages={"invalid_choice": f"{{input!r}} is not one of {', '.join(AGREEMENTS)}"},
    )
    contested = YesNoField(
        required=False, help_text="yes: two or more human judgments that disagree; no: every other pair."
    )
    annotator = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="Pairs this user judged (a username)."
    )
    after = serializers.IntegerField(
        required=False, min_value=0, max_value=LARGEST_ID, help_text="The page after this pair id."
    )
    before = serializers.IntegerField(
        required=False, min_value=0, max_value=LARGEST_ID, help_text="The page before this pair id."
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: [f"unknown filter; the filters are {', '.join(self.fields)}"] for name in unknown}
            )
        return super().to_internal_value(data)

    def validate_annotator(self, value: str) -> int | str:
        """The username as the user's id: a name nobody has is a mistake worth saying, not an empty page."""
        if not value:
            return ""
        user_id = get_user_model().objects.filter(username=value).values_list("pk", flat=True).first()
        if user_id is None:
            raise serializers.ValidationError(f"no user is called {value!r}")
        return user_id

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("after") is not None and attrs.get("before") is not None:
            raise serializers.ValidationError({"before": ["give after or before, not both"]})
        return attrs

    @property
    def filters(self) -> dict[str, Any]:
        """The validated filters, as ``pairs_filtered`` takes them."""
        return {name: self.validated_data.get(name) for name in PAIR_FILTERS}
