"""The hourly "segments-refresh-all" beat entry became "segments-refresh-drifting" (hourly,
the segments that drift with time) and "segments-refresh-all-nightly". django-celery-beat's
DatabaseScheduler copies the settings' schedule into its table by name and never removes
an entry that left the settings, so the old hourly full refresh would go on running: its
row is deleted here (when beat's tables exist; a fresh install has no such row)."""

from django.db import migrations

TABLE = "django_celery_beat_periodictask"


def drop_stale_entry(apps, schema_editor):
    connection = schema_editor.connection
    if TABLE in connection.introspection.table_names():
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {connection.ops.quote_name(TABLE)} WHERE name = %s",
                ["segments-refresh-all"],
            )


class Migration(migrations.Migration):
    dependencies = [("crm", "0009_clv_limit_fits")]

    operations = [migrations.RunPython(drop_stale_entry, migrations.RunPython.noop)]
