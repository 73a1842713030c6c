from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("palate.api_urls")),
    path("", include("annotate.urls")),
    path("", include("accounts.urls")),
    path("", include("rewardtrain.urls")),
]

# Under /api/ these answer in the API's error shape (palate/errors.py).
handler400 = "palate.errors.bad_request"
handler403 = "palate.errors.permission_denied"
handler404 = "palate.errors.page_not_found"
handler500 = "palate.errors.server_error"
