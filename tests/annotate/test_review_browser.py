"""Flags, history and settling in Debian's Chromium at a desktop and a phone width: an annotator reports a
pair from the workspace (F) and it is skipped; the lead finds the flag, settles the pair and the flag closes;
an annotator reads their history and changes a recent judgment. No page is wider than the screen."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page

from annotate.models import Adjudication, Assignment, Judgment, Membership, PairFlag
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import (
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

PASSWORD = "correct horse battery staple"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = [1366, 390]


def _project(pairs: int = 2, **config):
    project = ProjectFactory(overlap=1, **config)
    for number in range(pairs):
        prompt = PromptFactory(project=project, content=f"Prompt {number}: how do I boil an egg?")
        PairFactory(
            prompt=prompt,
            response_a=ResponseFactory(
                prompt=prompt, content=f"Answer A{number}: **ten** minutes.", system="alpha"
            ),
            response_b=ResponseFactory(
                prompt=prompt, content=f"Answer B{number}: in a kettle.", system="beta"
            ),
        )
    return project


def _member(project, username: str, role: str):
    user = UserFactory(username=username)
    MembershipFactory(user=user, project=project, role=role)
    return user


def _log_in(page: Page, live_server, username: str, target: str) -> None:
    page.goto(f"{live_server.url}{reverse('login')}?next={target}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}")


def _wait_until(page: Page, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        page.wait_for_timeout(50)


def _fits(page: Page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_an_annotator_reports_a_pair_and_it_is_skipped(browser: Browser, live_server, width):
    project = _project()
    annotator = _member(project, f"annie{width}", Membership.Role.ANNOTATOR)
    with page_without_script_errors(browser, width=width, height=900, timeout_ms=10_000) as page:
        _log_in(page, live_server, annotator.username, reverse("project-annotate", args=[project.slug]))
        page.wait_for_selector("#workspace[data-state=pair]", state="attached")
        shown = page.inner_text("#left")
        page.keyboard.press("f")
        page.wait_for_selector("#flag-dialog[open]")
        assert page.evaluate("document.activeElement.name") == "flag-category"
        page.check("input[name=flag-category][value=other]")
        page.click("#flag-dialog button[value=flag]")
        assert page.inner_text("#flag-missing") == "Say what is wrong."
        assert page.is_visible("#flag-dialog[open]")
        assert "required" in page.inner_text("#flag-text-need")
        page.fill("#flag-text", "The prompt asks two questions at once")
        _fits(page, width)
        page.screenshot(path=ARTIFACTS / f"annotate-flag-dialog-{width}.png")
        page.click("#flag-dialog button[value=flag]")
        _wait_until(page, lambda: PairFlag.objects.filter(annotator=annotator).exists())
        flag = PairFlag.objects.get(annotator=annotator)
        assert (flag.category, flag.text) == ("other", "The prompt asks two questions at once")
        lease = Assignment.objects.get(pair=flag.pair, annotator=annotator)
        assert lease.status == Assignment.Status.SKIPPED
        page.wait_for_selector("text=Reported.")
        page.wait_for_selector("#workspace[data-state=pair]", state="attached")
        assert page.inner_text("#left") != shown
        page.wait_for_selector("#progress:has-text('1 left for you')")  # a flag is a skip for them
        assert not Judgment.objects.exists()
        page.screenshot(path=ARTIFACTS / f"annotate-flag-reported-{width}.png")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_lead_settles_a_flagged_pair_from_the_flags_page(browser: Browser, live_server, width):
    project = _project(pairs=1)
    annotator = _member(project, f"annie{width}", Membership.Role.ANNOTATOR)
    other = _member(project, f"otto{width}", Membership.Role.ANNOTATOR)
    lead = _member(project, f"lead{width}", Membership.Role.LEAD)
    pair = project.pairs.get()
    JudgmentFactory(pair=pair, annotator=other, choice="a", rationale="A gives a time")
    PairFlag.objects.create(
        pair=pair,
        annotator=annotator,
        category="harmful",
        text="B suggests a kettle",
        created_at=pair.created_at,
    )
    with page_without_script_errors(browser, width=width, height=900, timeout_ms=10_000) as page:
        _log_in(page, live_server, lead.username, reverse("project-flags", args=[project.slug]))
        assert "B suggests a kettle" in page.inner_text("main")
        _fits(page, width)
        page.screenshot(path=ARTIFACTS / f"flags-{width}.png", full_page=True)
        page.click("a.btn:text-is('Settle')")
        page.wait_for_url(f"**{reverse('project-pair-settle', args=[project.slug, pair.pk])}**")
        assert "A gives a time" in page.inner_text("main") and "alpha" in page.inner_text("main").lower()
        page.check("input[name=label][value=a]")
        page.fill("#settle-note", "B's advice is unsafe")
        _fits(page, width)
        page.screenshot(path=ARTIFACTS / f"settle-{width}.png", full_page=True)
        page.click("button:text('Settle the pair')")
        page.wait_for_url(f"**{reverse('project-flags', args=[project.slug])}**")
        page.wait_for_selector("text=settled: A is better")
        assert "No open flags" in page.inner_text("main")
        _fits(page, width)
    adjudication = Adjudication.objects.get(pair=pair)
    assert (adjudication.label, adjudication.note, adjudication.decided_by) == (
        "a",
        "B's advice is unsafe",
        lead,
    )
    assert PairFlag.objects.get().resolution == "settled"


@pytest.mark.parametrize("width", WIDTHS)
def test_an_annotator_reads_their_history_and_changes_a_recent_judgment(browser: Browser, live_server, width):
    project = _project(pairs=3, strength_scale=2)
    annotator = _member(project, f"annie{width}", Membership.Role.ANNOTATOR)
    pairs = list(project.pairs.order_by("id"))
    for pair, choice in zip(pairs, ("a", "b", "tie"), strict=True):
        JudgmentFactory(
            pair=pair, annotator=annotator, choice=choice, strength=2 if choice != "tie" else None
        )
    with page_without_script_errors(browser, width=width, height=900, timeout_ms=10_000) as page:
        _log_in(page, live_server, annotator.username, reverse("project-history", args=[project.slug]))
        text = page.inner_text("main")
        assert "Left better" in text and "Right better" in text and "Tie" in text
        assert "alpha" not in text and "beta" not in text
        _fits(page, width)
        page.screenshot(path=ARTIFACTS / f"history-{width}.png", full_page=True)
        page.click(
            f"a[href='{reverse('project-history-edit', args=[project.slug, pairs[2].judgments.get().pk])}']"
        )
        page.wait_for_selector("text=The pair as you saw it")
        page.check("input[name=choice][value=right]")
        page.select_option("#edit-strength", "1")
        _fits(page, width)
        page.screenshot(path=ARTIFACTS / f"history-edit-{width}.png", full_page=True)
        page.click("button:text('Save change')")
        page.wait_for_url(f"**{reverse('project-history', args=[project.slug])}")
        page.wait_for_selector("text=Change saved.")
    judgment = pairs[2].judgments.get()
    assert (judgment.choice, judgment.strength, judgment.revision) == ("b", 1, 2)
