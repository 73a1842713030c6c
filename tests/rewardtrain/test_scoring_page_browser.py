"""The scoring page in Debian's Chromium with a real Celery worker scoring with the tiny reward model: boxes
added and removed, the scores and the best-of-N choice as the model computes them, an empty box refused, at
a laptop's and a phone's width (screenshots in test-artifacts/)."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import Browser

from annotate.models import Membership
from rewardtrain.scoring.engine import ScoringRequest, load_model, score_requests
from tests.browser import ARTIFACTS
from tests.factories import MembershipFactory, ProjectFactory
from tests.rewardtrain.scoring_data import reward_model_row

pytestmark = [pytest.mark.browser, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

PROMPT = "a letter by the window "
RESPONSES = ["the excellent kettle", "terrible rain on the road", "cold"]


def _page(browser: Browser, live_server, user, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(60_000)  # the worker's first request loads torch and the model
    client = Client()
    client.force_login(user)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, errors


def test_an_engineer_scores_pasted_responses_and_sees_the_best_of_n(
    browser, tiny_reward_model, celery_worker_process, live_server, settings
):
    settings.SCORING_TIMEOUT_SECONDS = 60
    project = ProjectFactory(name="Scoring page")
    model = reward_model_row(project, tiny_reward_model, version=2, active=True)
    engineer = MembershipFactory(project=project, role=Membership.Role.ENGINEER).user
    expected = score_requests(
        load_model(tiny_reward_model, device="cpu"), [ScoringRequest(PROMPT, tuple(RESPONSES))]
    )[0]
    best = int(expected.argmax())

    for width in (1366, 390):
        context, page, errors = _page(browser, live_server, engineer, width)
        page.goto(f"{live_server.url}/projects/{project.slug}/scoring/")
        assert page.locator("textarea[name=response]").count() == 2
        page.fill("#scoring-prompt", PROMPT)
        page.fill("#response-1", RESPONSES[0])
        page.fill("#response-2", "a box to remove")
        page.click("text=Add a response")
        assert page.evaluate("document.activeElement.id") == "response-3"
        page.keyboard.type(RESPONSES[1])
        page.click("[aria-label='Remove response 2']")
        # The boxes after it move up and take its number.
        assert page.input_value("#response-2") == RESPONSES[1]
        page.click("text=Add a response")
        page.keyboard.type(RESPONSES[2])
        page.keyboard.press("Control+Enter")

        page.wait_for_selector("#best-of-n")
        assert page.evaluate("document.activeElement.id") == "scoring-result-title"
        assert f"Scores from reward model v{model.version} (active)" in page.inner_text(
            "#scoring-result-title"
        )
        assert f"Best of 3: Response {best + 1}" in page.inner_text("#best-of-n")
        rows = page.locator(".scoring-table tbody tr")
        assert rows.count() == 3
        for index in range(3):
            cells = rows.nth(index).locator("td")
            assert cells.nth(2).inner_text() == f"{expected[index]:.3f}"
            assert ("Best" in cells.nth(0).inner_text()) == (index == best)
        # The form keeps what was scored, so one response can be changed and scored again.
        assert page.input_value("#response-3") == RESPONSES[2]
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"scoring-{width}.png", full_page=True)

        page.fill("#response-2", "   ")
        page.click(".scoring-form button[type=submit]")
        page.wait_for_selector("#scoring-error")
        assert page.evaluate("document.activeElement.id") == "scoring-error"
        assert "Nothing was scored" in page.inner_text("#scoring-error")
        assert "This box is empty" in page.inner_text("#response-2-error")
        assert page.locator("#best-of-n").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"scoring-error-{width}.png", full_page=True)
        context.close()
        assert not errors, errors
