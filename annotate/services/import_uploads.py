"""Imports uploaded straight to the object store: a signed link to PUT the file to, with a signed ticket
that then queues its import, so that a large file never passes through a web process. Only where the
uploads store can sign links (S3; ``palate.storage``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core import signing

from annotate.models import ImportJob, Project
from annotate.services.import_rows import ImportOptions, RowError, detect_format
from annotate.services.imports import (
    import_job_queue,
    import_options_check,
    import_size_check,
    import_upload_name,
)
from palate.errors import ApplicationError, Conflict
from palate.storage import (
    UPLOADS,
    link_seconds,
    store_delete,
    store_exists,
    store_size,
    store_upload_url,
)

UPLOAD_TICKET_SALT = "palate.imports.upload"
UPLOAD_TICKET_SECONDS = 24 * 3600


def import_upload_url_create(*, project: Project, filename: str, size: int) -> dict[str, Any]:
    """A link that PUTs an import file straight into the uploads store, so that a large file never passes
    through a web process, and the signed ticket that then starts its import
    (``import_job_create_from_upload``). Only where the store can sign links (S3): 409 otherwise."""
    import_size_check(filename, size)
    name = Path(filename).name
    try:
        detect_format(name)
    except RowError as error:
        raise ApplicationError(str(error), fields={"filename": [str(error)]}) from None
    stored = import_upload_name(name)
    url = store_upload_url(UPLOADS, stored)
    if url is None:
        raise ApplicationError(
            "the uploads store is a local folder, which cannot take a file by link: send the file to the "
            "imports endpoint instead",
            code="not_available",
            http_status=409,
        )
    ticket = signing.dumps(
        {"project": project.pk, "stored": stored, "filename": name}, salt=UPLOAD_TICKET_SALT
    )
    return {"url": url, "method": "PUT", "upload": ticket, "expires_in": link_seconds()}


def import_job_create_from_upload(
    *, project: Project, upload: str, options: ImportOptions, created_by: Any
) -> ImportJob:
    """Queues the import of a file PUT to the link of ``import_upload_url_create``, given its ticket
    ``upload``. Refuses a ticket of another project, or older than a day, a file not (or no longer) in the
    store and one already imported or too large (which is then removed)."""
    import_options_check(options)
    refused = ApplicationError(
        "upload: not a ticket this server gave for this project's imports, or older than a day",
        fields={"upload": ["unknown or expired ticket"]},
    )
    try:
        ticket = signing.loads(upload, salt=UPLOAD_TICKET_SALT, max_age=UPLOAD_TICKET_SECONDS)
    except signing.BadSignature:
        raise refused from None
    if ticket.get("project") != project.pk:
        raise refused
    stored, filename = ticket["stored"], ticket["filename"]
    if ImportJob.objects.filter(stored_path=stored).exists():
        raise Conflict(f"{filename}: this upload's import is already queued or running")
    if not store_exists(UPLOADS, stored):
        raise ApplicationError(
            f"{filename}: nothing was uploaded to the link yet, or its import already ran",
            fields={"upload": ["no file uploaded"]},
        )
    size = store_size(UPLOADS, stored)
    try:
        import_size_check(filename, size)
    except ApplicationError:
        store_delete(UPLOADS, stored)
        raise
    return import_job_queue(
        project=project, stored=stored, filename=filename, size=size, options=options, created_by=created_by
    )
