"""Reads shared by the admin, the API and later the metrics: tuned once, here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from crm.errors import KeepersError, NotFound
from crm.models import (
    Channel,
    ConsentRecord,
    Contact,
    Event,
    Order,
    StageChange,
    Tag,
)


def consent_status_subquery(channel: str = Channel.EMAIL, topic: str = ConsentRecord.ALL_TOPICS):
    """The newest consent status for (channel, topic) of the outer contact, or NULL."""
    return Subquery(
        ConsentRecord.objects.filter(contact=OuterRef("pk"), channel=channel, topic=topic)
        .order_by("-recorded_at", "-id")
        .values("status")[:1]
    )


def contact_list() -> QuerySet[Contact]:
    """Contacts with their email consent and tags, in a fixed number of queries."""
    return Contact.objects.annotate(email_consent=consent_status_subquery()).prefetch_related(
        Prefetch("tags", queryset=Tag.objects.only("id", "name"))
    )


def consent_current(
    *, contact: Contact, channel: str = Channel.EMAIL, topic: str = "all", follows_all: bool = True
) -> str | None:
    """granted / withdrawn / None. A topic without records of its own follows "all" (None
    instead with `follows_all=False`: a topic that is not opt-in by default,
    Topic.default_opt_in); a withdrawal from "all" overrides any topic."""
    records = ConsentRecord.objects.filter(contact=contact, channel=channel).order_by(
        "-recorded_at", "-id"
    )
    latest_all = (
        records.filter(topic=ConsentRecord.ALL_TOPICS).values_list("status", flat=True).first()
    )
    if topic == ConsentRecord.ALL_TOPICS or latest_all == "withdrawn":
        return latest_all
    own = records.filter(topic=topic).values_list("status", flat=True).first()
    return own or (latest_all if follows_all else None)


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # event, order, stage, consent
    title: str
    detail: str
    obj: object


def contact_timeline(*, contact: Contact, limit: int = 100) -> list[TimelineEntry]:
    """Events, orders, stage changes and consent changes, newest first: four queries."""
    entries: list[TimelineEntry] = []
    for event in Event.objects.filter(contact=contact).order_by("-occurred_at")[:limit]:
        entries.append(
            TimelineEntry(event.occurred_at, "event", event.name, _summary(event.properties), event)
        )
    for order in (
        Order.objects.filter(contact=contact)
        .prefetch_related("lines")
        .order_by("-ordered_at")[:limit]
    ):
        lines = ", ".join(str(line) for line in order.lines.all()[:5])
        entries.append(
            TimelineEntry(
                order.ordered_at,
                "order",
                f"Order {order.external_id}: {order.total} {order.currency}",
                f"{order.get_status_display()}. {lines}",
                order,
            )
        )
    for change in StageChange.objects.filter(contact=contact).order_by("-at")[:limit]:
        entries.append(
            TimelineEntry(
                change.at,
                "stage",
                f"Stage: {change.get_from_stage_display() or '—'} → "
                f"{change.get_to_stage_display()}",
                change.reason,
                change,
            )
        )
    for record in ConsentRecord.objects.filter(contact=contact).order_by("-recorded_at")[:limit]:
        entries.append(
            TimelineEntry(
                record.recorded_at,
                "consent",
                f"Consent {record.get_status_display().lower()}: {record.channel} / {record.topic}",
                " · ".join(
                    x
                    for x in (
                        record.source,
                        record.wording_version and f"wording {record.wording_version}",
                        record.ip or "",
                    )
                    if x
                ),
                record,
            )
        )
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]


def _summary(properties: dict, limit: int = 160) -> str:
    text = ", ".join(f"{k}={v}" for k, v in list(properties.items())[:8])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def contact_referenced(body: dict) -> Contact:
    """The contact an API body names by contact_id, external_id or email (404 if none)."""
    query = Contact.objects.all()
    if body.get("contact_id") is not None:
        contact = (
            query.filter(pk=body["contact_id"]).first()
            if isinstance(body["contact_id"], int)
            else None
        )
    elif body.get("external_id"):
        contact = query.filter(external_id=str(body["external_id"])).first()
    elif body.get("email"):
        contact = query.filter(email=str(body["email"]).strip().lower()).first()
    else:
        raise KeepersError("Give contact_id, email or external_id.", field="contact_id")
    if contact is None:
        raise NotFound("No such contact.", field="contact_id")
    return contact
