"""Consent is an append-only log; the current status is the newest record per channel and
topic (a topic falls back to the "all" record when it has none of its own)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from crm import clock
from crm.errors import KeepersError
from crm.models import Channel, ConsentRecord, ConsentStatus, Contact
from crm.services.changes import changes_mark_contacts


@transaction.atomic
def consent_record(
    *,
    contact: Contact,
    status: str,
    channel: str = Channel.EMAIL,
    topic: str = ConsentRecord.ALL_TOPICS,
    source: str = "",
    ip: str | None = None,
    user_agent: str = "",
    wording_version: str = "",
    at: datetime | None = None,
) -> ConsentRecord:
    if status not in ConsentStatus.values:
        raise KeepersError(
            f"Consent status must be one of {', '.join(ConsentStatus.values)}.", field="status"
        )
    if channel not in Channel.values:
        raise KeepersError(f"Channel must be one of {', '.join(Channel.values)}.", field="channel")
    changes_mark_contacts([contact.pk], "consent")
    return ConsentRecord.objects.create(
        contact=contact,
        status=status,
        channel=channel,
        topic=topic or ConsentRecord.ALL_TOPICS,
        source=source[:100],
        ip=ip or None,
        user_agent=(user_agent or "")[:500],
        wording_version=wording_version[:50],
        recorded_at=at or clock.now(),
    )
