"""docs/first-hour.md, step by step as written, through the pages in Chromium on a fresh database: the lead
reads the quality page, alice judges a few pairs with the keys, the engineer exports without the flagged
annotator, trains MiniLM (installed with Palate, on the CPU) on that export, batch scores with the model and
scores pasted responses on the Scoring tab. A real Celery worker builds the export, trains and scores.

Each step names the guide's section it follows; a change to the guide or the pages that breaks the walk-through
fails here."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import Browser, Page, expect

from annotate.models import Export, Judgment, Project
from annotate.services.demo import DEMO_PASSWORD
from rewardtrain.models import ResponseScore, RewardModel, TrainingRun
from tests.browser import ARTIFACTS
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

DEMO = "Assistant answers (demo)"
TRAINING_MINUTES = 10
SHOTS = ARTIFACTS / "first-hour"


@pytest.fixture
def fresh_demo(settings) -> Project:
    """Step 0: what `make run` seeds on a fresh database."""
    settings.TRAINING_BASE_MODELS = "minilm"
    settings.SCORING_TIMEOUT_SECONDS = 120  # the worker's first request loads the model
    call_command("seed_demo", stdout=StringIO())
    return Project.objects.get(name=DEMO)


def _log_in(page: Page, origin: str, username: str) -> None:
    page.goto(f"{origin}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{origin}/")


def _log_out(page: Page) -> None:
    page.click(".whoami button:text('Log out')")
    page.wait_for_url(re.compile(r"/login/"))


def _open_demo(page: Page) -> None:
    page.click(f"a.project-card:has-text('{DEMO}')")
    page.wait_for_selector("h1:text('Assistant answers (demo)')")


def _tab(page: Page, name: str) -> None:
    page.click(f"nav.tabs a:text-is('{name}')")
    page.wait_for_selector(f"nav.tabs a.active:text-is('{name}')")


def test_the_first_hour_as_written_ends_with_a_scored_model(
    fresh_demo, browser: Browser, celery_worker_process, live_server, terminal_summary
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    origin = live_server.url
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # 1. Lead: look at the project and its quality.
    _log_in(page, origin, "lead")
    _open_demo(page)
    overview = page.inner_text("main")
    assert "Guidelines" in overview and "Set-up" in overview
    _tab(page, "Members")
    members = page.inner_text("main")
    assert all(name in members for name in ("lead", "engineer", "alice", "bob", "carol"))
    _tab(page, "Leaderboard")
    page.wait_for_selector("table.leaderboard-table tbody tr")
    assert page.locator("table.leaderboard-table tbody tr").count() == 4
    _tab(page, "Quality")
    assert page.locator(".badge:text('Below target')").count() >= 1
    carol = page.locator("table.annotator-table tr", has=page.locator("td.cell-title:text('carol')"))
    assert "Position bias" in carol.inner_text()
    gate = page.locator("section.gate")
    assert "Closed" in gate.locator(".card-title").inner_text() and "What to do" in gate.inner_text()
    page.screenshot(path=SHOTS / "1-lead-quality.png", full_page=True)
    _log_out(page)

    # 2. Annotator: judge a few pairs.
    _log_in(page, origin, "alice")
    alice_before = Judgment.objects.filter(annotator__username="alice").count()
    _open_demo(page)
    page.click("a:text('Start annotating')")
    for judged in range(1, 4):
        page.wait_for_selector("#workspace[data-state=pair]", state="attached")
        page.keyboard.press("1")  # left is better
        page.keyboard.press("Shift+2")  # by this much
        page.keyboard.press("c")  # helpfulness ...
        page.keyboard.press("1")  # ... left
        page.keyboard.press("c")  # safety ...
        page.keyboard.press("1")  # ... left
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text(re.compile(rf"^{judged} done today"))
    wait_for(
        lambda: Judgment.objects.filter(annotator__username="alice").count() == alice_before + 3, seconds=15
    )
    _log_out(page)

    # 3. Engineer: export the data without the flagged annotator.
    _log_in(page, origin, "engineer")
    _open_demo(page)
    _tab(page, "Quality")
    assert "Closed" in page.locator("section.gate .card-title").inner_text()
    _tab(page, "Exports")
    page.check("input[name=exclude_flagged]")
    page.click("button:text('Start export')")
    succeeded = page.locator("#exports-list tbody tr").first.locator(".badge.succeeded")
    succeeded.wait_for(timeout=120_000)
    export = Export.objects.filter(project=fresh_demo).latest("pk")
    counts = {key: export.counts.get(key) for key in ("alpha", "judgments_counted", "excluded_annotators")}
    shown = page.locator("#exports-list tbody tr").first.locator("td[data-label=Alpha]").inner_text()
    # What the export counted, to tell a page that shows the wrong export from one whose votes did not vary.
    assert export.counts.get("alpha") is not None, counts
    assert float(shown) >= 0.667, (shown, counts)
    page.screenshot(path=SHOTS / "3-engineer-export.png", full_page=True)

    # 4. Engineer: train a reward model.
    _tab(page, "Training")
    page.check("input[name=source][value=export]")
    assert page.locator("#t-export option:checked").inner_text().endswith("1 annotator left out")
    assert page.locator("#t-base option:checked").inner_text().startswith("minilm (MiniLM-L6")
    assert not page.locator("input[name=allow_below_target]").is_checked()
    page.click("button:text('Start training')")
    page.wait_for_url(re.compile(r"/training/\d+/$"))
    # The page reloads itself when the run ends, with its evaluation and the active model's badge.
    page.wait_for_selector(
        ".badge:text('Model v1 is active'), #run-live .badge.failed", timeout=TRAINING_MINUTES * 60_000
    )
    run = TrainingRun.objects.get(project=fresh_demo)
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.error, run.log[-2000:])
    # How long the demo's first run took on the worker: the guide promises minutes on a laptop CPU.
    terminal_summary.append(
        f"First hour: the demo's first training run took {(run.finished_at - run.started_at).total_seconds():.0f} s"
        " on the worker (this run's machine, shared with the other tests)"
    )
    assert "Evaluation on the validation pairs" in page.inner_text("main")
    page.screenshot(path=SHOTS / "4-engineer-run.png", full_page=True)

    # 5. Engineer: score with the model.
    page.click("button:text('Start batch scoring')")
    # The page reloads when the job ends, with the reward hacking checks drawn from the stored scores.
    page.wait_for_selector("#chart-check-length", timeout=180_000)
    model = RewardModel.objects.get(project=fresh_demo, is_active=True)
    assert ResponseScore.objects.filter(reward_model=model).count() > 0
    assert re.search(r"(\d+) of \1 responses scored", page.inner_text("#scoring-job"))
    _tab(page, "Leaderboard")
    page.wait_for_selector("#reward-view-title:has-text('Reward model view')")
    assert "active model v1" in page.inner_text("#reward-view-title")
    _tab(page, "Scoring")
    page.fill("#scoring-prompt", "How do I undo my last git commit but keep the changes?")
    page.fill(
        "#response-1", "Run `git reset --soft HEAD~1`: the commit is undone and its changes stay staged."
    )
    page.fill("#response-2", "Delete the .git folder and start again.")
    page.click("text=Add a response")
    page.keyboard.type("I don't know.")
    page.click(".scoring-form button[type=submit]")
    page.wait_for_selector("#best-of-n", timeout=150_000)
    assert "Best of 3: Response" in page.inner_text("#best-of-n")
    assert page.locator(".scoring-table tbody tr").count() == 3
    page.screenshot(path=SHOTS / "5-engineer-scoring.png", full_page=True)
    context.close()
    assert not errors, errors
