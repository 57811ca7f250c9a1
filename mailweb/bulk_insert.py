"""Inserting many new rows at once: ``bulk_create``, by ``COPY`` on PostgreSQL.

An initial sync inserts messages with bodies of several kilobytes by the hundred. Through
``bulk_create`` on PostgreSQL every value is quoted into the SQL text by the client and parsed
back out of it by the server, which cost about as much as everything else in storing a batch.
``COPY ... FROM STDIN`` streams the rows in PostgreSQL's own format instead (formatted in C by
psycopg). Primary keys are taken from the table's sequence first, so the objects come back with
their ids, as from ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model

__all__ = ["insert_new"]


def insert_new(
    model: type[Model],
    objects: Sequence[Model],
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Insert unsaved ``objects`` of ``model``; afterwards each has its primary key.

    ``extra_columns`` gives values, one per object, for columns the model does not declare
    (PostgreSQL only, where such columns exist: the search vector).
    """
    if not objects:
        return
    extra = dict(extra_columns or {})
    if connection.vendor != "postgresql":
        if extra:
            raise ValueError("extra columns are only written on PostgreSQL")
        model._default_manager.bulk_create(objects)
        return
    if any(len(values) != len(objects) for values in extra.values()):
        raise ValueError("every extra column needs one value per object")
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    for obj in objects:  # as bulk_create does: FK ids from related objects saved meanwhile
        obj._prepare_related_fields_for_save(operation_name="insert_new")  # type: ignore[attr-defined]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objects)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        names = [meta.pk.column, *(f.column for f in fields), *extra]
        columns = ", ".join(quote(name) for name in names)
        extra_rows: Iterable[tuple[Any, ...]] = (
            zip(*extra.values(), strict=True) if extra else [()] * len(objects)
        )
        raw_cursor: Any = cursor.cursor  # psycopg's own cursor, for its COPY support
        with raw_cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, pk, extras in zip(objects, ids, extra_rows, strict=True):
                values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
                copy.write_row([pk, *values, *extras])
    for obj, pk in zip(objects, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias
