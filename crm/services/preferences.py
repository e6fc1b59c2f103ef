"""A contact's email preferences: topics, frequency, unsubscribe from all, resubscribe.
Every change is written to the consent log with its source, IP and user agent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from crm import clock
from crm.errors import KeepersError
from crm.links import contact_language
from crm.models import ConsentRecord, Contact, ContactPreference, Frequency, Topic
from crm.selectors import consent_current
from crm.services.changes import changes_mark_contacts
from crm.services.consent import consent_record

PAUSE = timedelta(days=30)


@dataclass
class Where:
    """Who made a change, for the consent log."""

    source: str
    ip: str | None = None
    user_agent: str = ""


def preferences_of(contact: Contact) -> dict:
    """What the preference center shows: marketing consent, each topic, frequency."""
    marketing = consent_current(contact=contact) == "granted"
    language = contact_language(contact)
    topics = [
        {
            "topic": topic,
            "name": topic.name_in(language),
            "description": topic.description_in(language),
            "subscribed": marketing
            and consent_current(contact=contact, topic=topic.slug, follows_all=topic.default_opt_in)
            == "granted",
        }
        for topic in Topic.objects.filter(is_active=True)
    ]
    preference = ContactPreference.objects.filter(contact=contact).first()
    frequency = preference.frequency if preference else Frequency.EVERYTHING
    paused_until = preference.paused_until if preference else None
    if frequency == Frequency.PAUSED and paused_until and paused_until <= clock.now():
        frequency = Frequency.EVERYTHING
    return {
        "marketing": marketing,
        "topics": topics,
        "frequency": frequency,
        "paused_until": paused_until,
    }


def _log(contact: Contact, status: str, topic: str, where: Where, wording: str = "") -> None:
    consent_record(
        contact=contact,
        status=status,
        topic=topic,
        source=where.source,
        ip=where.ip,
        user_agent=where.user_agent,
        wording_version=wording,
    )


@transaction.atomic
def preferences_update(
    *, contact: Contact, topics: set[str] | None = None, frequency: str | None = None, where: Where
) -> list[str]:
    """Apply the preference center's form. Returns what changed (for the confirmation)."""
    changes: list[str] = []
    current = preferences_of(contact)
    if topics is not None:
        known = {t["topic"].slug: t for t in current["topics"]}
        unknown = topics - set(known)
        if unknown:
            raise KeepersError(f"Unknown topic {sorted(unknown)[0]!r}.", field="topics")
        if topics and not current["marketing"]:
            _log(contact, "granted", ConsentRecord.ALL_TOPICS, where)
            changes.append("resubscribed")
        for slug, row in known.items():
            wanted = slug in topics
            if wanted != row["subscribed"] or (wanted and not current["marketing"]):
                _log(contact, "granted" if wanted else "withdrawn", slug, where)
                changes.append(
                    f"{'subscribed to' if wanted else 'unsubscribed from'} {row['topic'].name}"
                )
    if frequency is not None and frequency != current["frequency"]:
        if frequency not in Frequency.values:
            raise KeepersError("Frequency is everything, weekly or paused.", field="frequency")
        now = clock.now()
        ContactPreference.objects.update_or_create(
            contact=contact,
            defaults={
                "frequency": frequency,
                "paused_until": now + PAUSE if frequency == Frequency.PAUSED else None,
                "updated_at": now,
            },
        )
        # the frequency is a preference, not consent, but it is logged the same way
        _log(contact, "granted", f"frequency:{frequency}", where)
        changes.append(f"frequency: {Frequency(frequency).label.lower()}")
    if changes:
        changes_mark_contacts([contact.pk], "consent")
    return changes


@transaction.atomic
def unsubscribe_all(*, contact: Contact, where: Where) -> bool:
    """Withdraw marketing consent. Returns False when it was already withdrawn."""
    if consent_current(contact=contact) == "withdrawn":
        return False
    _log(contact, "withdrawn", ConsentRecord.ALL_TOPICS, where)
    return True


@transaction.atomic
def resubscribe(*, contact: Contact, where: Where) -> None:
    _log(contact, "granted", ConsentRecord.ALL_TOPICS, where)


def frequency_allows(*, contact: Contact, now: datetime, sent_in_last_week: int) -> str:
    """ "" when the contact's own frequency preference lets a marketing email go now,
    else the reason (used by the send policy)."""
    preference = ContactPreference.objects.filter(contact=contact).first()
    if preference is None:
        return ""
    if (
        preference.frequency == Frequency.PAUSED
        and preference.paused_until
        and preference.paused_until > now
    ):
        return "the contact paused marketing email"
    if preference.frequency == Frequency.WEEKLY and sent_in_last_week >= 1:
        return "the contact asked for at most one email a week"
    return ""
