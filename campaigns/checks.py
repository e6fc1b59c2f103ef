"""System checks for campaigns' settings (run by `manage.py check` and at start)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.exceptions import ValidationError

from campaigns.models import validate_mailbox


@checks.register()
def reply_to_setting(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """REPLY_TO_EMAIL goes into every email's headers: a bad value would fail each send."""

    value = settings.KEEPERS_REPLY_TO
    if not value:
        return []
    try:
        validate_mailbox(value)
    except ValidationError as error:
        return [
            checks.Error(
                f"REPLY_TO_EMAIL ({value!r}) is not one email address: {' '.join(error.messages)}",
                hint="Set it to help@shop.example or Shop support <help@shop.example>, or unset it.",
                id="campaigns.E001",
            )
        ]
    return []
