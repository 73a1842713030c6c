"""HTML pages live in one place per app (``annotate/views/``, ``rewardtrain/views/``, ``generation/views/``), and no page imports
an API view: what a page shares with the API (a role check, a serializer) lives outside the API's views."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest
from rest_framework.views import APIView

ROOT = Path(__file__).resolve().parent.parent
PAGE_MODULES = sorted(
    [
        *(ROOT / "annotate" / "views").glob("*.py"),
        *(ROOT / "rewardtrain" / "views").glob("*.py"),
        *(ROOT / "generation" / "views").glob("*.py"),
    ]
)


def _imported_modules(path: Path) -> set[ModuleType]:
    """Every module the file imports, and every module it takes a name from."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    modules = set()
    for name in names:
        with contextlib.suppress(ImportError):  # a name taken from a module, not a module of its own
            modules.add(importlib.import_module(name))
    return modules


def _defines_api_views(module: ModuleType) -> bool:
    return any(
        inspect.isclass(value) and issubclass(value, APIView) and value.__module__ == module.__name__
        for value in vars(module).values()
    )


@pytest.mark.parametrize("path", PAGE_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_page_imports_an_api_view(path: Path):
    api_views = sorted(module.__name__ for module in _imported_modules(path) if _defines_api_views(module))
    assert api_views == [], f"{path.relative_to(ROOT)} imports API views from {api_views}"


@pytest.mark.parametrize("app", ["annotate", "rewardtrain", "generation"])
def test_every_page_of_an_app_lives_in_its_views(app: str):
    for pattern in importlib.import_module(f"{app}.urls").urlpatterns:
        view = getattr(pattern.callback, "view_class", pattern.callback)
        if view.__module__.startswith("django.contrib.auth."):
            continue  # Django's own logout view
        assert view.__module__ == f"{app}.views" or view.__module__.startswith(f"{app}.views."), (
            pattern.name,
            view.__module__,
        )
