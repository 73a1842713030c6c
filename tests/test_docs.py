"""The documentation stays true and whole: the MkDocs site builds in strict mode (a broken link or anchor, or a
page left out of the nav, fails it), the README's links land on pages and headings that exist, the README stays
short and opens with the two commands, and every command and setting the pages name exists in the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
# Markdown links and autolinks outside code: [text](target).
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Variables the docs name that a library reads, not Palate's code.
READ_BY_LIBRARIES = {"HF_HUB_OFFLINE"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built with ``mkdocs build --strict``; the build's output is the failure message."""
    target = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(target)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    return target


def _without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


def test_the_site_builds_in_strict_mode_with_every_page(site):
    for page in PAGES:
        html = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert html.is_file(), f"{page.name} is not in the built site"


def test_the_readme_links_land_on_pages_and_headings_that_exist(site):
    targets = [
        target for target in LINK.findall(_without_code(README.read_text())) if not re.match(r"\w+:", target)
    ]
    assert targets, "the README links to no documentation page"
    for target in targets:
        path, _, anchor = target.partition("#")
        assert path.startswith("docs/") and (ROOT / path).is_file(), (
            f"README links to a missing file: {target}"
        )
        if anchor:
            stem = Path(path).stem
            html = (site / ("index.html" if stem == "index" else f"{stem}/index.html")).read_text()
            assert f'id="{anchor}"' in html, f"README links to a missing heading: {target}"


def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.encode()) < 10_000
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert first_block is not None and text.index("```bash") < text.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "run:" in makefile and "scripts/run.sh" in makefile
    assert "test:" in makefile and "scripts/test.sh" in makefile


def test_every_management_command_the_docs_name_exists():
    named: set[str] = set()
    for page in [README, *PAGES]:
        named |= set(re.findall(r"manage\.py\s+([a-z_]+)", page.read_text()))
    assert {"create_user", "export_dataset", "train_reward_model"} <= named
    missing = named - set(get_commands())
    assert not missing, f"the docs name management commands that do not exist: {sorted(missing)}"


def test_every_variable_of_the_configuration_page_is_read_by_the_code():
    text = (DOCS / "configuration.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    variables = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert {"DATABASE_URL", "SCORING_TIMEOUT_SECONDS", "HOST"} <= variables
    code = "\n".join(
        path.read_text()
        for pattern in ("palate/**/*.py", "annotate/**/*.py", "rewardtrain/**/*.py", "accounts/**/*.py",
                        "scripts/*.sh", "docker-compose.yml")
        for path in ROOT.glob(pattern)
    )  # fmt: skip
    # Read as a string literal (os.environ.get("NAME"), envint("NAME", …)) or expanded by a shell or compose.
    unread = {
        name
        for name in variables - READ_BY_LIBRARIES
        if not re.search(rf"[\"']{name}[\"']|\$\{{?{name}\b", code)
    }
    assert not unread, f"configuration.md documents variables nothing reads: {sorted(unread)}"
    example = (ROOT / ".env.example").read_text()
    settings_only = {
        name for name in variables if re.search(rf"\b{name}\b", (ROOT / "palate/settings.py").read_text())
    }
    undocumented = {name for name in settings_only if name not in example}
    assert not undocumented, f".env.example lacks variables of the configuration page: {sorted(undocumented)}"
