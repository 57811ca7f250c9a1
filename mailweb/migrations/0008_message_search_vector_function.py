"""The search vector as a function, a plain column and a trigger, instead of a generated column.

The vector is what it was (migration 0002): the same expression, now the SQL function
``mailweb_search_vector(subject, addresses, body)``. A generated column can only be computed by
the statement that writes the row, on the one connection that also has to commit the batch; a
plain column lets the IMAP sync compute a batch's vectors on a second connection while the
first one stores the batch before it, then insert them with the rows (``sync.search_vectors``).
On an initial sync the vectors were three quarters of PostgreSQL's time per inserted message.

Every other writer is unchanged: the trigger fills the column on INSERT when none is given,
and recomputes it on UPDATE when the subject, addresses or body change. Existing rows keep
their vectors (``DROP EXPRESSION`` turns the generated column into a plain one in place).
PostgreSQL only; SQLite has no search column (see 0002).
"""

from django.db import migrations

FORWARD_SQL = """
CREATE FUNCTION mailweb_search_vector(subject text, addresses text, body text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('simple'::regconfig, coalesce(subject, '')), 'A') ||
           setweight(to_tsvector('english'::regconfig, coalesce(subject, '')), 'A') ||
           setweight(to_tsvector('simple'::regconfig, coalesce(addresses, '')), 'B') ||
           setweight(to_tsvector('english'::regconfig, left(coalesce(body, ''), 100000)), 'C')
$$;

CREATE FUNCTION mailweb_message_fill_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.search_vector IS NULL THEN
            NEW.search_vector := mailweb_search_vector(
                NEW.subject, NEW.addresses_text, NEW.text_body);
        END IF;
    ELSIF (NEW.subject, NEW.addresses_text, NEW.text_body, NEW.search_vector)
            IS DISTINCT FROM (OLD.subject, OLD.addresses_text, OLD.text_body, OLD.search_vector)
    THEN
        NEW.search_vector := mailweb_search_vector(
            NEW.subject, NEW.addresses_text, NEW.text_body);
    END IF;
    RETURN NEW;
END
$$;

ALTER TABLE mailweb_message ALTER COLUMN search_vector DROP EXPRESSION;
CREATE TRIGGER message_fill_search_vector
    BEFORE INSERT OR UPDATE OF subject, addresses_text, text_body, search_vector
    ON mailweb_message
    FOR EACH ROW EXECUTE FUNCTION mailweb_message_fill_search_vector();
"""

BACKWARD_SQL = """
DROP TRIGGER message_fill_search_vector ON mailweb_message;
DROP FUNCTION mailweb_message_fill_search_vector();
ALTER TABLE mailweb_message DROP COLUMN search_vector;
DROP FUNCTION mailweb_search_vector(text, text, text);
ALTER TABLE mailweb_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple'::regconfig, coalesce(subject, '')), 'A') ||
    setweight(to_tsvector('english'::regconfig, coalesce(subject, '')), 'A') ||
    setweight(to_tsvector('simple'::regconfig, coalesce(addresses_text, '')), 'B') ||
    setweight(to_tsvector('english'::regconfig, left(coalesce(text_body, ''), 100000)), 'C')
) STORED;
CREATE INDEX message_search_idx ON mailweb_message USING gin (search_vector);
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD_SQL)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD_SQL)


class Migration(migrations.Migration):
    dependencies = [("mailweb", "0007_message_fk_indexes_covered")]

    operations = [migrations.RunPython(forward, backward)]
