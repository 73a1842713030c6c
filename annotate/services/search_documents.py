"""The data browser's search documents (``search_document`` of prompts and responses), built after an import
commits rather than as it writes its rows: parsing the text is most of what writing a row costs the
database, and made imports several times slower. A row's document is NULL until it is built; search finds
only built ones, and the pairs page says how many are still pending (``search_documents_pending``)."""

from __future__ import annotations

import functools
import logging

from django.contrib.postgres.search import SearchVector
from django.db import models, transaction
from kombu.exceptions import OperationalError as BrokerUnreachable

from annotate.models import SEARCH_CONFIG, Project, Prompt, Response

logger = logging.getLogger(__name__)

BATCH = 5_000
# The pairs page counts pending documents up to this many (a count that stays cheap while a large import's
# documents are being built); beyond it, it says "more than".
PENDING_COUNT_LIMIT = 10_000

# Each model with the path from it to its project.
_TEXTS: tuple[tuple[type[models.Model], str], ...] = (
    (Prompt, "project_id"),
    (Response, "prompt__project_id"),
)


def _pending(model: type[models.Model], project_field: str, project_id: int | None) -> models.QuerySet:
    rows = model.objects.filter(search_document__isnull=True)
    return rows if project_id is None else rows.filter(**{project_field: project_id})


def search_documents_fill(*, project_id: int | None = None, batch: int = BATCH) -> int:
    """Builds the documents not built yet (of one project, or of all), ``batch`` rows per UPDATE, each
    committed on its own so that no statement holds many rows locked; returns how many it built. Running
    twice at once only repeats work: a row another run filled is no longer NULL."""
    document = SearchVector("content", config=SEARCH_CONFIG)
    built = 0
    for model, project_field in _TEXTS:
        while True:
            ids = _pending(model, project_field, project_id).values("pk")[:batch]
            with transaction.atomic():
                done = model.objects.filter(pk__in=ids).update(search_document=document)
            built += done
            if done < batch:
                break
    return built


def search_documents_pending(*, project: Project) -> int:
    """How many of the project's prompts and responses have no document yet, counted up to
    ``PENDING_COUNT_LIMIT`` each (the partial ``*_search_pending`` indexes hold only those rows)."""
    return sum(
        _pending(model, project_field, project.pk)[:PENDING_COUNT_LIMIT].count()
        for model, project_field in _TEXTS
    )


def search_documents_fill_request(*, project_id: int) -> None:
    """Queues the building of the project's documents once the current transaction commits."""
    transaction.on_commit(functools.partial(_fill_send, project_id))


def _fill_send(project_id: int) -> None:
    from annotate.tasks import search_documents_fill_task

    try:
        search_documents_fill_task.delay(project_id)
    except BrokerUnreachable as error:
        # Beat's search-documents-fill builds every pending document once the broker is back.
        logger.warning("search documents of project %s not queued: %s", project_id, error)
