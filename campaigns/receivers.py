"""The one Django signal Keepers receives: Anymail's `tracking`, sent by its webhook views
(mounted at /anymail/) once per delivery or engagement event. The receiver only hands the
event to the service."""

from anymail.signals import tracking
from django.dispatch import receiver

from campaigns.services.delivery import delivery_event_record


@receiver(tracking, dispatch_uid="campaigns.delivery_event_record")
def tracking_received(sender, event, esp_name, **kwargs) -> None:
    delivery_event_record(event=event, esp_name=esp_name)
