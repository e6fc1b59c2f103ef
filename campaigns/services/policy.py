"""The send policy for marketing mail (never transactional): a frequency cap per contact
(rolling 24 hours and 7 days; settings, per-campaign override), quiet hours in the
contact's own time zone, and the contact's own frequency preference. A message that may
not go now is held until the first moment every rule allows — computed exactly, not
polled — and a promotional message that would wait longer than its campaign's maximum
delay is skipped instead."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings

from campaigns.models import Campaign, EmailTemplate, Message
from crm import clock
from crm.models import Contact, ContactPreference, Frequency

DAY, WEEK = dt.timedelta(days=1), dt.timedelta(days=7)


@dataclass
class Verdict:
    send_at: dt.datetime  # == now when it may go at once
    reason: str = ""


class SendPolicy:
    """Loaded once per engine batch: the marketing sends of the last 7 days and the
    preferences of the batch's contacts (two queries), then checked in memory. Messages
    queued in this batch count too, so a batch cannot overrun a cap."""

    def __init__(self, contact_ids: set[int], now: dt.datetime) -> None:
        self.now = now
        self.sent: dict[int, list[dt.datetime]] = defaultdict(list)
        for contact_id, at in Message.objects.filter(
            contact_id__in=contact_ids,
            category=EmailTemplate.Category.MARKETING,
            status__in=[Message.Status.QUEUED, Message.Status.SENDING, Message.Status.SENT],
            created_at__gt=now - WEEK,
        ).values_list("contact_id", "created_at"):
            self.sent[contact_id].append(at)
        self.preferences = {
            p.contact_id: p for p in ContactPreference.objects.filter(contact_id__in=contact_ids)
        }
        start, end = [*settings.KEEPERS_QUIET_HOURS, "", ""][:2]
        self.quiet = (
            (dt.time.fromisoformat(start), dt.time.fromisoformat(end)) if start and end else None
        )

    def check(self, contact: Contact, campaign: Campaign) -> Verdict:
        cap_day = campaign.cap_24h if campaign.cap_24h is not None else settings.KEEPERS_CAP_24H
        cap_week = campaign.cap_7d if campaign.cap_7d is not None else settings.KEEPERS_CAP_7D
        preference = self.preferences.get(contact.pk)
        if preference and preference.frequency == Frequency.WEEKLY:
            cap_week = min(cap_week, 1)
        times = sorted(self.sent.get(contact.pk, []))
        at, reason = self.now, ""
        for _ in range(6):  # each rule can push the time; settle on a moment all accept
            moved = False
            for earliest, why in (
                (_cap_free(times, at, DAY, cap_day), f"frequency cap: {cap_day} a day"),
                (_cap_free(times, at, WEEK, cap_week), f"frequency cap: {cap_week} a week"),
                (_pause_end(preference, at), "the contact paused marketing email"),
                (self._quiet_end(contact, at), "quiet hours in the contact's time zone"),
            ):
                if earliest > at:
                    at, reason, moved = earliest, why, True
            if not moved:
                break
        return Verdict(send_at=at, reason=reason)

    def _quiet_end(self, contact: Contact, at: dt.datetime) -> dt.datetime:
        if self.quiet is None:
            return at
        zone = clock.contact_zone(contact)
        local = at.astimezone(zone)
        start, end = self.quiet
        now_t = local.time()
        inside = (now_t >= start or now_t < end) if start > end else (start <= now_t < end)
        if not inside:
            return at
        day = local.date() if now_t < end else local.date() + dt.timedelta(days=1)
        return dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.UTC)

    def record(self, contact_id: int, at: dt.datetime) -> None:
        self.sent[contact_id].append(at)


def _cap_free(
    times: list[dt.datetime], at: dt.datetime, window: dt.timedelta, cap: int
) -> dt.datetime:
    """The first moment >= at when fewer than `cap` sends fall in the window before it."""
    if cap <= 0:
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    inside = [t for t in times if at - window < t <= at]
    if len(inside) < cap:
        return at
    # the (len - cap + 1)-th oldest must leave the window
    return inside[len(inside) - cap] + window + dt.timedelta(microseconds=1)


def _pause_end(preference: ContactPreference | None, at: dt.datetime) -> dt.datetime:
    if (
        preference
        and preference.frequency == Frequency.PAUSED
        and preference.paused_until
        and preference.paused_until > at
    ):
        return preference.paused_until
    return at
