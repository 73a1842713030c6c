"""The annotator's workspace as deployed: static files gathered by collectstatic and served by WhiteNoise from
STATIC_ROOT, not found by the finders as the test server does. The page is native ES modules importing each
other by relative path, so every import must resolve among the collected files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test.testcases import LiveServerThread
from playwright.sync_api import Browser, ConsoleMessage, Page, Response

from tests.annotate.test_annotate_page import judgments, log_in, make_project, wait_until
from tests.browser import page_without_script_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass
class Server:
    url: str
    static_root: Path


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with page_without_script_errors(browser, width=1366, height=768, timeout_ms=10_000) as page:
        yield page


@pytest.fixture
def production_server(settings, tmp_path) -> Iterator[Server]:
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "static"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    call_command("collectstatic", interactive=False, verbosity=0)
    # No static handler in front of Django: WhiteNoise's middleware serves what collectstatic wrote.
    server = LiveServerThread("localhost", static_handler=lambda handler: handler)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    yield Server(url=f"http://localhost:{server.port}", static_root=settings.STATIC_ROOT)
    server.terminate()


def test_the_workspace_runs_from_collected_static_files(page: Page, production_server: Server):
    project, annotator = make_project(pairs=2)
    loaded: dict[str, int] = {}
    policy_problems: list[str] = []

    def on_response(response: Response) -> None:
        if "/static/" in response.url:
            loaded[response.url] = response.status

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            policy_problems.append(message.text)

    page.on("response", on_response)
    page.on("console", on_console)

    log_in(page, production_server, project)
    page.keyboard.press("1")
    page.keyboard.press("1")
    page.click(".ws-criterion .ws-option[data-value=left]")
    page.keyboard.press("Enter")
    wait_until(page, lambda: len(judgments(annotator)) == 1)

    assert loaded and all(status == 200 for status in loaded.values()), loaded
    # By name without any content hash, so the check holds whichever storage collectstatic uses.
    collected = {
        path.name.split(".")[0]
        for path in (production_server.static_root / "palate" / "annotate").glob("*.js")
    }
    fetched = {url.rsplit("/", 1)[1].split(".")[0] for url in loaded if "/static/palate/annotate/" in url}
    assert collected and fetched == collected
    assert policy_problems == []
