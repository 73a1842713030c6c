"""The leaderboard as pages and the API get it: cached for a minute, and behind the public read-only link."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from django.core.cache import cache

from annotate.models import Project
from annotate.services.leaderboard.compute import leaderboard_from_options
from annotate.services.leaderboard.options import leaderboard_options

CACHE_SECONDS = 60


def leaderboard_get(*, project: Project, public: bool = False, **options: Any) -> dict[str, Any]:
    """:func:`leaderboard_compute`, cached for ``CACHE_SECONDS``: a million judgments take seconds to rate, and
    a leaderboard a minute old is still the leaderboard. A change to the project's settings (such as
    ``both_bad_as_tie``) starts afresh."""
    checked = leaderboard_options(**options)
    fingerprint = json.dumps(
        {"options": checked.as_dict(), "public": public, "updated": project.updated_at.isoformat()},
        sort_keys=True,
    )
    key = f"palate:leaderboard:{project.pk}:{hashlib.sha1(fingerprint.encode()).hexdigest()}"
    cached = cache.get(key)
    if cached is None:
        cached = leaderboard_from_options(project=project, options=checked, public=public)
        cache.set(key, cached, timeout=CACHE_SECONDS)
    return cached


def leaderboard_public_link_set(*, project: Project, enabled: bool) -> Project:
    """Turns the public read-only link on (a fresh unguessable token, so re-enabling revokes the old link) or
    off."""
    project.leaderboard_public_token = secrets.token_urlsafe(24) if enabled else ""
    project.save(update_fields=["leaderboard_public_token", "updated_at"])
    return project


def project_for_public_leaderboard(*, token: str) -> Project | None:
    if not token:
        return None
    return Project.objects.filter(leaderboard_public_token=token).exclude(leaderboard_public_token="").first()
