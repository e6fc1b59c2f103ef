"""Privacy tools for one person: export everything Keepers holds about a contact, and
erase it (the right to erasure) without breaking what other rows rely on.

crm owns the contact, so crm runs both; campaigns and loyalty add their rows through
`privacy_register(name, exporter=…, eraser=…)` (published in crm/extend.py), so crm
never imports them. An exporter `(contact) -> dict` returns its part of the document; an
eraser `(contact, erasure)` removes or replaces the person's identifying data in its
tables, using `erasure.text()` / `erasure.json()` to scrub free text.

Erasure keeps rows and replaces what identifies the person: the Contact row stays (no
email, no name, an `erased:` external id, `erased_at` set) so orders, refunds, the
ledger, conversions and the metrics read exactly what they read before; consent records
stay as proof of what was agreed and when, without the IP address or the browser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.admin.models import LogEntry
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from crm import clock
from crm.errors import KeepersError
from crm.models import (
    ConsentRecord,
    Contact,
    ContactAlias,
    ContactPreference,
    Event,
    IdempotencyRecord,
    ImportJob,
    LeadScorecard,
    LeadScoreChange,
    OptInRequest,
    Order,
    Refund,
    SegmentMembership,
    StageChange,
)
from crm.services.changes import changes_mark_contacts

log = logging.getLogger(__name__)

EXPORT_FORMAT = "keepers.contact-export/1"
PLACEHOLDER = "[erased]"
# Keys whose value is the person's identity wherever it appears in a JSON document
# (Segment traits, event context, order attributes): dropped on erasure, whatever the value.
IDENTITY_KEYS = frozenset(
    {
        "email",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "full_name",
        "fullname",
        "phone",
        "ip",
        "ip_address",
        "useragent",
        "user_agent",
        "address",
        "birthday",
        "traits",
    }
)
# Names shorter than this are not searched for in free text (an "Al" would hit "Also").
MIN_NEEDLE = 3

Exporter = Callable[[Contact], dict[str, Any]]
Eraser = Callable[[Contact, "Erasure"], None]
Identifiers = Callable[[Contact], Iterable[str]]


@dataclass(frozen=True)
class PrivacyPart:
    name: str
    exporter: Exporter
    eraser: Eraser
    identifiers: Identifiers | None = None


PRIVACY_PARTS: list[PrivacyPart] = []


def privacy_register(
    name: str, *, exporter: Exporter, eraser: Eraser, identifiers: Identifiers | None = None
) -> None:
    """Add an app's part of a contact's export and erasure. `identifiers` may name more
    strings that identify the person in that app's rows (the addresses messages went to),
    so every part scrubs them too. Registering a name again replaces it."""
    PRIVACY_PARTS[:] = [part for part in PRIVACY_PARTS if part.name != name]
    PRIVACY_PARTS.append(PrivacyPart(name, exporter, eraser, identifiers))


def address_hash(email: str) -> str:
    """sha256 of the normalised (trimmed, lower-cased) address: what the suppression list
    keeps of an erased address, so it stays suppressed."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass
class Erasure:
    """What identifies the person being erased, and how free text is scrubbed of it."""

    contact_id: int
    emails: frozenset[str]
    needles: tuple[str, ...]
    at: dt.datetime
    by: str
    _pattern: re.Pattern | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls, *, contact_id: int, emails: Iterable[str], names: Iterable[str], at, by
    ) -> Erasure:
        emails = frozenset(e.strip().lower() for e in emails if e and e.strip())
        words = {n.strip() for n in names if n and len(n.strip()) >= MIN_NEEDLE}
        needles = tuple(sorted(emails | words, key=len, reverse=True))
        pattern = re.compile("|".join(re.escape(n) for n in needles), re.I) if needles else None
        return cls(contact_id, emails, needles, at, by, pattern)

    def hits(self, value: object) -> bool:
        if self._pattern is None:
            return False
        text = value if isinstance(value, str) else json.dumps(value, cls=DjangoJSONEncoder)
        return bool(self._pattern.search(text))

    def text(self, value: str) -> str:
        """The text with every address and name of the person replaced."""
        if not value or self._pattern is None:
            return value
        return self._pattern.sub(PLACEHOLDER, value)

    def json(self, value: Any) -> Any:
        """A JSON value with identity keys dropped and every string scrubbed."""
        if isinstance(value, dict):
            return {
                key: self.json(item)
                for key, item in value.items()
                if str(key).lower() not in IDENTITY_KEYS
            }
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def email_token(self, email: str) -> str:
        """What replaces an address where a unique, stable value is needed (an event key)."""
        return f"erased-{address_hash(email)[:24]}"

    def matching(self, queryset, *fields: str):
        """Rows of `queryset` where any of these text/JSON fields mentions the person
        (a scan: erasure is rare and must find every mention)."""
        where = Q()
        for name in fields:
            alias = f"_privacy_{name}"
            queryset = queryset.annotate(**{alias: Cast(name, TextField())})
            for needle in self.needles:
                where |= Q(**{f"{alias}__icontains": needle})
        return queryset.filter(where) if where else queryset.none()


