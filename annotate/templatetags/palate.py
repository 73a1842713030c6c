from __future__ import annotations

from django import template

from annotate.rendering import render_untrusted

register = template.Library()


@register.filter(name="untrusted_markdown")
def untrusted_markdown(text: str):
    return render_untrusted(text)
