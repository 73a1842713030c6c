"""Every page in Debian's Chromium under the Content-Security-Policy, as the role that uses it, with hostile
markup stored in every imported field the page shows (tests/stored_payloads.py). A page fails on any policy
violation, JavaScript error, dialog, request to another origin or to the markup's image, and any link or
image that came from the data. The leaderboard's charts draw system names as text; the leaderboard, quality
and members pages fit a phone's width; a missing project gets the product's 404 page."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.utils.http import urlencode
from playwright.sync_api import Browser, BrowserContext, Page

from annotate.models import Membership, Pair
from annotate.services.agreement import agreement_snapshot_refresh
from annotate.services.leaderboard import leaderboard_public_link_set
from rewardtrain.models import ResponseScore, TrainingRun
from tests.browser import ARTIFACTS
from tests.factories import UserFactory
from tests.rewardtrain.scoring_data import reward_model_row
from tests.stored_payloads import MARKUP, SYSTEMS, Stored, stored_payload_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Collected in the page before any of its own scripts run.
WATCH_POLICY = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " blocked " + (event.blockedURI || "inline"));
});
"""
CHARTS = ("#chart-ratings", "#chart-time", "#chart-observed", "#chart-predicted")
IN_VIEW = """(selector) => {
  const box = document.querySelector(selector).getBoundingClientRect();
  return box.top >= 0 && box.bottom <= window.innerHeight;
}"""


@dataclass
class Watch:
    origin: str
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("dialog", self._dialog)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def _console(self, message) -> None:
        if message.type == "error" and "status of 40" not in message.text:
            self.problems.append(f"console: {message.text}")

    def check(self, page: Page, where: str) -> None:
        page.wait_for_timeout(150)  # violation events are dispatched after the blocked load
        violations = page.evaluate("window.__violations || []")
        outside = [
            url
            for url in self.requests
            if not (url.startswith(self.origin) or url.startswith("data:"))
            or url.split("?")[0].endswith("/x")
        ]
        links = page.locator('a[href^="https://example.org"], svg a, img[src="x"]').count()
        assert (violations, outside, links, self.problems) == ([], [], 0, []), where
        self.requests.clear()


def _context(browser: Browser, live_server, user, *, width: int = 1366) -> BrowserContext:
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(WATCH_POLICY)
    if user is not None:
        client = Client()
        client.force_login(user)
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
    return context


def _watched_page(browser: Browser, live_server, user, *, width: int) -> tuple[BrowserContext, Page, Watch]:
    context = _context(browser, live_server, user, width=width)
    page = context.new_page()
    watch = Watch(origin=live_server.url)
    watch.attach(page)
    return context, page, watch


@pytest.fixture
def stored() -> Stored:
    return stored_payload_project()


@pytest.fixture
def run_id(stored: Stored) -> int:
    """A finished run whose model (v2, active) and the one before it scored every response: the run page
    draws its training charts and reward hacking checks, the leaderboard its reward model view."""
    first = reward_model_row(stored.project, "unused", version=1, active=False)
    second = reward_model_row(stored.project, "unused", version=2, active=True)
    for pair in Pair.objects.filter(project=stored.project).select_related("response_a", "response_b"):
        for response, score in ((pair.response_a, 1.0), (pair.response_b, -0.5)):
            ResponseScore.objects.create(response=response, reward_model=first, score=score)
            ResponseScore.objects.create(
                response=response, reward_model=second, score=2 * score + pair.pk % 3
            )
    TrainingRun.objects.filter(pk=second.run_id).update(
        total_steps=4,
        step=4,
        metrics=[
            {"step": step, "loss": 0.7 - 0.1 * step, "accuracy": 0.5 + 0.1 * step} for step in range(1, 5)
        ],
        evaluation={
            "accuracy": 0.8,
            "count": 10,
            "loss": 0.4,
            "ece": 0.05,
            "brier": 0.2,
            "reward_mean": 0.1,
            "reward_std": 1.0,
            "calibration": [{"confidence": 0.7, "accuracy": 0.75, "count": 5}],
            "length_bias": {
                "accuracy_when_chosen_shorter": 0.7,
                "count_chosen_shorter": 5,
                "accuracy_when_chosen_longer": 0.9,
                "count_chosen_longer": 5,
            },
            "histogram": {"edges": [-1.0, 0.0, 1.0], "chosen": [1, 4], "rejected": [4, 1]},
        },
    )
    return second.run_id


