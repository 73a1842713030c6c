"""The annotator's workspace page, driven in Debian's Chromium through Playwright: judging by mouse and by
keyboard, undo, skip, progress, the end state, judgments kept through network failures and reloads, and
untrusted text that can neither run nor call out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, Route

from annotate.models import Assignment, Judgment, JudgmentRevision, Membership, Pair, Project
from annotate.services.judgments import to_pair_terms
from tests.browser import ARTIFACTS, page_without_script_errors
from tests.factories import (
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    # After the live server (and its database), so that the page is closed before the database is emptied:
    # a request the page still sends would otherwise deadlock with the flush.
    with page_without_script_errors(browser, width=1366, height=768, timeout_ms=10_000) as page:
        yield page


def make_project(*, pairs: int = 3, **config) -> tuple[Project, object]:
    defaults = {"strength_scale": 3, "criteria": ["helpfulness"], "overlap": 1}
    project = ProjectFactory(**{**defaults, **config})
    annotator = UserFactory(username="annie")
    MembershipFactory(user=annotator, project=project, role=Membership.Role.ANNOTATOR)
    for number in range(pairs):
        prompt = PromptFactory(project=project, content=f"Prompt number {number}: which answer is kinder?")
        PairFactory(
            prompt=prompt,
            response_a=ResponseFactory(prompt=prompt, content=f"Answer A{number} says **hello** warmly."),
            response_b=ResponseFactory(prompt=prompt, content=f"Answer B{number} says hello coldly."),
        )
    return project, annotator


def log_in(page: Page, live_server, project: Project, *, expect_pair: bool = True) -> None:
    """Through the login form, as the annotator, straight to the workspace."""
    target = reverse("project-annotate", args=[project.slug])
    page.goto(f"{live_server.url}{reverse('login')}?next={target}")
    page.fill("#id_username", "annie")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}")
    if expect_pair:
        wait_for_pair(page)


def wait_for_pair(page: Page) -> None:
    page.wait_for_selector("#workspace[data-state=pair]", state="attached")


def wait_until(page: Page, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls a condition (often on the database) while Playwright keeps handling the page's events."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        page.wait_for_timeout(50)


def judgments(annotator) -> list[Judgment]:
    return list(
        Judgment.objects.filter(annotator=annotator).select_related("pair", "assignment").order_by("id")
    )


def shown_pair(page: Page, project: Project) -> Pair:
    """The pair on screen, found from the left response's text."""
    text = page.inner_text("#left")
    pair = next(
        pair
        for pair in Pair.objects.filter(project=project).select_related("response_a", "response_b")
        if pair.response_a.content.replace("**", "") in text
        or pair.response_b.content.replace("**", "") in text
    )
    return pair


def assert_left_shows_what_the_lease_says(page: Page, judgment: Judgment, left_text: str) -> None:
    expected_left = judgment.pair.response_b if judgment.shown_swapped else judgment.pair.response_a
    assert expected_left.content.replace("**", "") in left_text


class TestAccess:
    pytestmark = pytest.mark.django_db

    def test_only_annotators_open_the_workspace(self, client):
        project, annotator = make_project(pairs=1)
        lead = UserFactory(username="lead")
        MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
        admin = UserFactory(username="root", is_staff=True, is_superuser=True)
        outsider = UserFactory(username="outsider")
        url = reverse("project-annotate", args=[project.slug])

        assert client.get(url).status_code == 302
        for user, status in ((annotator, 200), (lead, 403), (admin, 403), (outsider, 404)):
            client.force_login(user)
            assert client.get(url).status_code == status, user.username

    def test_the_workspace_page_forbids_scripts_and_remote_content(self, client):
        project, annotator = make_project(pairs=1)
        client.force_login(annotator)
        response = client.get(reverse("project-annotate", args=[project.slug]))
        policy = response["Content-Security-Policy"]
        assert (
            "script-src 'self'" in policy
            and "img-src 'self' data:" in policy
            and "frame-src 'none'" in policy
        )

    def test_annotators_get_a_tab_and_a_start_button_others_do_not(self, client):
        project, annotator = make_project(pairs=1)
        lead = UserFactory(username="lead")
        MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
        overview = reverse("project-detail", args=[project.slug])
        workspace = reverse("project-annotate", args=[project.slug])

        client.force_login(annotator)
        page = client.get(overview).content.decode()
        assert page.count(f'href="{workspace}"') == 2
        assert "Start annotating" in page
        client.force_login(lead)
        assert workspace not in client.get(overview).content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
