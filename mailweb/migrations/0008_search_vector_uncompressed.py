"""Store the search vector without trying to compress it (PostgreSQL only).

A message's tsvector is mostly lexeme positions, which pglz does not compress: on the
benchmark corpus every vector (2.3 KB on average) was stored as it came, after a futile
attempt that cost 0.2-0.3 s of the inserting connection's time per 10,000 messages, against
0.1-0.15 s with ``STORAGE EXTERNAL`` (out of line when large, never compressed). Existing rows
are left as they are.
"""

from django.db import migrations


def _set_storage(schema_editor, storage: str) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE mailweb_message ALTER COLUMN search_vector SET STORAGE {storage}"
        )


def uncompressed(apps, schema_editor):
    _set_storage(schema_editor, "EXTERNAL")


def compressible(apps, schema_editor):
    _set_storage(schema_editor, "EXTENDED")


class Migration(migrations.Migration):
    dependencies = [("mailweb", "0007_message_fk_indexes_covered")]

    operations = [migrations.RunPython(uncompressed, compressible)]