def _visit(page: Page, watch: Watch, path: str, ready: str | None = None) -> None:
    response = page.goto(f"{watch.origin}{path}")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"], path
    if ready:
        page.wait_for_selector(ready, state="attached")
    watch.check(page, path)


def test_every_page_works_under_the_policy_with_hostile_imported_text(browser, live_server, stored, run_id):
    slug = stored.project.slug
    token = leaderboard_public_link_set(project=stored.project, enabled=True).leaderboard_public_token
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    first_pair = Pair.objects.filter(project=stored.project).order_by("pk").values_list("pk", flat=True)[0]
    charts = ", ".join(f"{chart} .main-svg" for chart in CHARTS)
    visits = [
        (
            None,
            [
                ("/login/", "#id_username"),
                ("/account/password-reset/", "#id_email"),
                (f"/leaderboard/public/{token}/", charts),
            ],
        ),
        (
            stored.lead,
            [
                ("/", None),
                (f"/projects/{slug}/", None),
                (f"/projects/{slug}/members/", None),
                (f"/projects/{slug}/members/{stored.annotators[0].username}/remove/", None),
                (f"/projects/{slug}/settings/", "#s-guidelines"),
                ("/account/password/", "#id_old_password"),
                (f"/projects/{slug}/import/", None),
                (f"/projects/{slug}/exports/", None),
                (f"/projects/{slug}/leaderboard/", charts),
                (f"/projects/{slug}/leaderboard/?split_by=locale&{urlencode({'category': MARKUP})}", None),
                (f"/projects/{slug}/quality/", "#chart-kappa .main-svg"),
                (f"/projects/{slug}/pairs/", ".pair-table"),
                (f"/projects/{slug}/pairs/?{urlencode({'q': MARKUP, 'system': MARKUP})}", None),
                (f"/projects/{slug}/pairs/{first_pair}/", "table.votes"),
                ("/projects/no-such-project/", None),
            ],
        ),
        (
            stored.engineer,
            [
                (f"/projects/{slug}/training/", None),
                (f"/projects/{slug}/training/{run_id}/", "#chart-check-drift .main-svg"),
                (f"/projects/{slug}/scoring/", "#scoring-prompt"),
            ],
        ),
        (stored.annotators[0], [(f"/projects/{slug}/annotate/", "#workspace[data-state=done]")]),
        (
            admin,
            [
                ("/admin/", "#content"),
                ("/projects/new/", "#s-name"),
                ("/admin/annotate/project/", "#result_list"),
                (f"/admin/annotate/project/{stored.project.pk}/change/", "form"),
                ("/api/docs/", ".swagger-ui .info"),
                ("/api/projects/", ".response-info"),
            ],
        ),
    ]
    for user, paths in visits:
        context = _context(browser, live_server, user)
        page = context.new_page()
        watch = Watch(origin=live_server.url)
        watch.attach(page)
        for path, ready in paths:
            _visit(page, watch, path, ready)
        context.close()


