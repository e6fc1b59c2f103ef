"""Suppressions keyed by the address's sha256 (crm.services.privacy.address_hash), so an
erased address (its row's email blanked) stays suppressed; the one-active-row rule moves
from the email to the hash."""

import hashlib

from django.db import migrations, models


def fill_hashes(apps, schema_editor):
    """One UPDATE on PostgreSQL (its sha256 is the same digest of the same normalised
    address); elsewhere in batches of 5,000."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "UPDATE campaigns_suppression SET email_hash = "
            "encode(sha256(convert_to(lower(btrim(email)), 'UTF8')), 'hex')"
        )
        return
    Suppression = apps.get_model("campaigns", "Suppression")
    batch = []
    for row in Suppression.objects.only("email").iterator(chunk_size=5000):
        row.email_hash = hashlib.sha256(row.email.strip().lower().encode()).hexdigest()
        batch.append(row)
        if len(batch) == 5000:
            Suppression.objects.bulk_update(batch, ["email_hash"])
            batch = []
    Suppression.objects.bulk_update(batch, ["email_hash"])


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0011_message_unconfirmed_retention_webhook_due")]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="email_hash",
            field=models.CharField(
                db_index=True,
                default="",
                help_text="sha256 of the normalised address: what an erased address keeps, "
                "and what the send path checks",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_hashes, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="suppression", name="campaigns_suppression_one_active"
        ),
        migrations.AddConstraint(
            model_name="suppression",
            constraint=models.UniqueConstraint(
                condition=models.Q(("lifted_at__isnull", True)),
                fields=("email_hash",),
                name="campaigns_suppression_one_active_hash",
            ),
        ),
        migrations.AlterField(
            model_name="suppression",
            name="email",
            field=models.EmailField(blank=True, help_text="Blank once erased", max_length=254),
        ),
    ]
