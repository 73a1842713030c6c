"""The seeded demo in Chromium at a laptop's and a phone's width: the training form's base models (MiniLM
installed, any hub id where the hub is on) and the quality page's advice on a closed gate fit the screen."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from annotate.models import Project
from annotate.services.agreement import agreement_snapshot_refresh
from tests.browser import ARTIFACTS, page_without_script_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(settings) -> Project:
    settings.TRAINING_BASE_MODELS = "minilm"
    settings.TRAINING_HUB_MODELS = True
    call_command("seed_demo", stdout=StringIO())
    project = Project.objects.get(slug="demo")
    agreement_snapshot_refresh(project_id=project.pk)
    return project


@pytest.mark.parametrize("width", [1366, 390])
def test_the_demo_s_training_form_and_quality_advice_fit_the_screen(demo, browser, live_server, width):
    client = Client()
    client.force_login(get_user_model().objects.get(username="lead"))
    with page_without_script_errors(browser, width=width, height=900, timeout_ms=15_000) as page:
        page.context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
        page.goto(f"{live_server.url}/projects/demo/training/")
        selected = page.locator("#t-base option:checked").inner_text()
        assert selected == "minilm (MiniLM-L6, a small English encoder that comes with Palate)"
        assert page.locator('#t-base option[value="hub:"]').count() == 1
        assert page.locator("#t-hub").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"demo-training-form-{width}.png", full_page=True)
        page.locator("fieldset", has=page.locator("#t-base")).screenshot(
            path=ARTIFACTS / f"demo-training-base-{width}.png"
        )

        page.goto(f"{live_server.url}/projects/demo/quality/")
        advice = page.locator(".gate-advice")
        assert "Leave the flagged annotator out" in advice.inner_text()
        assert advice.evaluate("element => element.scrollWidth <= element.clientWidth")
        box = advice.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
        page.locator("section.gate").screenshot(path=ARTIFACTS / f"demo-quality-gate-{width}.png")