@pytest.mark.parametrize("public", [False, True], ids=["page", "public link"])
def test_leaderboard_charts_draw_imported_markup_as_text(browser, live_server, stored, public):
    path = f"/projects/{stored.project.slug}/leaderboard/"
    user = stored.lead
    if public:
        token = leaderboard_public_link_set(project=stored.project, enabled=True).leaderboard_public_token
        path, user = f"/leaderboard/public/{token}/", None
    context = _context(browser, live_server, user)
    page = context.new_page()
    watch = Watch(origin=live_server.url)
    watch.attach(page)
    _visit(page, watch, path, ", ".join(f"{chart} .main-svg" for chart in CHARTS))

    # Axes and legends cut long names short, as text: the markup's first characters, drawn as they are.
    for texts in (
        "#chart-ratings .ytick text",
        "#chart-observed .xtick text",
        "#chart-predicted .ytick text",
        "#chart-time .legendtext",
    ):
        drawn = page.locator(texts).all_text_contents()
        assert any(text.startswith('<a href="') and text.endswith("…") for text in drawn), (texts, drawn)

    def hover_text(chart: str) -> str:
        page.wait_for_timeout(100)  # Plotly redraws a hover label at most every few tens of milliseconds
        return page.locator(f"#{chart} .hoverlayer .hovertext").first.text_content() or ""

    ratings = []
    for index in range(len(SYSTEMS)):
        page.evaluate(
            "(index) => Plotly.Fx.hover('chart-ratings', [{curveNumber: 1, pointNumber: index}])", index
        )
        ratings.append(hover_text("chart-ratings"))
    page.locator("#chart-observed").scroll_into_view_if_needed()
    box = page.locator("#chart-observed .nsewdrag").first.bounding_box()
    cell = box["width"] / len(SYSTEMS), box["height"] / len(SYSTEMS)
    observed = []
    for row in range(len(SYSTEMS)):
        column = (row + 1) % len(SYSTEMS)
        page.mouse.move(box["x"] + (column + 0.5) * cell[0], box["y"] + (row + 0.5) * cell[1], steps=4)
        observed.append(hover_text("chart-observed"))
    assert len(set(ratings)) == len(SYSTEMS) and any(MARKUP in text for text in ratings), ratings
    assert len(set(observed)) == len(SYSTEMS) and any(text.startswith(MARKUP) for text in observed), observed
    watch.check(page, "after hovering")
    context.close()


@pytest.mark.parametrize("width", [1366, 390])
def test_the_leaderboard_quality_and_members_pages_fit_the_screen(browser, live_server, stored, width):
    # Two annotator groups, so the quality page draws its group tables.
    Membership.objects.filter(user=stored.annotators[1]).update(attributes={"locale": "fr-FR"})
    agreement_snapshot_refresh(project_id=stored.project.pk, force=True)
    context = _context(browser, live_server, stored.lead, width=width)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    watch = Watch(origin=live_server.url)
    watch.attach(page)
    slug = stored.project.slug

    _visit(page, watch, f"/projects/{slug}/leaderboard/", "#chart-predicted .main-svg")
    page.click("text=Create a public link")
    page.wait_for_selector("input[data-select-on-focus]")
    page.focus("input[data-select-on-focus]")
    selected = page.evaluate("document.activeElement.selectionEnd - document.activeElement.selectionStart")
    assert selected == len(page.input_value("input[data-select-on-focus]"))
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"leaderboard-{width}.png", full_page=True)
    watch.check(page, "leaderboard")

    _visit(page, watch, f"/projects/{slug}/quality/", "#chart-kappa .main-svg")
    assert page.locator("table.group-alpha").count() > 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"quality-{width}.png", full_page=True)
    watch.check(page, "quality")

    _visit(page, watch, f"/projects/{slug}/members/", "#api-tokens")
    page.fill("#t-name", "nightly scorer")
    page.click(".token-form button[type=submit]")
    page.wait_for_selector("#new-token-secret")
    # The secret is shown once: in view and focused (selected), not below the fold.
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement.id") == "new-token-secret"
    assert page.evaluate(IN_VIEW, "#new-token-secret")
    page.screenshot(path=ARTIFACTS / f"members-new-token-{width}.png")
    page.click("button[data-copy=new-token-secret]")
    page.wait_for_selector("button[data-copy=new-token-secret]:text('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.input_value("#new-token-secret") and copied
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"members-{width}.png", full_page=True)
    watch.check(page, "members")
    context.close()