# ---------------------------------------------------------------------------------------
# export


def rows(queryset, *fields: str) -> list[dict[str, Any]]:
    """Rows as plain dicts (JSON-ready through DjangoJSONEncoder)."""
    return list(queryset.values(*fields))


def contact_export(*, contact: Contact) -> dict[str, Any]:
    """Everything Keepers holds about this contact, as one JSON-ready document: crm's
    part here, then each registered app's part under its name."""
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": clock.now(),
        "contact": _profile(contact),
    }
    document.update(_crm_export(contact))
    for part in PRIVACY_PARTS:
        document[part.name] = part.exporter(contact)
    return document


def contact_export_json(*, contact: Contact) -> str:
    return json.dumps(
        contact_export(contact=contact), cls=DjangoJSONEncoder, indent=2, ensure_ascii=False
    )


def _profile(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.pk,
        "email": contact.email,
        "external_id": contact.external_id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "phone": contact.phone,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "birthday": contact.birthday,
        "attributes": contact.attributes,
        "tags": sorted(contact.tags.values_list("name", flat=True)),
        "source": contact.source,
        "channel": contact.channel,
        "stage": contact.stage,
        "stage_changed_at": contact.stage_changed_at,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "erased_at": contact.erased_at,
    }


def _crm_export(contact: Contact) -> dict[str, Any]:
    orders = []
    for order in Order.objects.filter(contact=contact).prefetch_related("lines", "refunds"):
        orders.append(
            {
                "id": order.pk,
                "external_id": order.external_id,
                "total": order.total,
                "refunded_total": order.refunded_total,
                "currency": order.currency,
                "status": order.status,
                "ordered_at": order.ordered_at,
                "source": order.source,
                "attributes": order.attributes,
                "lines": [
                    {
                        "product_ref": line.product_ref,
                        "name": line.name,
                        "category": line.category,
                        "quantity": line.quantity,
                        "unit_price": line.unit_price,
                    }
                    for line in order.lines.all()
                ],
                "refunds": [
                    {
                        "external_id": refund.external_id,
                        "amount": refund.amount,
                        "reason": refund.reason,
                        "refunded_at": refund.refunded_at,
                    }
                    for refund in order.refunds.all()
                ],
            }
        )
    scorecard = LeadScorecard.objects.filter(contact=contact).values().first()
    return {
        "aliases": rows(contact.aliases.order_by("pk"), "value", "created_at"),
        "consent": rows(
            ConsentRecord.objects.filter(contact=contact).order_by("recorded_at", "pk"),
            "channel",
            "topic",
            "status",
            "source",
            "ip",
            "user_agent",
            "wording_version",
            "recorded_at",
        ),
        "opt_in_requests": rows(
            OptInRequest.objects.filter(contact=contact).order_by("pk"),
            "topics",
            "source",
            "wording_version",
            "ip",
            "created_at",
            "confirmed_at",
        ),
        "preferences": rows(
            ContactPreference.objects.filter(contact=contact), "frequency", "paused_until"
        ),
        "events": rows(
            Event.objects.filter(contact=contact).order_by("occurred_at", "pk"),
            "name",
            "properties",
            "context",
            "anonymous_id",
            "source",
            "message_id",
            "occurred_at",
            "received_at",
        ),
        "orders": orders,
        "stage_history": rows(
            StageChange.objects.filter(contact=contact).order_by("at", "pk"),
            "from_stage",
            "to_stage",
            "reason",
            "at",
        ),
        "segments": rows(
            SegmentMembership.objects.filter(contact=contact).order_by("entered_at", "pk"),
            "segment__name",
            "entered_at",
            "exited_at",
        ),
        "lead_scorecard": scorecard,
    }


