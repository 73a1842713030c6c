"""The quality dashboard in Debian's Chromium through Playwright: the charts draw from the locally served
plotly, the annotator table sorts on a click, and the contested pairs' drill-down loads with htmx and runs
none of the untrusted text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page

from annotate.models import Membership
from annotate.services.adjudication import pair_adjudicate
from tests.annotate.quality_data import crafted_project, judge
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import MembershipFactory, PairFactory, UserFactory

PASSWORD = "correct horse battery staple"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    # Closed before the live server's database is emptied (see tests/annotate/test_annotate_page.py).
    with page_without_script_errors(browser, width=1366, height=900, timeout_ms=15_000) as page:
        yield page


def test_the_dashboard_draws_sorts_and_drills_down_without_calling_out(page, live_server):
    crafted = crafted_project()
    project = crafted.project
    lead = UserFactory(username="leader")
    MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
    pair = PairFactory(
        prompt__project=project,
        prompt__content="Pick one <script>window.__xss = 1</script>",
        response_a__content='<img src=x onerror="window.__xss = 2"> plain',
        response_b__content="**bold** answer",
    )
    judge(
        pair,
        crafted.users["ann"],
        "a",
        1,
        swapped=False,
        minutes=1,
        rationale="<script>window.__xss = 3</script>",
    )
    judge(pair, crafted.users["ben"], "b", 1, swapped=True, minutes=1)
    judge(pair, crafted.users["cat"], "tie", None, swapped=False, minutes=1)
    pair_adjudicate(pair=pair, label="b", note="B is the only one that answers", decided_by=lead)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    target = reverse("project-quality", args=[project.slug])
    page.goto(f"{live_server.url}{reverse('login')}?next={target}")
    page.fill("#id_username", "leader")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}")

    for chart in ("#chart-over-time", "#chart-kappa", "#chart-position"):
        page.wait_for_selector(f"{chart} .main-svg")

    def names() -> list[str]:
        cells = page.locator(".annotator-table tbody td.cell-title")
        return cells.evaluate_all("cells => cells.map(cell => cell.dataset.value)")

    assert names() == ["ann", "ben", "cat", "guesser", "lefty"]
    assert "; 1 pair settled by a lead" in page.inner_text(".stats")
    settled_row = page.locator(".contested-table tr", has_text="Pick one")
    assert "Settled: B is better" in settled_row.inner_text()
    assert settled_row.get_by_role("link", name="Settle").count() == 1

    left = page.locator(".annotator-table th button.sort", has_text="Left")
    left.click()
    assert names()[-1] == "lefty"  # ascending: lefty, who always picks left, comes last
    left.click()
    assert names()[0] == "lefty"
    assert page.get_attribute(".annotator-table th:has(button:text('Left'))", "aria-sort") == "descending"
    page.screenshot(path=ARTIFACTS / "quality-dashboard.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)  # the charts redraw for the new width
    page.screenshot(path=ARTIFACTS / "quality-dashboard-390.png", full_page=True)
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll("main *")]
            .filter((node) => node.getBoundingClientRect().right > 391 && !node.closest(".table-wrap, .chart"))
            .map((node) => node.tagName + "." + node.className)"""
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, overflowing[:10]
    page.set_viewport_size({"width": 1366, "height": 900})

    page.locator(".contested-table tr", has_text="Pick one").get_by_role("button", name="Show votes").click()
    page.wait_for_selector("#pair-detail .votes")
    detail = page.locator("#pair-detail")
    assert "<script>window.__xss = 1</script>" in detail.inner_text()  # shown as text
    assert detail.locator("strong", has_text="bold").count() == 1
    assert detail.locator("script, img").count() == 0
    assert detail.locator(".votes tbody tr").count() == 3
    assert "Settled: B is better" in detail.inner_text()
    assert detail.get_by_role("link", name="Change the settled label").count() == 1
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert requests and all(url.startswith(live_server.url) for url in requests), [
        url for url in requests if not url.startswith(live_server.url)
    ]
