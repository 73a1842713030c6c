"""One Content-Security-Policy, set in settings (django-csp), on every page: pages of every role, the
public leaderboard, the API's docs, the admin and error pages; the API's JSON answers get the strictest one. Scripts only from our own files: no
inline script and no inline event handler in any template, so the policy needs no 'unsafe-inline' for them.
tests/test_pages_browser.py checks in Chromium that every page still works under it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from annotate.services.leaderboard import leaderboard_public_link_set
from tests.factories import UserFactory
from tests.stored_payloads import stored_payload_project

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted([*(ROOT / "templates").rglob("*.html"), *ROOT.glob("*/templates/**/*.html")])


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def assert_strict(response) -> None:
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"], policy
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"] and policy["img-src"] == ["'self'", "data:"]


@pytest.mark.django_db
def test_every_page_and_endpoint_sends_the_one_policy():
    stored = stored_payload_project(prompts_per_match=1)
    slug = stored.project.slug
    token = leaderboard_public_link_set(project=stored.project, enabled=True).leaderboard_public_token
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    visits = {
        None: ["/login/", f"/leaderboard/public/{token}/", "/api/projects/"],
        stored.lead: [
            "/",
            f"/projects/{slug}/",
            f"/projects/{slug}/members/",
            f"/projects/{slug}/import/",
            f"/projects/{slug}/exports/",
            f"/projects/{slug}/leaderboard/",
            f"/projects/{slug}/quality/",
            "/projects/no-such-project/",
            f"/api/projects/{stored.project.pk}/leaderboard/",
        ],
        stored.engineer: [f"/projects/{slug}/training/", f"/projects/{slug}/annotate/"],
        stored.annotators[0]: [f"/projects/{slug}/annotate/"],
        admin: ["/admin/", "/api/docs/", "/api/docs/?script="],
    }
    seen = set()
    for user, paths in visits.items():
        client = Client()
        if user is not None:
            client.force_login(user)
        for path in paths:
            response = client.get(path)
            seen.add(response.status_code)
            if response["Content-Type"].startswith("application/json"):
                # An API answer renders nothing: it may load nothing and be framed nowhere.
                assert directives(response["Content-Security-Policy"]) == {
                    "default-src": ["'none'"],
                    "frame-ancestors": ["'none'"],
                }
            else:
                assert_strict(response)
    assert seen >= {200, 401, 403, 404}


def test_no_template_has_an_inline_script_or_event_handler():
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    handler = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
    found = []
    assert TEMPLATES
    for path in TEMPLATES:
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {match}" for match in inline_script.findall(text)]
        found += [f"{path.relative_to(ROOT)}: {match}" for match in handler.findall(text)]
        if "javascript:" in text:
            found.append(f"{path.relative_to(ROOT)}: javascript: URL")
    assert found == []
