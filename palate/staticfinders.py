"""Static files that ship inside installed Python packages rather than in an app's ``static/`` folder.

Plotly's own ``plotly.min.js`` (in the ``plotly`` package) is served as ``vendor/plotly.min.js``, so the
charts work offline behind a firewall and its version always matches the installed package: no CDN, no copy
checked into the repository.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PREFIX = "vendor"


def _plotly_bundle() -> Path | None:
    try:
        import plotly
    except ImportError:
        return None
    bundle = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    return bundle if bundle.is_file() else None


class PackageDataFinder(BaseFinder):
    """Finds ``vendor/plotly.min.js`` in the installed ``plotly`` package (for runserver, WhiteNoise's
    finder mode and ``collectstatic``)."""

    def check(self, **kwargs):
        if _plotly_bundle() is None:
            return [
                Error("plotly/package_data/plotly.min.js was not found: is the plotly package installed?")
            ]
        return []

    def find(self, path, find_all=False, **kwargs):
        bundle = _plotly_bundle()
        match = str(bundle) if bundle is not None and path == f"{PREFIX}/{bundle.name}" else None
        if find_all:
            return [match] if match else []
        return match

    def list(self, ignore_patterns) -> Iterator[tuple[str, FileSystemStorage]]:
        bundle = _plotly_bundle()
        if bundle is None:
            return
        storage = FileSystemStorage(location=bundle.parent)
        # collectstatic and WhiteNoise put a storage's files under its ``prefix``.
        storage.prefix = PREFIX
        yield bundle.name, storage
