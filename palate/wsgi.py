from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")

application = get_wsgi_application()
# Load every view module now (scipy, plotly helpers…: over a second) rather than in the first request each
# gunicorn worker serves.
_ = get_resolver().url_patterns
