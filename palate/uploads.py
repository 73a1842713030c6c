"""Uploaded files: streamed to a temporary file on disk, never held in memory, and stopped as soon as one
passes ``IMPORT_MAX_FILE_BYTES`` (imports are Palate's only uploads), before any more of it is read or
written. The refusal is an UploadTooLarge that the API's multipart parser raises (a 413 in the one error
shape) and the import page shows."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest
from rest_framework import status

from palate.errors import ApplicationError


class UploadTooLarge(ApplicationError):
    code = "too_large"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class LimitedUploadHandler(TemporaryFileUploadHandler):
    """Django's handler that streams each file to a temporary file, stopping the whole upload once a file
    passes the limit. Django then deletes the part written (``MultiPartParser`` closes the temporary
    file), leaves the rest of the request unread, and gives the fields read so far without the file."""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        limit = settings.IMPORT_MAX_FILE_BYTES
        if start + len(raw_data) > limit:
            self.request.upload_refused = UploadTooLarge(
                f"{self.file_name}: the upload is larger than the import limit of {limit:,} bytes; nothing was kept",
                fields={self.field_name: ["file too large"]},
            )
            raise StopUpload(connection_reset=True)
        return super().receive_data_chunk(raw_data, start)


def upload_refusal(request: HttpRequest) -> UploadTooLarge | None:
    """Why the request's upload was stopped, once its body has been read (``request.FILES``), or None."""
    return getattr(request, "upload_refused", None)
