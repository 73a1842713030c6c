from __future__ import annotations

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from generation.services.audits import AUDITS
        from generation.services.jobs import GENERATION_JOBS
        from palate.jobs.services import job_kind_register

        job_kind_register(GENERATION_JOBS)
        job_kind_register(AUDITS)
