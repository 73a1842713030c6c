"""The data browser in Debian's Chromium at a desktop and a phone width: a lead opens the Pairs tab,
searches and filters, pages on, opens a pair with every judgment, and meets a clear error for a bad filter;
nothing overflows the screen and no untrusted text runs."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from annotate.services.search_documents import search_documents_fill
from tests.annotate.test_pair_browser import browsed_project
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import PairFactory, PromptFactory

PASSWORD = "correct horse battery staple"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def fits(page: Page, width: int, name: str) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, name
    page.screenshot(path=ARTIFACTS / f"{name}-{width}.png", full_page=True)
    page.screenshot(path=ARTIFACTS / f"{name}-{width}-top.png")
    # The first screen of the results, to look at without the whole page's height.
    top = page.evaluate("Math.max(0, document.querySelector('main > section, main .alert').offsetTop - 8)")
    clip = {"x": 0, "y": top, "width": width, "height": 1000}
    page.screenshot(path=ARTIFACTS / f"{name}-{width}-results.png", full_page=True, clip=clip)


def names(page: Page) -> list[str]:
    return page.locator(".pair-table td.pair-name a").all_inner_texts()


@pytest.mark.parametrize("width", [1366, 390])
def test_a_lead_searches_filters_pages_and_opens_a_pair(browser: Browser, live_server, width):
    browsed = browsed_project()
    prompt = PromptFactory(
        project=browsed.project,
        content="A long prompt that goes on " + "and on " * 60 + "<script>window.__xss = 1</script>",
        category="bulk",
    )
    for index in range(52):
        PairFactory(prompt=prompt, external_id=f"bulk-{index:02d}")
    search_documents_fill(project_id=browsed.project.pk)
    pairs = f"/projects/{browsed.project.slug}/pairs/"

    with page_without_script_errors(browser, width=width, height=900, timeout_ms=15_000) as page:
        page.goto(f"{live_server.url}/login/?next=/projects/{browsed.project.slug}/")
        page.fill("#id_username", "lead")
        page.fill("#id_password", PASSWORD)
        page.click("main button[type=submit]")
        page.click("nav.tabs a:text('Pairs')")
        page.wait_for_url(f"**{pairs}")
        assert names(page)[:5] == ["unanimous", "majority", "split", "single", "gold"]
        assert len(names(page)) == 50
        fits(page, width, "pairs")

        page.click("a[rel=next]")
        page.wait_for_selector("a[rel=prev]")
        assert names(page) == ["bulk-45", "bulk-46", "bulk-47", "bulk-48", "bulk-49", "bulk-50", "bulk-51"]

        page.goto(f"{live_server.url}{pairs}")
        page.fill("#pf-q", "capital or haiku or sorting")
        page.select_option("#pf-contested", "yes")
        page.click("main button[type=submit]")
        page.wait_for_url("**contested=yes**")
        assert names(page) == ["majority", "split"]
        assert page.input_value("#pf-q") == "capital or haiku or sorting"
        fits(page, width, "pairs-searched")

        page.click("td.pair-name a:text('majority')")
        page.wait_for_selector("table.votes")
        assert page.locator("table.votes tbody tr").count() == 3
        assert "Majority" in page.inner_text(".pair-facts")
        assert page.evaluate("window.__xss") is None
        fits(page, width, "pair-detail")
        page.click("text=← Back to the pairs")
        page.wait_for_url("**contested=yes**")
        assert names(page) == ["majority", "split"]

        page.goto(f"{live_server.url}{pairs}?status=finished&gold=maybe")
        page.wait_for_selector("text=These filters cannot be used")
        errors = page.inner_text(".alert .errors")
        assert "status:" in errors and "gold: must be yes or no" in errors
        fits(page, width, "pairs-bad-filter")

        # Just imported, its search documents not built yet: a search says so, and misses it until then.
        PairFactory(prompt=PromptFactory(project=browsed.project, content="The capital of Mongolia?"))
        page.goto(f"{live_server.url}{pairs}?q=capital")
        notice = page.inner_text("[role=status]")
        assert (
            "Search covers what was indexed; 3 items (prompts and responses) are still being indexed"
            in notice
        )
        assert names(page) == ["split"]  # not the Mongolian capital, until its documents are built
        fits(page, width, "pairs-indexing")
