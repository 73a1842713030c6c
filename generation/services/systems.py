"""Register, change and remove a project's systems (model endpoints). Keys are never stored: a system
names the environment variable that holds its key on the workers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate.models import Project
from generation.endpoint import EndpointSpec
from generation.models import System
from palate.errors import ApplicationError, Conflict

EDITABLE = (
    "name",
    "base_url",
    "model",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "system_prompt",
    "api_key_env",
    "max_concurrency",
    "timeout_seconds",
    "max_retries",
)


def _checked(system: System) -> None:
    """Runs the model's validators and the URL check; ApplicationError naming each field otherwise."""
    problems: dict[str, list[str]] = {}
    try:
        system.full_clean(exclude=["project", "created_by"], validate_unique=False)
    except ValidationError as error:
        problems = {
            name: [str(message) for message in messages] for name, messages in error.message_dict.items()
        }
    try:
        url = urlsplit(system.base_url or "")
        url.port  # noqa: B018  (reading it checks it: a port out of range raises)
        usable = url.scheme in ("http", "https") and bool(url.hostname)
    except ValueError:  # "http://[::1", "http://host:99999" and other addresses urllib cannot read
        usable = False
    if not usable:
        problems.setdefault("base_url", []).append(
            "an http:// or https:// address, e.g. http://127.0.0.1:8080/v1"
        )
    if problems:
        name, messages = next(iter(problems.items()))
        raise ApplicationError(f"{name}: {messages[0]}", fields=problems)


def _saved(system: System) -> System:
    try:
        with transaction.atomic():
            system.save()
    except IntegrityError as error:
        if "system_name_unique_in_project" in str(error):
            raise Conflict(
                f"this project already has a system named '{system.name}'", fields={"name": ["already used"]}
            ) from None
        raise ApplicationError(f"invalid system settings: {error}") from None
    return system


def system_create(*, project: Project, created_by: Any = None, **values: Any) -> System:
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ApplicationError(f"unknown fields: {', '.join(sorted(unknown))}")
    system = System(project=project, created_by=created_by, **values)
    _checked(system)
    return _saved(system)


def system_update(*, system: System, **values: Any) -> System:
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ApplicationError(f"unknown fields: {', '.join(sorted(unknown))}")
    for name, value in values.items():
        setattr(system, name, value)
    _checked(system)
    return _saved(system)


def system_delete(*, system: System) -> None:
    """Removes the system; the responses it generated stay (they carry its name)."""
    system.delete()


def system_spec(system: System) -> EndpointSpec:
    return EndpointSpec(
        name=system.name,
        base_url=system.base_url,
        model=system.model,
        temperature=system.temperature,
        top_p=system.top_p,
        max_tokens=system.max_tokens,
        seed=system.seed,
        system_prompt=system.system_prompt,
        api_key_env=system.api_key_env,
        max_concurrency=system.max_concurrency,
        timeout_seconds=system.timeout_seconds,
        max_retries=system.max_retries,
    )
