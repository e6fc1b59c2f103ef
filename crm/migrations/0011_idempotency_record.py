"""IdempotencyRecord moves from campaigns to crm (API idempotency is infrastructure every
app's API uses). The table is renamed, its rows kept: campaigns 0008 then forgets the
model. On a new database where this runs before campaigns made the table, it is created
here, and campaigns 0008 drops the empty one campaigns 0001 made."""

from django.db import migrations, models

OLD_TABLE = "campaigns_idempotencyrecord"
OLD_CONSTRAINT = models.UniqueConstraint(fields=("scope", "key"), name="campaigns_idem_once")


def take_over_table(apps, schema_editor):
    model = apps.get_model("crm", "IdempotencyRecord")
    tables = schema_editor.connection.introspection.table_names()
    if model._meta.db_table in tables:
        return
    if OLD_TABLE not in tables:
        schema_editor.create_model(model)
        return
    schema_editor.alter_db_table(model, OLD_TABLE, model._meta.db_table)
    schema_editor.remove_constraint(model, OLD_CONSTRAINT)
    for constraint in model._meta.constraints:
        schema_editor.add_constraint(model, constraint)


def give_back_table(apps, schema_editor):
    model = apps.get_model("crm", "IdempotencyRecord")
    tables = schema_editor.connection.introspection.table_names()
    if model._meta.db_table not in tables:
        return
    if OLD_TABLE in tables:  # campaigns 0008 unapplied first and made an empty one
        schema_editor.execute(schema_editor.sql_delete_table % {"table": OLD_TABLE})
    for constraint in model._meta.constraints:
        schema_editor.remove_constraint(model, constraint)
    schema_editor.add_constraint(model, OLD_CONSTRAINT)
    schema_editor.alter_db_table(model, model._meta.db_table, OLD_TABLE)


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0010_drop_stale_hourly_segment_refresh"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("key", models.CharField(max_length=200)),
                        ("scope", models.CharField(max_length=100)),
                        ("request_hash", models.CharField(max_length=64)),
                        ("response", models.JSONField()),
                        ("status_code", models.PositiveSmallIntegerField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("scope", "key"), name="crm_idem_once"
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(take_over_table, give_back_table),
    ]