@pytest.mark.parametrize("width", [1366, 390])
def test_the_run_page_reports_calibration_as_confidence_against_correctness(
    browser, live_server, stored, run_id, width
):
    context, page, watch = _watched_page(browser, live_server, stored.lead, width=width)
    _visit(page, watch, f"/projects/{stored.project.slug}/training/{run_id}/", "#chart-calibration .main-svg")
    report = page.inner_text("#eval-title + .eval-stats")
    assert "calibration error (ECE)" in report and "Brier score against the vote share" in report
    assert "0.200" in report
    axes = page.inner_text("#chart-calibration")
    assert "confidence in the preferred response" in axes and "share ranked right" in axes
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"run-evaluation-{width}.png", full_page=True)
    context.close()


@pytest.mark.parametrize("width", [1366, 390])
def test_a_missing_project_gets_the_product_s_404_page_even_with_debug_on(
    browser, live_server, stored, settings, width
):
    settings.DEBUG = True  # as `make run` has it
    context, page, watch = _watched_page(browser, live_server, stored.lead, width=width)

    response = page.goto(f"{live_server.url}/projects/no-such-project/")
    assert response is not None and response.status == 404
    assert page.inner_text("h1") == "Page not found"
    assert page.is_visible("text=Back to your projects")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"not-found-{width}.png", full_page=True)
    watch.check(page, "not found")
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon and page.request.get(f"{live_server.url}{icon}").ok
    assert page.goto(f"{live_server.url}/favicon.ico").url.endswith(icon)
    context.close()


@pytest.mark.parametrize("width", [1366, 390])
def test_a_failed_run_does_not_promise_curves(browser, live_server, stored, width):
    run = TrainingRun.objects.create(
        project=stored.project,
        base_model="tiny",
        status=TrainingRun.Status.FAILED,
        error="The base model could not be loaded.",
    )
    context, page, watch = _watched_page(browser, live_server, stored.engineer, width=width)

    _visit(page, watch, f"/projects/{stored.project.slug}/training/{run.pk}/", "#chart-loss .chart-empty")
    assert page.inner_text("#chart-loss") == "No steps were recorded: the run ended before its first step."
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"run-failed-{width}.png", full_page=True)
    context.close()


# Everything Plotly drew for a chart lies within the chart's own box.
DRAWN_INSIDE = """(id) => {
  const box = document.getElementById(id).getBoundingClientRect();
  const drawn = [...document.querySelectorAll(`#${id} .main-svg, #${id} .legend, #${id} .xtitle`)];
  return drawn.length > 0 && drawn.every((node) => {
    const part = node.getBoundingClientRect();
    return part.top >= box.top - 1 && part.bottom <= box.bottom + 1;
  });
}"""


def _points(page: Page) -> int:
    return page.evaluate("(document.getElementById('chart-loss').data || [{x: []}])[0].x.length")


@pytest.mark.parametrize("width", [1366, 390])
def test_a_run_under_way_draws_its_charts_in_their_boxes_and_its_attempt_keeps_up(
    browser, live_server, stored, width
):
    run = TrainingRun.objects.create(project=stored.project, base_model="tiny")
    context, page, watch = _watched_page(browser, live_server, stored.engineer, width=width)
    _visit(page, watch, f"/projects/{stored.project.slug}/training/{run.pk}/", "#chart-loss .chart-empty")
    assert page.inner_text("#run-attempts") == "0 of 3"
    page.evaluate("document.getElementById('chart-loss').dataset.kept = 'yes'")

    # A worker claims the run and records its first steps; the page polls every 2 s.
    metrics = [{"step": step, "loss": 0.7 - 0.05 * step, "accuracy": 0.5 + 0.04 * step} for step in (1, 2, 3)]
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, attempts=1, worker="gpu-1@host", total_steps=10, step=2,
        metrics=metrics[:2], log="attempt 1 on gpu-1@host\n",
    )  # fmt: skip
    page.wait_for_selector("#chart-loss .main-svg")
    page.wait_for_selector("#run-attempts:has-text('1 of 3')")
    assert page.inner_text("#run-worker").startswith("gpu-1@host")
    TrainingRun.objects.filter(pk=run.pk).update(step=3, metrics=metrics)
    deadline = time.monotonic() + 10
    while _points(page) < 3:
        assert time.monotonic() < deadline, "the chart did not take the third step"
        page.wait_for_timeout(100)

    for chart in ("chart-loss", "chart-accuracy"):
        assert page.locator(f"#{chart} .chart-empty, #{chart} .modebar-btn").count() == 0, chart
        assert page.evaluate(DRAWN_INSIDE, chart), chart
    assert page.evaluate("document.getElementById('chart-loss').dataset.kept") == "yes"  # updated in place
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.locator("#run-live").screenshot(path=ARTIFACTS / f"run-live-{width}.png")
    page.screenshot(path=ARTIFACTS / f"run-running-{width}.png", full_page=True)
    watch.check(page, "run under way")
    context.close()


