from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView


class FaviconRedirect(RedirectView):
    """Browsers that ask for /favicon.ico without reading the page's icon link get the same icon."""

    permanent = False

    def get_redirect_url(self, *args, **kwargs) -> str:
        return static("palate/favicon.svg")


urlpatterns = [
    path("favicon.ico", FaviconRedirect.as_view()),
    path("admin/", admin.site.urls),
    path("api/", include("palate.api_urls")),
    path("", include("annotate.urls")),
    path("", include("accounts.urls")),
    path("", include("rewardtrain.urls")),
    path("", include("generation.urls")),
]

# Under /api/ these answer in the API's error shape (palate/errors.py).
handler400 = "palate.errors.bad_request"
handler403 = "palate.errors.permission_denied"
handler404 = "palate.errors.page_not_found"
handler500 = "palate.errors.server_error"