# ---------------------------------------------------------------------------------------
# erasure


def contact_find(ref: str) -> Contact:
    """A contact by id or email (the commands' argument)."""
    ref = (ref or "").strip()
    contact = None
    if ref.isdigit():
        contact = Contact.objects.filter(pk=int(ref)).first()
    elif "@" in ref:
        contact = Contact.objects.filter(email=ref.lower()).first()
    if contact is None:
        raise KeepersError(f"No contact {ref!r}.", code="not_found", status_code=404)
    return contact


@transaction.atomic
def contact_erase(*, contact: Contact, by: str) -> Contact:
    """Erase the person: their identifying data removed or replaced in every table
    (crm's, then each registered part's), rows kept so orders, the ledger and the
    metrics stay as they were. Safe to run again (an erased contact is erased again)."""
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    emails = {contact.email or ""}
    for part in PRIVACY_PARTS:
        if part.identifiers is not None:
            emails.update(part.identifiers(contact))
    erasure = Erasure.build(
        contact_id=contact.pk,
        emails=emails,
        names=[contact.first_name, contact.last_name, contact.full_name, contact.phone],
        at=clock.now(),
        by=by,
    )
    _crm_erase(contact, erasure)
    for part in PRIVACY_PARTS:
        part.eraser(contact, erasure)
    _logs_erase(contact, erasure)
    changes_mark_contacts([contact.pk], "contact")
    log.info("contact %s erased by %s", contact.pk, by)
    return contact


def _crm_erase(contact: Contact, erasure: Erasure) -> None:
    contact.email = None
    if not (contact.external_id or "").startswith("erased:"):
        contact.external_id = f"erased:{uuid.uuid4().hex}"
    contact.first_name = contact.last_name = contact.phone = ""
    contact.locale = contact.timezone = ""
    contact.birthday = None
    contact.attributes = {}
    contact.erased_at = contact.erased_at or erasure.at
    contact.updated_at = erasure.at
    contact.save()
    contact.tags.clear()
    ContactAlias.objects.filter(contact=contact).delete()
    ConsentRecord.objects.filter(contact=contact).update(ip=None, user_agent="")
    OptInRequest.objects.filter(contact=contact).update(ip=None)
    LeadScorecard.objects.filter(contact=contact).update(
        **{f"{name}_note": "" for name in _scorecard_notes()}
    )
    LeadScoreChange.objects.filter(scorecard__contact=contact).update(old_value="", new_value="")
    for event in Event.objects.filter(contact=contact).only(
        "properties", "context", "anonymous_id"
    ):
        event.properties = erasure.json(event.properties)
        event.context = {}
        event.anonymous_id = ""
        event.save(update_fields=["properties", "context", "anonymous_id"])
    # Mentions elsewhere: another contact's events (a friend's name in a referral event).
    for event in erasure.matching(Event.objects.exclude(contact=contact), "properties", "context"):
        event.properties = erasure.json(event.properties)
        event.context = erasure.json(event.context)
        event.save(update_fields=["properties", "context"])
    for order in erasure.matching(Order.objects.all(), "attributes"):
        order.attributes = erasure.json(order.attributes)
        order.save(update_fields=["attributes"])
    for refund in erasure.matching(Refund.objects.filter(order__contact=contact), "reason"):
        refund.reason = erasure.text(refund.reason)
        refund.save(update_fields=["reason"])
    for record in erasure.matching(IdempotencyRecord.objects.all(), "response"):
        record.response = erasure.json(record.response)
        record.save(update_fields=["response"])
    for job in erasure.matching(ImportJob.objects.all(), "errors", "message"):
        job.errors = erasure.json(job.errors)
        job.message = erasure.text(job.message)
        job.save(update_fields=["errors", "message"])


def _scorecard_notes() -> list[str]:
    return [f.name[: -len("_note")] for f in LeadScorecard._meta.fields if f.name.endswith("_note")]


def _logs_erase(contact: Contact, erasure: Erasure) -> None:
    """The admin's history (django_admin_log): what staff did to the contact stays, with
    neither the address nor the name in its text."""
    for entry in erasure.matching(LogEntry.objects.all(), "object_repr", "change_message"):
        entry.object_repr = erasure.text(entry.object_repr)[:200]
        entry.change_message = erasure.text(entry.change_message)
        entry.save(update_fields=["object_repr", "change_message"])
