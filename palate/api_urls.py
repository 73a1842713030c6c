from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from palate.auth_api import TokenObtainApi

urlpatterns = [
    path("", include("annotate.api.urls")),  # first: it holds the annotators' busy endpoints
    path("auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("rewardtrain.api.urls")),
]