def _trial_points(page: Page) -> int:
    return page.evaluate(
        "(document.getElementById('chart-trial-learning_rate').data || []).reduce((n, t) => n + t.x.length, 0)"
    )


@pytest.mark.parametrize("width", [1366, 390])
def test_a_search_run_shows_its_trials_and_their_charts_in_their_boxes(
    browser, live_server, stored, settings, width
):
    from rewardtrain.models import SearchTrial
    from tests.rewardtrain.runs_data import search_run_with_trials

    settings.TRAINING_BASE_MODELS = "tiny=/models/tiny"
    run = search_run_with_trials(stored.project, "tiny", finished=False)
    context, page, watch = _watched_page(browser, live_server, stored.engineer, width=width)
    _visit(
        page,
        watch,
        f"/projects/{stored.project.slug}/training/{run.pk}/",
        "#chart-trial-learning_rate .main-svg",
    )
    assert _trial_points(page) == 4
    page.evaluate("document.getElementById('chart-trial-learning_rate').dataset.kept = 'yes'")

    # The running trial finishes with the best figure so far; the page polls every 2 s.
    SearchTrial.objects.filter(run=run, number=3).update(
        status=SearchTrial.Status.SUCCEEDED,
        value=0.85,
        result={"evaluation": {"accuracy": 0.85, "loss": 0.41}},
    )
    page.wait_for_selector(".trials-table tr:has-text('#3') .badge.succeeded")
    charts = [
        f"chart-trial-{name}" for name in ("learning_rate", "num_epochs", "warmup_ratio", "weight_decay")
    ]
    for chart in charts:
        assert page.evaluate(DRAWN_INSIDE, chart), chart
    assert page.evaluate("document.getElementById('chart-trial-learning_rate').dataset.kept") == "yes"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.locator("#run-live").screenshot(path=ARTIFACTS / f"search-live-{width}.png")
    page.screenshot(path=ARTIFACTS / f"search-running-{width}.png", full_page=True)
    watch.check(page, "search under way")

    finished = search_run_with_trials(stored.project, "tiny")
    _visit(
        page,
        watch,
        f"/projects/{stored.project.slug}/training/{finished.pk}/",
        "#chart-trial-learning_rate .main-svg",
    )
    assert page.locator(".trials-table tr.best").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"search-finished-{width}.png", full_page=True)

    # A search whose best two trials became one ensemble (ensemble_top_k): both marked as members.
    evaluation = finished.evaluation
    evaluation["search"]["ensemble_trials"] = [0, 2]
    type(finished).objects.filter(pk=finished.pk).update(evaluation=evaluation)
    _visit(page, watch, f"/projects/{stored.project.slug}/training/{finished.pk}/", ".trials-table")
    assert page.locator(".trials-table .badge:text-is('Member')").count() == 2
    assert "An ensemble of trials #0, #2" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=ARTIFACTS / f"search-ensemble-{width}.png", full_page=True)
    context.close()
