"""The one sanitising path for untrusted text: prompts, responses, rationales and guidelines.

Markdown (CommonMark with tables and strikethrough) is rendered with raw HTML disabled, code blocks are
highlighted by Pygments, and the result is cleaned by nh3 against a short allow-list: no scripts, no event
handlers, no ``javascript:`` URLs, no images or iframes (a remote image in model output would be a
tracking pixel), and links open with ``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

from functools import cache, lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li",
    "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "span": {"class"},
    "div": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "td": {"align"},
    "th": {"align"},
    "ol": {"start"},
}
_FORMATTER = HtmlFormatter(cssclass="highlight", nowrap=True)


def _highlight(code: str, language: str, _attributes: str) -> str:
    try:
        lexer = get_lexer_by_name(language.strip().split()[0]) if language.strip() else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    # Starting with "<pre" tells markdown-it not to wrap the block a second time.
    return f'<pre class="highlight"><code>{highlight(code, lexer, _FORMATTER)}</code></pre>\n'


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight}).enable(
        ["table", "strikethrough"]
    )


def render_untrusted(text: str) -> SafeString:
    """Markdown to safe HTML. The only function in Palate that marks data-derived HTML as safe."""
    return mark_safe(_render_clean(text or ""))  # cleaned by nh3 in _render_clean


# A response is shown to several annotators (the overlap) and fetched ahead, and a prompt is shared by
# its pairs: rendering each text once per process saves most of the work on the annotation hot path.
@lru_cache(maxsize=4096)
def _render_clean(text: str) -> str:
    html = _markdown().render(text)
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return cleaned
