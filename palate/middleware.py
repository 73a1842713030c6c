"""Requests no view can serve, refused before any view runs."""

from __future__ import annotations

from csp.middleware import CSPMiddleware
from django.http import Http404, HttpResponse, JsonResponse
from django.views.defaults import page_not_found

from palate.errors import error_body


class RefuseNulCharacters:
    """A NUL character in the path or the query string (``%00``) can reach no database column: a 400 in the
    one error shape under /api/, a plain 400 elsewhere, rather than a database error and a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # A NUL reaches the query's keys and values only as "%00" or as itself; reading the raw string
        # spares building request.GET, which the annotators' API calls never read.
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            message = "the address contains a NUL character (%00)"
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid", message), status=400)
            return HttpResponse(message, status=400, content_type="text/plain")
        return self.get_response(request)


class StyledNotFound:
    """A page's own "not found" (a missing project, pair or token) answers with the product's 404 page even
    with DEBUG on, as ``make run`` has it; Django's debug page stays for addresses that match no URL. The API
    answers its 404s itself, in the one error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, Http404) and not request.path.startswith(("/api/", "/admin/")):
            return page_not_found(request, exception)
        return None


class ContentSecurityPolicy(CSPMiddleware):
    """django-csp's middleware; a JSON answer gets the strictest policy as it is, without building the pages'
    policy each time (an API response renders nothing, and the annotators' busiest calls are JSON)."""

    JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"

    def process_response(self, request, response):
        if response.get("Content-Type", "").startswith("application/json"):
            response.headers.setdefault("Content-Security-Policy", self.JSON_POLICY)
            return response
        return super().process_response(request, response)
