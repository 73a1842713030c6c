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
# Everything loaded so far (Django, the views, their libraries) lives as long as the process: moved out of
# the collector's reach, it is no longer traversed by every full collection. Before, each full collection
# paused the process (all its threads' requests) for about 125 ms under load; now for about 15 ms, measured
# with 50 annotators at 200 judgments/s. With --preload (bench/annotate_load.py) gunicorn's workers inherit
# the frozen objects.
gc.freeze()
