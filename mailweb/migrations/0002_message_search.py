"""Full-text search on PostgreSQL: a generated tsvector column and a GIN index.

The column is not a model field: it is computed by PostgreSQL from subject, addresses and body,
so ingestion never has to maintain it, and SQLite (the no-server default) simply lacks it; search
there falls back to LIKE (mailweb.search).
"""

from django.db import migrations

SEARCH_COLUMN_SQL = """
ALTER TABLE mailweb_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple'::regconfig, coalesce(subject, '')), 'A') ||
    setweight(to_tsvector('english'::regconfig, coalesce(subject, '')), 'A') ||
    setweight(to_tsvector('simple'::regconfig, coalesce(addresses_text, '')), 'B') ||
    setweight(to_tsvector('english'::regconfig, left(coalesce(text_body, ''), 100000)), 'C')
) STORED;
CREATE INDEX message_search_idx ON mailweb_message USING gin (search_vector);
"""

DROP_SQL = """
DROP INDEX IF EXISTS message_search_idx;
ALTER TABLE mailweb_message DROP COLUMN IF EXISTS search_vector;
"""


def add_search(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SEARCH_COLUMN_SQL)


def drop_search(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL)


class Migration(migrations.Migration):
    dependencies = [("mailweb", "0001_initial")]

    operations = [migrations.RunPython(add_search, drop_search)]
