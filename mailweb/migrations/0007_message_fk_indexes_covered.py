"""Drop the single-column indexes on Message's foreign keys: composite indexes cover them."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_connection_state"),
        ("mailweb", "0006_message_body_lz4"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="mailweb.conversation",
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="folder",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="mailweb.folder",
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="mailbox",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="accounts.mailaccount",
            ),
        ),
    ]
