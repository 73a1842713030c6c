"""The one bulk reader: a query's rows as numpy arrays, one per column, with no Python object per row.

PostgreSQL streams the rows with ``COPY (query) TO STDOUT (FORMAT csv)`` and pyarrow's CSV reader parses
them in C++ with the types the caller declares, so a million judgments cost about one second and a little
memory, NULLs included. Leaderboards, agreement, exports and active selection read judgments through it.

A column is declared as one of:

- ``"int"``: int64; a NULL is an error (declare ``"float"`` for a nullable number);
- ``"float"``: float64, NULL as NaN (whole numbers too: strength, duration);
- ``"bool"``: bool; a NULL is an error;
- ``"seconds"``: a timestamp as float64 Unix seconds, NULL as NaN;
- a tuple of labels: text coded as its index in the tuple, -1 for NULL or any other text (choices coded
  0..3 in ``Choice`` order, system names coded as indices into a list of systems).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from django.db import connection
from django.db.models import QuerySet
from numpy.typing import NDArray
from psycopg import sql

Kind = str | tuple[str, ...]
Params = Sequence[Any] | Mapping[str, Any]

_ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "seconds": pa.timestamp("us", tz="UTC"),
}
_EMPTY = {"int": np.int64, "float": np.float64, "bool": np.bool_, "seconds": np.float64}
_COPY = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)")


def read_arrays(
    query: QuerySet | str, columns: Mapping[str, Kind], params: Params = ()
) -> dict[str, NDArray]:
    """The rows of ``query`` (a ``values_list`` QuerySet, or SQL with ``params``) as ``{name: array}``.

    ``columns`` names the query's columns in order and declares each one's kind (see the module). Runs on
    the default connection, inside its transaction if one is open."""
    if isinstance(query, QuerySet):
        query, params = query.query.sql_with_params()
    buffer = bytearray()
    with connection.cursor() as cursor:
        statement = sql.SQL(connection.ops.compose_sql(query, params))
        with cursor.cursor.copy(_COPY.format(statement)) as copy:
            for chunk in copy:
                buffer += chunk
    names = list(columns)
    if not buffer:
        return {name: _empty(columns[name]) for name in names}
    table = pa_csv.read_csv(
        pa.py_buffer(buffer),
        read_options=pa_csv.ReadOptions(column_names=names),
        # Text (a system's name) may hold a newline inside its quotes.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: _arrow_type(kind) for name, kind in columns.items()},
            true_values=["t"],
            false_values=["f"],
        ),
    )
    return {name: _to_numpy(name, table.column(name), columns[name]) for name in names}


def _arrow_type(kind: Kind) -> pa.DataType:
    if isinstance(kind, tuple):
        return pa.string()
    return _ARROW_TYPES[kind]


def _empty(kind: Kind) -> NDArray:
    return np.zeros(0, dtype=np.int64 if isinstance(kind, tuple) else _EMPTY[kind])


def _to_numpy(name: str, column: pa.ChunkedArray, kind: Kind) -> NDArray:
    if isinstance(kind, tuple):
        codes = pc.index_in(column, value_set=pa.array(kind, type=pa.string()))
        return pc.fill_null(codes, -1).to_numpy().astype(np.int64)
    if kind in ("int", "bool") and column.null_count:
        raise ValueError(f"column {name!r} has NULLs: declare it 'float'")
    if kind == "seconds":
        return pc.divide(pc.cast(column, pa.int64()).cast(pa.float64()), 1e6).to_numpy(zero_copy_only=False)
    if kind == "float":
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return column.to_numpy()
