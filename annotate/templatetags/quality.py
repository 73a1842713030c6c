"""Formatting for the quality dashboard: shares as percentages, and a dash where a figure is undefined."""

from __future__ import annotations

from django import template

from annotate.models import Choice

register = template.Library()

MISSING = "\u2013"  # an en dash


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    """0.724 as "72%"; None (undefined) as a dash."""
    if value is None or value == "":
        return MISSING
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def figure(value: float | None, digits: int = 3) -> str:
    """A number with a fixed number of decimals; None (undefined) as a dash."""
    if value is None or value == "":
        return MISSING
    return f"{float(value):.{int(digits)}f}"


@register.filter
def signed(value: float | None, digits: int = 2) -> str:
    """A difference with its sign, e.g. "+0.05" or "-0.12" (with a true minus sign); None as a dash."""
    if value is None or value == "":
        return MISSING
    return f"{float(value):+.{int(digits)}f}".replace("-", "\u2212")


@register.filter
def sort_value(value) -> str:
    """The raw value for the table's client-side sort: empty for None."""
    return "" if value is None else str(value)


@register.filter
def pvalue(value: float | None) -> str:
    """A p-value as "p = 0.42" (two significant digits) or "p < 0.001"; None as a dash."""
    if value is None or value == "":
        return MISSING
    return "p < 0.001" if float(value) < 0.001 else f"p = {float(value):.2g}"


@register.filter
def choice_label(value: str | None) -> str:
    """A choice in A/B terms as people read it ("A is better"); a dash for none."""
    if not value:
        return MISSING
    return Choice(value).label if value in Choice.values else str(value)
