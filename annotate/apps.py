from __future__ import annotations

from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from annotate.api import schema  # noqa: F401  (registers the API token scheme with drf-spectacular)
        from annotate.services.exports import EXPORT_JOBS
        from annotate.services.imports import IMPORT_JOBS
        from palate.jobs.services import job_kind_register

        job_kind_register(IMPORT_JOBS)
        job_kind_register(EXPORT_JOBS)
