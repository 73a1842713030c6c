"""The base models a run may start from: the backbones the operator installed, listed by name in
``TRAINING_BASE_MODELS``. A run names one of them (or continues from a reward model of its project); it never
names a path, so nobody trains on files the operator did not list. The web process checks names against its
list; the worker resolves a name to a location with its own.

The setting is comma-separated entries, each ``name=location`` or a bare Hugging Face id (its own name and
location):

    TRAINING_BASE_MODELS=minilm=/models/minilm,Qwen/Qwen2.5-0.5B,qwen-7b=Qwen/Qwen2.5-7B

A location is a Hugging Face id already in the worker's cache or an absolute directory on the worker. No
torch and no database here.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

# A Hugging Face id: a name, or an owner and a name. Names look like these and nothing else.
HUB_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95})(?:/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95}))?")


def _is_hub_id(text: str) -> bool:
    return HUB_ID.fullmatch(text) is not None and ".." not in text


def base_models_parse(text: str) -> dict[str, str]:
    """``TRAINING_BASE_MODELS`` as {name: location}, in the order given. Raises ValueError naming the entry
    that is not ``name=location`` (a Hugging Face id as name, a Hugging Face id or an absolute directory as
    location) or a bare Hugging Face id, and a name given twice."""
    installed: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, equals, location = (part.strip() for part in entry.partition("="))
        if not equals:
            location = name
            if not _is_hub_id(name):
                raise ValueError(
                    f"{entry!r} is not a Hugging Face id: list a directory as name=/absolute/directory"
                )
        if not _is_hub_id(name):
            raise ValueError(f"{entry!r}: a name is letters, digits, '.', '_' and '-', with at most one '/'")
        if not (_is_hub_id(location) or location.startswith(("/", "~"))):
            raise ValueError(
                f"{entry!r}: a location is a Hugging Face id or an absolute directory (starting with / or ~)"
            )
        if name in installed:
            raise ValueError(f"{name!r} is listed twice")
        installed[name] = location
    return installed


def base_models_installed() -> dict[str, str]:
    """This process's installed base models, {name: location}. Raises ImproperlyConfigured when the setting
    is malformed (``manage.py check`` reports it before anything starts)."""
    try:
        return base_models_parse(str(getattr(settings, "TRAINING_BASE_MODELS", "") or ""))
    except ValueError as error:
        raise ImproperlyConfigured(f"TRAINING_BASE_MODELS: {error}") from None


def base_models_check(**kwargs) -> list[checks.CheckMessage]:
    """A Django system check: a malformed ``TRAINING_BASE_MODELS`` stops ``migrate`` and ``runserver``."""
    try:
        base_models_installed()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="rewardtrain.E001")]
    return []
