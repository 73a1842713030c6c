"""The generation and audit pages in Debian's Chromium under the Content-Security-Policy, at a desktop's
and a phone's width: no policy violation or script error, nothing wider than the screen, the audit's charts
drawn. Screenshots go to test-artifacts/ (and SHOTS_DIR when set)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test import Client

from annotate.models import Membership
from generation.models import AuditComparison, GenerationJob, ModelAudit
from tests.browser import ARTIFACTS
from tests.factories import (
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    PromptFactory,
    ResponseFactory,
    SystemFactory,
    UserFactory,
)
from tests.rewardtrain.scoring_data import reward_model_row

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WATCH_POLICY = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " blocked " + (event.blockedURI || "inline"));
});
"""


def _filled_project():
    hot = SystemFactory(
        name="qwen-2.5-7b-instruct-temperature-1.2",
        base_url="http://vllm-inference.internal:8000/v1",
        api_key_env="VLLM_KEY",
    )
    project = hot.project
    cool = SystemFactory(project=project, name="cool", seed=None)
    prompts = PromptFactory.create_batch(3, project=project, category="held-out")
    finished = GenerationJob.objects.create(
        project=project, status="succeeded", samples=2, total=12, generated=11, failed=1, retries=3, pairs_created=12,
        progress=1.0, prompt_ids=[p.pk for p in prompts],
        usage={hot.name: {"responses": 6, "prompt_tokens": 310, "completion_tokens": 2900, "truncated": 2},
               "cool": {"responses": 5, "prompt_tokens": 250, "completion_tokens": 1200, "truncated": 0}},
        errors=["prompt 7, sample 1: system 'cool': the endpoint refused the request (400: context length exceeded)"],
    )  # fmt: skip
    finished.systems.set([hot, cool])
    running = GenerationJob.objects.create(
        project=project, status="failed", samples=1, total=3, generated=1, progress=0.33,
        error=f"system '{hot.name}': http://vllm-inference.internal:8000/v1 answered 503, after 4 retries: overloaded; 1 responses of this job are stored: run it again to go on from there",
        prompt_ids=[p.pk for p in prompts],
    )  # fmt: skip
    running.systems.set([hot])
    model = reward_model_row(project, "unused")
    audit = ModelAudit.objects.create(
        project=project, reward_model=model, system=hot, n_values=[1, 2, 4, 8], status="succeeded", scored=27,
        comparisons_made=12, progress=1.0,
    )  # fmt: skip
    for n, votes in ((1, ["a", "b"]), (2, ["a", "a"]), (4, ["a", "tie"]), (8, ["b", "a"])):
        for prompt in prompts:
            chosen, reference = ResponseFactory(prompt=prompt), ResponseFactory(prompt=prompt)
            pair = PairFactory(prompt=prompt, response_a=chosen, response_b=reference)
            for choice in votes:
                JudgmentFactory(pair=pair, choice=choice)
            AuditComparison.objects.create(
                audit=audit,
                prompt=prompt,
                n=n,
                chosen=chosen,
                reference=reference,
                pair=pair,
                chosen_score=0.2 * n,
            )
    return project, audit


def test_the_generation_and_audit_pages_fit_and_draw_without_errors(browser, live_server):
    project, audit = _filled_project()
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=Membership.Role.ENGINEER)
    client = Client()
    client.force_login(user)
    shots = [ARTIFACTS] + ([Path(os.environ["SHOTS_DIR"])] if os.environ.get("SHOTS_DIR") else [])
    pages = {
        "generation": f"/projects/{project.slug}/generation/",
        "audit": f"/projects/{project.slug}/generation/audits/{audit.pk}/",
        "system": f"/projects/{project.slug}/generation/systems/{audit.system_id}/",
        "best-of-n": f"/projects/{project.slug}/generation/best-of-n/",
    }
    for width in (1366, 390):
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.add_init_script(WATCH_POLICY)
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
        for name, path in pages.items():
            page.goto(live_server.url + path)
            if name == "audit":
                page.wait_for_selector("#audit-by-n .main-svg")
                page.wait_for_selector("#audit-by-kl .main-svg")
            page.wait_for_timeout(200)
            where = f"{name} at {width}px"
            assert page.evaluate("window.__violations") == [], where
            assert errors == [], where
            assert page.evaluate("document.documentElement.scrollWidth") <= width, where
            height = page.evaluate("document.documentElement.scrollHeight")
            for folder in shots:
                folder.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
                # A phone's page in screen-high parts, to look at in full size.
                for part, top in enumerate(range(0, height, 1200) if width < 600 else []):
                    clip = {"x": 0, "y": top, "width": width, "height": min(1200, height - top)}
                    page.screenshot(
                        path=str(folder / f"{name}-{width}-part{part + 1}.png"), full_page=True, clip=clip
                    )
        context.close()
