"""The exports page names each format as the registry labels it."""

from __future__ import annotations

from django import template

from annotate.services.exports.formats import format_label

register = template.Library()
register.filter("format_label", format_label)