class TestJudging:
    def test_a_judgment_made_with_the_mouse_is_stored_in_pair_terms(self, page, live_server):
        project, annotator = make_project(pairs=2, rationale=Project.Rationale.OPTIONAL)
        log_in(page, live_server, project)
        page.wait_for_function(
            "document.getElementById('progress').textContent === '0 done today · 0 in total · 2 left for you'"
        )
        left_text = page.inner_text("#left")
        page.click(".ws-choice[data-choice=left]")
        assert page.get_attribute(".ws-choice[data-choice=left]", "aria-pressed") == "true"
        page.click("#strength-options .ws-option[data-strength='3']")
        page.click(".ws-criterion .ws-option[data-value=right]")
        page.fill("#rationale", "Warmer and still correct.")
        page.screenshot(path=ARTIFACTS / "annotate-mouse-before-submit.png")
        page.click("#submit")

        wait_until(page, lambda: len(judgments(annotator)) == 1)
        [judgment] = judgments(annotator)
        swapped = judgment.shown_swapped
        assert judgment.shown_swapped == judgment.assignment.shown_swapped
        assert judgment.choice == ("b" if swapped else "a")
        assert judgment.strength == 3
        assert judgment.criteria == {"helpfulness": to_pair_terms("right", shown_swapped=swapped)}
        assert judgment.rationale == "Warmer and still correct."
        assert judgment.duration_ms is not None and judgment.duration_ms > 0
        assert_left_shows_what_the_lease_says(page, judgment, left_text)

        # The next pair was already there; the progress line counts the stored judgment.
        wait_for_pair(page)
        assert shown_pair(page, project) != judgment.pair
        page.wait_for_function(
            "document.getElementById('progress').textContent === '1 done today · 1 in total · 1 left for you'"
        )
        assert page.get_attribute(".ws-choice[data-choice=left]", "aria-pressed") == "false"

        page.click(".ws-choice[data-choice=both_bad]")
        page.click(".ws-criterion .ws-option[data-value=tie]")
        page.click("#submit")
        page.wait_for_selector("#workspace[data-state=done]")
        assert "You have judged every pair that still needs judgments" in page.inner_text("#done")
        page.screenshot(path=ARTIFACTS / "annotate-done.png")
        wait_until(page, lambda: len(judgments(annotator)) == 2)
        last = judgments(annotator)[-1]
        assert (last.choice, last.strength, last.criteria) == ("both_bad", None, {"helpfulness": "tie"})

    def test_a_judgment_made_with_the_keyboard_alone(self, page, live_server):
        project, annotator = make_project(pairs=3)
        log_in(page, live_server, project)
        first_left = page.inner_text("#left")

        page.keyboard.press("2")  # right is better
        page.keyboard.press("1")  # ... slightly: a second digit right after the choice
        page.keyboard.press("Enter")  # the criterion is missing: focus goes to it
        assert "helpfulness" in page.inner_text("#missing")
        page.keyboard.press("2")  # helpfulness: right
        page.screenshot(path=ARTIFACTS / "annotate-keyboard.png")
        page.keyboard.press("Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        [first] = judgments(annotator)
        assert first.choice == to_pair_terms("right", shown_swapped=first.shown_swapped)
        assert first.strength == 1
        assert first.criteria == {"helpfulness": to_pair_terms("right", shown_swapped=first.shown_swapped)}
        assert_left_shows_what_the_lease_says(page, first, first_left)

        wait_for_pair(page)
        page.keyboard.press("1")
        page.keyboard.press("Shift+3")  # strength with a modifier
        page.keyboard.press("ArrowDown")  # changed my mind: tie (which has no strength)
        page.keyboard.press("Enter")
        page.keyboard.press("ArrowLeft")  # focus went to helpfulness: left
        page.keyboard.press("Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 2)
        second = judgments(annotator)[-1]
        assert (second.choice, second.strength) == ("tie", None)
        assert second.criteria == {"helpfulness": to_pair_terms("left", shown_swapped=second.shown_swapped)}

        page.keyboard.press("?")
        assert page.is_visible("#shortcut-sheet")
        page.screenshot(path=ARTIFACTS / "annotate-shortcuts.png")
        page.keyboard.press("Escape")
        assert not page.is_visible("#shortcut-sheet")

    def test_typing_a_rationale_is_not_taken_for_shortcuts(self, page, live_server):
        project, annotator = make_project(
            pairs=2, criteria=[], strength_scale=0, rationale=Project.Rationale.REQUIRED
        )
        log_in(page, live_server, project)
        assert page.get_attribute("#rationale", "aria-required") == "true"
        page.keyboard.press("1")
        page.keyboard.press("Enter")  # the rationale is required: focus goes to it
        assert page.evaluate("document.activeElement.id") == "rationale"
        page.keyboard.type("2 s u d f ? clearer")
        page.keyboard.press("Enter")  # a new line, not a submit
        page.keyboard.type("and kinder")
        assert page.get_attribute(".ws-choice[data-choice=left]", "aria-pressed") == "true"
        assert not page.is_visible("#skip-dialog") and not page.is_visible("#shortcut-sheet")
        assert not page.is_visible("#flag-dialog")
        page.keyboard.press("Control+Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        [judgment] = judgments(annotator)
        assert judgment.choice == to_pair_terms("left", shown_swapped=judgment.shown_swapped)
        assert judgment.rationale == "2 s u d f ? clearer\nand kinder"

    def test_after_ctrl_enter_the_next_keys_are_shortcuts_not_rationale(self, page, live_server):
        project, annotator = make_project(
            pairs=3, criteria=[], strength_scale=0, rationale=Project.Rationale.OPTIONAL
        )
        log_in(page, live_server, project)
        page.keyboard.press("1")
        page.click("#rationale")
        page.keyboard.type("Kinder")
        page.keyboard.press("Control+Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        wait_for_pair(page)
        assert page.evaluate("document.activeElement.id") != "rationale"

        page.keyboard.press("2")
        page.keyboard.press("Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 2)
        first, second = judgments(annotator)
        assert first.rationale == "Kinder"
        assert second.choice == to_pair_terms("right", shown_swapped=second.shown_swapped)
        assert second.rationale in ("", None)

    def test_criteria_have_keys_and_a_contradiction_is_flagged_not_refused(self, page, live_server):
        project, annotator = make_project(pairs=2, criteria=["helpfulness", "honesty"], strength_scale=0)
        log_in(page, live_server, project)
        page.keyboard.press("1")  # left overall
        page.keyboard.press("Enter")  # criteria missing: focus goes to the first one
        page.keyboard.press("Enter")  # again: still nothing answered for it, nothing sent
        assert page.evaluate("document.activeElement.dataset.criterion") == "helpfulness"
        assert page.get_attribute(".ws-criterion .ws-option[data-value=left]", "aria-pressed") == "false"
        assert not page.is_visible("#criteria-warning")

        page.keyboard.press("2")  # helpfulness: right, and focus moves on to honesty
        assert page.evaluate("document.activeElement.dataset.criterion") == "honesty"
        page.keyboard.press("1")  # honesty: left
        warning = page.inner_text("#criteria-warning")
        assert "Helpfulness favours the right response" in warning and "you chose the left" in warning
        page.screenshot(path=ARTIFACTS / "annotate-criteria-warning.png")
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=ARTIFACTS / "annotate-progress-390.png")
        page.locator("#criteria-warning").scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "annotate-criteria-warning-390.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.keyboard.press("Enter")  # a warning, not a block
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        [judgment] = judgments(annotator)
        swapped = judgment.shown_swapped
        assert judgment.criteria == {
            "helpfulness": to_pair_terms("right", shown_swapped=swapped),
            "honesty": to_pair_terms("left", shown_swapped=swapped),
        }

        wait_for_pair(page)
        page.keyboard.press("2")
        page.keyboard.press("c")  # straight to the first criterion
        page.keyboard.press("2")
        page.keyboard.press("2")
        assert not page.is_visible("#criteria-warning")
        page.keyboard.press("Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 2)

    def test_differences_are_marked_in_the_rendered_text_or_said_to_be_throughout(self, page, live_server):
        project, annotator = make_project(pairs=0, criteria=[], strength_scale=0)
        for first, second in (
            (
                "The **capital** of France is Paris.\n\n- one\n- two",
                "The **capital** of France is Lyon.\n\n- one\n- two",
            ),
            (
                "Bananas are yellow fruit rich in potassium.",
                "Quantum computers use qubits to compute things.",
            ),
        ):
            prompt = PromptFactory(project=project, content="Say something.")
            PairFactory(
                prompt=prompt,
                response_a=ResponseFactory(prompt=prompt, content=first),
                response_b=ResponseFactory(prompt=prompt, content=second),
            )
        log_in(page, live_server, project)
        page.keyboard.press("d")
        for _ in range(2):
            marks = page.locator("#left mark, #right mark").all_inner_texts()
            notes = page.locator(".ws-diff-note").all_inner_texts()
            if "France" in page.inner_text("#left"):
                assert sorted(marks) == ["Lyon.", "Paris."]
                assert page.locator("#left strong", has_text="capital").count() == 1  # rendered, not markdown
                assert page.locator("#left li").count() == 2 and "**" not in page.inner_text("#left")
                assert notes == ["differences marked"] * 2
                page.screenshot(path=ARTIFACTS / "annotate-differences.png")
                page.set_viewport_size({"width": 390, "height": 844})
                page.locator("#left").scroll_into_view_if_needed()
                page.screenshot(path=ARTIFACTS / "annotate-differences-390.png")
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                page.set_viewport_size({"width": 1366, "height": 768})
            else:
                assert marks == []
                assert notes == ["these responses differ throughout"] * 2
                page.screenshot(path=ARTIFACTS / "annotate-differ-throughout.png")
            page.keyboard.press("3")
            page.keyboard.press("Enter")
            page.wait_for_selector(
                "#workspace[data-state=pair], #workspace[data-state=done]", state="attached"
            )
        wait_until(page, lambda: len(judgments(annotator)) == 2)

    def test_time_on_a_pair_counts_only_while_the_page_is_visible(self, page, live_server):
        project, annotator = make_project(pairs=2, criteria=[], strength_scale=0)
        log_in(page, live_server, project)
        set_hidden = """(hidden) => {
            Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
            Object.defineProperty(document, "visibilityState", { value: hidden ? "hidden" : "visible", configurable: true });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
        started = time.monotonic()
        page.evaluate(set_hidden, True)
        page.wait_for_timeout(1500)
        page.evaluate(set_hidden, False)
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        assert time.monotonic() - started > 1.5
        assert 0 < judgments(annotator)[0].duration_ms < 1000

    def test_undo_changes_the_last_judgment_and_keeps_the_old_one(self, page, live_server):
        project, annotator = make_project(pairs=3, criteria=[])
        log_in(page, live_server, project)
        page.keyboard.press("1")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        wait_for_pair(page)
        current_left = page.inner_text("#left")

        page.keyboard.press("u")
        page.wait_for_selector("#workspace[data-state=edit]")
        assert page.get_attribute(".ws-choice[data-choice=left]", "aria-pressed") == "true"
        assert page.get_attribute("#strength-options .ws-option[data-strength='2']", "aria-pressed") == "true"
        page.keyboard.press("Escape")  # leave without changing anything
        wait_for_pair(page)
        assert page.inner_text("#left") == current_left
        assert not JudgmentRevision.objects.exists()

        page.keyboard.press("u")
        page.wait_for_selector("#workspace[data-state=edit]")
        page.screenshot(path=ARTIFACTS / "annotate-undo.png")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        wait_until(page, lambda: JudgmentRevision.objects.count() == 1)
        wait_for_pair(page)
        assert page.inner_text("#left") == current_left

        [judgment] = judgments(annotator)
        [revision] = JudgmentRevision.objects.filter(judgment=judgment)
        assert judgment.revision == 2 and revision.revision == 1
        assert revision.choice == to_pair_terms("left", shown_swapped=judgment.shown_swapped)
        assert revision.strength == 2
        assert judgment.choice == to_pair_terms("right", shown_swapped=judgment.shown_swapped)
        assert judgment.strength == 3

    def test_skip_with_a_reason_releases_the_pair(self, page, live_server):
        project, annotator = make_project(pairs=2)
        log_in(page, live_server, project)
        skipped = shown_pair(page, project)
        page.keyboard.press("s")
        page.wait_for_selector("#skip-dialog[open]")
        page.keyboard.type("Not my language")
        page.screenshot(path=ARTIFACTS / "annotate-skip.png")
        page.keyboard.press("Enter")
        wait_until(
            page,
            lambda: Assignment.objects.filter(
                pair=skipped, annotator=annotator, status=Assignment.Status.SKIPPED
            ).exists(),
        )
        assert Assignment.objects.get(pair=skipped, annotator=annotator).skip_reason == "Not my language"
        wait_for_pair(page)
        assert shown_pair(page, project) != skipped
        assert not Judgment.objects.exists()

    def test_nothing_to_judge_says_why(self, page, live_server):
        project, _ = make_project(pairs=0)
        log_in(page, live_server, project, expect_pair=False)
        page.wait_for_selector("#workspace[data-state=done]")
        assert "No pairs need judgments in this project right now." in page.inner_text("#done-reason")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
class TestNothingLost:
    def test_a_failed_submit_waits_in_the_page_and_is_stored_once(self, page, live_server):
        project, annotator = make_project(pairs=3, criteria=[], strength_scale=0)
        log_in(page, live_server, project)
        attempts: list[str] = []

        def flaky(route: Route) -> None:
            attempts.append(route.request.headers.get("idempotency-key", ""))
            if len(attempts) == 1:
                route.abort()  # never reaches the server
            elif len(attempts) == 2:
                route.fetch()  # reaches the server and is stored, but the answer is lost
                route.abort()
            else:
                route.continue_()

        page.route("**/api/judgments/", flaky)
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.wait_for_selector("#outbox-status:has-text('1 judgment waiting to be sent')")
        page.screenshot(path=ARTIFACTS / "annotate-waiting.png")
        wait_until(page, lambda: len(attempts) >= 3)
        page.wait_for_selector("#outbox-status", state="hidden")
        page.unroute("**/api/judgments/")
        assert len(judgments(annotator)) == 1
        assert len(set(attempts)) == 1, "every retry carries the same Idempotency-Key"
        assert judgments(annotator)[0].idempotency_key == attempts[0]

    def test_a_judgment_not_yet_sent_is_sent_first_after_a_reload(self, page, live_server):
        project, annotator = make_project(pairs=3, criteria=[], strength_scale=0)
        log_in(page, live_server, project)
        judged = shown_pair(page, project)
        page.route("**/api/judgments/", lambda route: route.abort())
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        page.wait_for_selector("#outbox-status:has-text('1 judgment waiting to be sent')")
        stored = page.evaluate("Object.keys(localStorage).filter((key) => key.startsWith('palate:outbox:'))")
        assert len(stored) == 1
        page.unroute("**/api/judgments/")
        page.reload()
        wait_for_pair(page)
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        [judgment] = judgments(annotator)
        assert (judgment.pair, judgment.choice) == (judged, "both_bad")
        assert shown_pair(page, project) != judged
        assert (
            page.evaluate("Object.keys(localStorage).filter((key) => key.startsWith('palate:outbox:'))") == []
        )

    def test_a_judgment_the_server_refuses_is_reported_not_retried(self, page, live_server):
        project, annotator = make_project(pairs=3, criteria=[], strength_scale=0)
        log_in(page, live_server, project)
        pair = shown_pair(page, project)
        # Meanwhile someone else completes the pair and this lease runs out.
        Judgment.objects.create(pair=pair, annotator=UserFactory(username="other"), choice="a")
        Assignment.objects.filter(annotator=annotator, pair=pair).update(expires_at="2000-01-01T00:00:00Z")
        Pair.objects.filter(pk=pair.pk).update(judgment_count=1, slots_taken=1)
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        page.wait_for_selector(".ws-alert:has-text('was not saved')")
        page.screenshot(path=ARTIFACTS / "annotate-refused.png")
        assert "completed it" in page.inner_text(".ws-alert")
        assert page.is_hidden("#outbox-status")
        assert not Judgment.objects.filter(annotator=annotator).exists()


XSS_PAYLOADS = [
    "<script>window.__xss = 1; alert('script')</script>",
    "<img src=x onerror=\"window.__xss = 1; alert('img')\">",
    "[click me](javascript:window.__xss=1) and <javascript:alert(1)>",
    '<a href="javascript:alert(1)">raw link</a>',
    "<svg onload=\"window.__xss = 1; alert('svg')\"><circle r=10></circle></svg>",
    '![pixel](http://evil.example/pixel.png) <img src="http://evil.example/pixel.png">',
    '<iframe src="http://evil.example/frame"></iframe>',
    "</div></div></section></main><script>window.__xss = 1</script><div>",
    "<style>body { background: url(http://evil.example/bg.png); display: none }</style>",
    '<div style="background:url(http://evil.example/style.png)" onclick="window.__xss=1">styled</div>',
    '<object data="http://evil.example/x.swf"></object><embed src="http://evil.example/y">',
    '<link rel="stylesheet" href="http://evil.example/evil.css"><meta http-equiv="refresh" content="0;url=http://evil.example/">',
    "```html\n<script>window.__xss = 1</script>\n```",
]
XSS_TEXT = "\n\n".join(XSS_PAYLOADS)

DOM_CHECK = """(selector) => {
  const root = document.querySelector(selector);
  const bad = [];
  for (const element of root.querySelectorAll("*")) {
    const tag = element.tagName.toLowerCase();
    if (["script", "img", "iframe", "svg", "style", "object", "embed", "link", "meta", "form", "input"].includes(tag)) {
      bad.push(tag);
    }
    for (const attribute of element.attributes) {
      if (attribute.name.startsWith("on") || attribute.name === "style" || attribute.name === "src") {
        bad.push(`${tag}[${attribute.name}]`);
      }
      if (attribute.name === "href" && !/^(https?:|mailto:|#)/i.test(attribute.value.trim())) {
        bad.push(`${tag}[href=${attribute.value}]`);
      }
    }
  }
  return bad;
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_untrusted_text_runs_nothing_and_calls_nowhere(page, live_server):
    project, annotator = make_project(
        pairs=0, criteria=[], strength_scale=0, guidelines=f"# Guidelines\n\n{XSS_TEXT}"
    )
    single = PromptFactory(project=project, content=f"Single turn.\n\n{XSS_TEXT}")
    conversation = PromptFactory(
        project=project,
        content=f"Last turn. {XSS_TEXT}",
        messages=[
            {"role": "system", "content": f"System says {XSS_TEXT}"},
            {"role": "user", "content": f"User asks {XSS_TEXT}"},
            {"role": "assistant", "content": f"Assistant answered {XSS_TEXT}"},
            {"role": "<img src=x onerror=alert(1)>", "content": f"Odd role {XSS_TEXT}"},
        ],
    )
    for prompt in (single, conversation):
        PairFactory(
            prompt=prompt,
            response_a=ResponseFactory(prompt=prompt, content=f"Left or right one. {XSS_TEXT}"),
            response_b=ResponseFactory(
                prompt=prompt, content=f"Left or right two. {XSS_TEXT}\n\nextra words"
            ),
        )
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))

    log_in(page, live_server, project)
    page.keyboard.press("g")  # open the guidelines
    assert page.is_visible("#guidelines .prose")

    def check_screen(label: str) -> None:
        for selector in ("#guidelines", "#prompt", "#left", "#right"):
            assert page.evaluate(DOM_CHECK, selector) == [], f"{label}: {selector}"
        assert "<script>" in page.inner_text("#left")  # shown as text, not run
        page.keyboard.press("d")  # the word-level differences are built from the raw text
        page.wait_for_selector("#left mark")
        for selector in ("#left", "#right"):
            assert page.evaluate(DOM_CHECK, selector) == [], f"{label} (differences): {selector}"
        assert "window.__xss = 1" in page.inner_text("#left")
        page.screenshot(path=ARTIFACTS / f"annotate-xss-{label}.png")
        page.keyboard.press("d")

    check_screen("first")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_until(page, lambda: Judgment.objects.filter(annotator=annotator).count() == 1)
    wait_for_pair(page)
    check_screen("second")
    assert page.locator("#prompt .ws-turn").count() == 4  # the conversation, every turn labelled
    assert page.text_content("#prompt .ws-turn-other .ws-role") == "<img src=x onerror=alert(1)>"
    page.keyboard.press("u")  # recent judgments bring their content back too
    page.wait_for_selector("#workspace[data-state=edit]")
    check_screen("undo")
    page.keyboard.press("Escape")

    page.wait_for_timeout(300)  # anything that would fire late, like an image's onerror
    assert dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert requests and all(url.startswith(live_server.url) for url in requests), [
        url for url in requests if not url.startswith(live_server.url)
    ]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1366, 390])
def test_an_empty_response_is_shown_as_empty_and_can_be_judged(browser, live_server, width):
    project, annotator = make_project(pairs=0, criteria=[])
    prompt = PromptFactory(project=project, content="Summarise the meeting in one line.")
    PairFactory(
        prompt=prompt,
        response_a=ResponseFactory(prompt=prompt, content=""),
        response_b=ResponseFactory(prompt=prompt, content="The meeting moved the launch to May."),
    )
    with page_without_script_errors(browser, width=width, height=844, timeout_ms=10_000) as page:
        log_in(page, live_server, project)
        sides = {side: page.locator(f"#{side} .empty-response") for side in ("left", "right")}
        [empty_side] = [side for side, placeholder in sides.items() if placeholder.count() == 1]
        other_side = "right" if empty_side == "left" else "left"
        assert sides[empty_side].inner_text() == "(empty response)"
        assert "launch to May" in page.inner_text(f"#{other_side}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"annotate-empty-response-{width}.png", full_page=True)

        page.keyboard.press("d")  # the word-level differences keep the placeholder
        assert page.locator(f"#{empty_side} .empty-response").inner_text() == "(empty response)"
        page.keyboard.press("d")
        page.click(".ws-choice[data-choice=both_bad]")
        page.click("#submit")
        wait_until(page, lambda: len(judgments(annotator)) == 1)
        assert judgments(annotator)[0].choice == "both_bad"
