"""Enrolments remember when what enrolled them happened (trigger_at) and the cart they are
about (cart_key); a conversion remembers its goal event, once per enrolment. Existing
enrolments get their triggering event's time, else their entry time, in one UPDATE."""

import django.db.models.deletion
from django.db import migrations, models


TRIGGER_TIMES = """
UPDATE campaigns_enrollment SET trigger_at = COALESCE(
  (SELECT e.occurred_at FROM crm_event e WHERE e.id = campaigns_enrollment.trigger_event_id),
  entered_at
) WHERE trigger_at IS NULL
"""


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0008_idempotency_moved_to_crm'),
        ('crm', '0011_idempotency_record'),
    ]

    operations = [
        migrations.AddField(
            model_name='conversion',
            name='event',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='crm.event'),
        ),
        migrations.AddField(
            model_name='enrollment',
            name='cart_key',
            field=models.CharField(blank=True, help_text="The triggering event's cart: its cart_id, else checkout_id, else order_id", max_length=255),
        ),
        migrations.AddField(
            model_name='enrollment',
            name='trigger_at',
            field=models.DateTimeField(blank=True, help_text="When what enrolled them happened: the triggering event's time, else the entry. Goals, exits and 'since enrolment' conditions count from here", null=True),
        ),
        migrations.AddConstraint(
            model_name='conversion',
            constraint=models.UniqueConstraint(fields=('enrollment', 'event'), name='campaigns_conversion_once_per_event'),
        ),
        migrations.RunSQL(TRIGGER_TIMES, migrations.RunSQL.noop),
    ]
