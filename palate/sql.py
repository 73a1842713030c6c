"""Reading model instances with hand-written SQL, for the few paths where the ORM's query building costs
more than the query (the annotators' next-pair and submit endpoints, token authentication).

``model_columns(Project, "p")`` gives the select list of every concrete column of a model under a table
alias; ``model_from_row`` turns the matching slice of a row back into an instance, as the ORM would
(``Model.from_db``: the instance is not "adding", and JSON columns are decoded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection, models

ModelT = TypeVar("ModelT", bound=models.Model)


@cache
def _fields(model: type[models.Model]) -> tuple[list[str], list[str], list[int]]:
    fields = model._meta.concrete_fields
    columns = [connection.ops.quote_name(field.column) for field in fields]
    names = [field.attname for field in fields]
    # Django reads jsonb as text (its own loader) and decodes it in the field: do the same here.
    json_positions = [index for index, field in enumerate(fields) if isinstance(field, models.JSONField)]
    return columns, names, json_positions


def model_columns(model: type[models.Model], alias: str) -> str:
    """``alias."col1", alias."col2", …`` for every concrete field of ``model``, in field order."""
    columns, _, _ = _fields(model)
    return ", ".join(f"{alias}.{column}" for column in columns)


def model_width(model: type[models.Model]) -> int:
    return len(_fields(model)[0])


def model_from_row(model: type[ModelT], row: Sequence[Any], start: int = 0) -> ModelT:
    """The instance whose columns (as listed by ``model_columns``) begin at ``row[start]``."""
    _, names, json_positions = _fields(model)
    values = list(row[start : start + len(names)])
    for position in json_positions:
        if isinstance(values[position], str):
            values[position] = json.loads(values[position])
    return model.from_db(connection.alias, names, values)
