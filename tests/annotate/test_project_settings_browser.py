"""The project creation and settings pages in Debian's Chromium, at a desktop and a phone width: a project is
created through the form, a bad value is refused in place, and removing a choice judgments use asks first."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Browser

from annotate.models import Project
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import JudgmentFactory, PairFactory, UserFactory

PASSWORD = "correct horse battery staple"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1366, 390])
def test_a_lead_creates_a_project_and_changes_its_settings(browser: Browser, live_server, width):
    creator = UserFactory(username=f"creator{width}")
    creator.user_permissions.add(Permission.objects.get(codename="add_project"))
    with page_without_script_errors(browser, width=width, height=900, timeout_ms=15_000) as page:
        page.goto(f"{live_server.url}/login/?next=/")
        page.fill("#id_username", creator.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.click("text=Create a project")
        page.wait_for_url("**/projects/new/")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"project-new-{width}.png", full_page=True)

        page.fill("#s-name", "Summaries")
        page.fill("#s-criteria", "helpfulness\nsafety")
        page.uncheck("input[name=allowed_choices][value=both_bad]")
        page.fill("#s-overlap", "0")
        page.click("button:text('Create project')")
        assert page.inner_text("[role=alert]") == "overlap: Ensure this value is greater than or equal to 1."
        assert page.get_attribute("#s-overlap", "aria-invalid") == "true"
        assert page.input_value("#s-criteria") == "helpfulness\nsafety"
        page.screenshot(path=ARTIFACTS / f"project-new-error-{width}.png", full_page=True)

        page.fill("#s-overlap", "2")
        page.click("button:text('Create project')")
        page.wait_for_url("**/projects/summaries/import/")
        project = Project.objects.get(slug="summaries")
        assert (project.criteria, project.allowed_choices, project.overlap) == (
            ["helpfulness", "safety"],
            ["left", "right", "tie"],
            2,
        )

        JudgmentFactory(pair=PairFactory(prompt__project=project), choice="tie")
        page.click("nav.tabs >> text=Settings")
        page.wait_for_url("**/projects/summaries/settings/")
        page.uncheck("input[name=allowed_choices][value=tie]")
        page.fill("#s-guidelines", "Prefer the **shorter** answer when both are right.")
        page.click("button:text('Save settings')")
        page.wait_for_selector("#confirm-change")
        assert "1 judgment chose 'tie'" in page.inner_text("#confirm-change")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"project-settings-confirm-{width}.png", full_page=True)

        page.click("button:text('Save anyway')")
        page.wait_for_selector("text=Settings saved.")
        project.refresh_from_db()
        assert project.allowed_choices == ["left", "right"]
        assert project.guidelines.startswith("Prefer the **shorter**")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"project-settings-{width}.png", full_page=True)
