"""The API's pagination: DRF's page numbers, read strictly."""

from __future__ import annotations

import re

from rest_framework import pagination
from rest_framework.exceptions import ValidationError


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=`` is one whole number from 1, or absent: anything else is a 400 that says so (DRF reads an
    empty value as page 1, a repeated one as its last value and a word as a page that does not exist)."""

    def get_page_number(self, request, paginator) -> int:
        values = request.query_params.getlist(self.page_query_param)
        if not values:
            return 1
        if len(values) == 1 and re.fullmatch(r"[0-9]+", values[0]) and int(values[0]) >= 1:
            return int(values[0])
        raise ValidationError({self.page_query_param: ["must be one whole number from 1"]})
