from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_database_functions(sender, using: str, **kwargs) -> None:
    from annotate.services.workspace_sql import install_workspace_functions

    install_workspace_functions(using=using)


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from annotate.api import schema  # noqa: F401  (registers the API token scheme with drf-spectacular)
        from annotate.services.imports import IMPORT_JOBS
        from palate.jobs.services import job_kind_register

        job_kind_register(IMPORT_JOBS)

        # The workspace's PostgreSQL functions follow the code: recreated after every migrate.
        post_migrate.connect(_install_database_functions, sender=self)
