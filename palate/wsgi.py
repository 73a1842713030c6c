from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")

application = get_wsgi_application()
# Load every view module now (scipy, plotly helpers…: over a second) rather than in the first request each
# gunicorn worker serves.
_ = get_resolver().url_patterns
# Everything loaded so far lives as long as the process: frozen, it is no longer traversed by every full
# collection, which paused all the process's requests (bench/README.md). Preloaded workers inherit it.
gc.freeze()
