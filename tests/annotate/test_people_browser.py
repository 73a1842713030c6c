"""People in Debian's Chromium at a desktop and a phone width: a lead invites a newcomer, copies the
one-time link and removes a member after the question; the newcomer sets a password through the link, logs
in and changes it; a forgotten password is reset."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import Browser, Page

from annotate.models import Membership
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "plum orchard seventeen kites"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def fits(page: Page, width: int, name: str) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, name
    page.screenshot(path=ARTIFACTS / f"{name}-{width}.png", full_page=True)


def choose_password(page: Page, password: str, confirmation: str) -> None:
    page.fill("#id_new_password1", password)
    page.fill("#id_new_password2", confirmation)
    page.click("main button[type=submit]")


def log_in(page: Page, origin: str, username: str, password: str, then: str = "/") -> None:
    page.goto(f"{origin}/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"**{then}")


@pytest.mark.parametrize("width", [1366, 390])
def test_a_lead_invites_and_removes_and_the_newcomer_sets_a_password(browser: Browser, live_server, width):
    project = ProjectFactory(name="Summaries", slug=f"summaries-{width}")
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD, user__username=f"lead{width}").user
    leaving = MembershipFactory(project=project, role="annotator", user__username=f"bea{width}").user
    JudgmentFactory(pair=PairFactory(prompt__project=project), annotator=leaving)
    members = f"/projects/{project.slug}/members/"

    with page_without_script_errors(browser, width=width, height=900, timeout_ms=15_000) as page:
        log_in(page, live_server.url, lead.username, PASSWORD, members)
        page.fill("#i-email", f"maria{width}@example.org")
        page.click(".invite-form button[type=submit]")
        page.wait_for_selector("#invitation")
        link = page.input_value("#invitation-link")
        assert link in mail.outbox[-1].body
        fits(page, width, "members-invited")

        page.click(f"a[aria-label='Remove {leaving.username}']")
        page.wait_for_selector("#remove-title")
        assert "Their 1 judgment stays" in page.inner_text(".consequences")
        fits(page, width, "member-remove")
        page.click(f"button:text('Remove {leaving.username}')")
        page.wait_for_selector(f"text={leaving.username} was removed from the project.")

    with page_without_script_errors(browser, width=width, height=900, timeout_ms=15_000) as page:
        page.goto(link)
        page.wait_for_selector("text=Choose your password")
        fits(page, width, "password-set")
        choose_password(page, NEW_PASSWORD, NEW_PASSWORD)
        page.wait_for_selector("text=Password set")
        fits(page, width, "password-set-done")

        log_in(page, live_server.url, f"maria{width}", NEW_PASSWORD)
        page.click("a:text('Password')")
        page.wait_for_url("**/account/password/")
        fits(page, width, "password-change")
        page.fill("#id_old_password", NEW_PASSWORD)
        choose_password(page, PASSWORD + " again", PASSWORD + " again")
        page.wait_for_selector("text=Password changed")
        fits(page, width, "password-change-done")


@pytest.mark.parametrize("width", [1366, 390])
def test_a_forgotten_password_is_reset_in_the_browser(browser: Browser, live_server, width):
    UserFactory(username=f"dee{width}", email=f"dee{width}@example.org")
    with page_without_script_errors(browser, width=width, height=900, timeout_ms=15_000) as page:
        page.goto(f"{live_server.url}/login/")
        page.click("text=Forgot your password?")
        page.wait_for_url("**/account/password-reset/")
        fits(page, width, "password-reset")
        page.fill("#id_email", f"dee{width}@example.org")
        page.click("main button[type=submit]")
        page.wait_for_selector("text=Check your email")
        fits(page, width, "password-reset-sent")

        link = re.search(r"http://\S+/account/password-reset/\S+/", mail.outbox[-1].body).group(0)
        page.goto(link)
        choose_password(page, NEW_PASSWORD, "something else entirely")
        page.wait_for_selector(".field-error")
        fits(page, width, "password-set-error")
        choose_password(page, NEW_PASSWORD, NEW_PASSWORD)
        page.wait_for_selector("text=Password set")
        log_in(page, live_server.url, f"dee{width}", NEW_PASSWORD)

        page.goto(link)
        page.wait_for_selector("text=This link no longer works")
        fits(page, width, "password-link-used")
