"""The one Celery app. Queues: ``default`` (imports, exports, metrics), ``gpu`` (training, scoring) and
``generate`` (generation jobs, which wait on model endpoints: docs/generation.md)."""

from __future__ import annotations

import os

from celery import Celery

import palate.jobs.worker  # noqa: F401  (a starting worker takes over dead workers' jobs)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")

app = Celery("palate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["palate.jobs"])
