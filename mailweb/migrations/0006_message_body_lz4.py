"""Compress message bodies with lz4 instead of pglz on PostgreSQL (14+, built with lz4).

Bodies above ~2 KB are compressed when stored; pglz is several times slower than lz4 at about
the same ratio for mail text, and an initial sync stores thousands of bodies a second. Existing
rows keep their compression until rewritten; reads handle both. Elsewhere this does nothing.
"""

from django.db import migrations

COLUMNS = ("text_body", "html_body")


def _lz4_available(schema_editor) -> bool:
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
            " AND 'lz4' = ANY(enumvals)"
        )
        return cursor.fetchone() is not None


def _set_compression(schema_editor, method: str) -> None:
    if not _lz4_available(schema_editor):
        return
    for column in COLUMNS:
        schema_editor.execute(
            f"ALTER TABLE mailweb_message ALTER COLUMN {column} SET COMPRESSION {method}"
        )


def use_lz4(apps, schema_editor):
    _set_compression(schema_editor, "lz4")


def use_pglz(apps, schema_editor):
    _set_compression(schema_editor, "pglz")


class Migration(migrations.Migration):
    dependencies = [("mailweb", "0005_inbox_forward")]

    operations = [migrations.RunPython(use_lz4, use_pglz)]
