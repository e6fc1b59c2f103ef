"""IdempotencyRecord now belongs to crm (crm 0011 renamed its table and kept the rows):
campaigns forgets the model. Where crm 0011 ran before campaigns 0001 on a new database,
the empty table campaigns 0001 made is dropped."""

from django.db import migrations

OLD_TABLE = "campaigns_idempotencyrecord"


def drop_leftover(apps, schema_editor):
    if OLD_TABLE in schema_editor.connection.introspection.table_names():
        schema_editor.execute(schema_editor.sql_delete_table % {"table": OLD_TABLE})


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0007_template_reply_to"),
        ("crm", "0011_idempotency_record"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyRecord")],
        ),
        # Undone by crm 0011's reverse, which renames the table back.
        migrations.RunPython(drop_leftover, migrations.RunPython.noop),
    ]
