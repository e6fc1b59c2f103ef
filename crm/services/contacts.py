"""Writes to contacts: create, update, upsert by email or external id, tags, and
the bulk identity resolution the ingestion paths share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery

from crm import bus, clock
from crm.db import insert_ignore_returning
from crm.errors import KeepersError
from crm.models import Contact, ContactAlias, Event, Stage, StageChange, Tag, timezone_names
from crm.services.changes import changes_mark_contacts
from crm.services.parsing import check_text, parse_date, parse_object

# Fields a caller may set on a contact, besides email, external_id and tags.
PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "locale",
    "timezone",
    "birthday",
    "attributes",
    "source",
    "channel",
)
_MAX_LEN = {
    "first_name": 150,
    "last_name": 150,
    "phone": 40,
    "locale": 35,
    "source": 100,
    "channel": 100,
    "external_id": 255,
}
_email_validator = EmailValidator()


def email_normalize(raw: object, *, field_name: str = "email") -> str:
    """Trim and lower-case an address, refusing what is not one."""
    if not isinstance(raw, str):
        raise KeepersError("Email must be a string.", field=field_name)
    email = check_text(raw, field_name).strip().lower()
    try:
        _email_validator(email)
    except ValidationError:
        raise KeepersError(f"'{raw}' is not a valid email address.", field=field_name) from None
    if len(email) > 254:
        raise KeepersError("Email is longer than 254 characters.", field=field_name)
    return email


def contact_fields_clean(data: dict, *, prefix: str = "") -> dict:
    """Validate profile fields given by an integrator or a file; return the cleaned values.
    Raises KeepersError naming the first bad field."""
    cleaned: dict = {}
    for name, value in data.items():
        label = f"{prefix}{name}"
        clean = _FIELD_CLEANERS.get(name)
        if clean is not None:
            cleaned[name] = clean(value, label)
        elif name in PROFILE_FIELDS:
            cleaned[name] = _text(name, value, label)
        else:
            raise KeepersError(f"Unknown field '{name}'.", field=label, code="unknown_field")
    return cleaned


def _email(value: object, label: str) -> str | None:
    return None if value in (None, "") else email_normalize(value, field_name=label)


def _external_id(value: object, label: str) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return check_text(str(value), label)[:255]
    raise KeepersError("external_id must be a string.", field=label)


def _timezone(value: object, label: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or value not in timezone_names():
        raise KeepersError(
            f"'{value}' is not an IANA time zone (for example Europe/Paris).", field=label
        )
    return value


def _attributes(value: object, label: str) -> dict:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise KeepersError("attributes must be a JSON object.", field=label)
    return parse_object(value, label)


def _text(name: str, value: object, label: str) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise KeepersError(f"{name} must be a string.", field=label)
    value = check_text(str(value).strip(), label)
    if len(value) > _MAX_LEN.get(name, 255):
        raise KeepersError(
            f"{name} is longer than {_MAX_LEN.get(name, 255)} characters.", field=label
        )
    return value


def _date(value: object, label: str) -> dt.date | None:
    if value in (None, ""):
        return None
    if not isinstance(value, dt.date | str):
        raise KeepersError(f"'{value}' is not a date (YYYY-MM-DD).", field=label)
    return parse_date(value, label)


def _tags(value: object, label: str) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise KeepersError("tags must be a list of strings.", field=label)
    tags = sorted({check_text(t, label).strip() for t in value if t.strip()})
    if len(tags) > settings.KEEPERS_MAX_TAGS:
        raise KeepersError(
            f"A contact takes at most {settings.KEEPERS_MAX_TAGS} tags; this has {len(tags)}.",
            field=label,
        )
    if any(len(t) > 100 for t in tags):
        raise KeepersError("A tag is longer than 100 characters.", field=label)
    return tags


# Fields with a cleaner of their own; the other PROFILE_FIELDS are plain text (_text).
_FIELD_CLEANERS = {
    "email": _email,
    "external_id": _external_id,
    "timezone": _timezone,
    "birthday": _date,
    "attributes": _attributes,
    "tags": _tags,
}


def tags_ensure(names: Iterable[str]) -> list[Tag]:
    names = sorted(set(names))
    if not names:
        return []
    Tag.objects.bulk_create([Tag(name=n) for n in names], ignore_conflicts=True)
    return list(Tag.objects.filter(name__in=names))


@transaction.atomic
def contact_create(*, source: str = "api", tags: list[str] | None = None, **fields) -> Contact:
    """Create a contact from cleaned fields. A duplicate email or external id is refused."""
    now = clock.now()
    fields.setdefault("source", source)
    if not fields.get("email") and not fields.get("external_id"):
        raise KeepersError("A contact needs an email or an external_id.", field="email")
    contact = Contact(**fields, created_at=now, updated_at=now, stage_changed_at=now)
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise KeepersError(
            "A contact with this email or external_id already exists.",
            code="conflict",
            status_code=409,
            field="email" if fields.get("email") else "external_id",
        ) from None
    if tags:
        contact.tags.set(tags_ensure(tags))
        changes_mark_contacts([contact.pk], "tag")
    _contacts_created([contact], reason="contact created")
    return contact


def _contacts_created(contacts: list[Contact], *, reason: str) -> None:
    """Record the first stage of new contacts and announce them."""
    StageChange.objects.bulk_create(
        [
            StageChange(
                contact_id=c.pk, from_stage="", to_stage=c.stage, at=c.created_at, reason=reason
            )
            for c in contacts
        ]
    )
    changes_mark_contacts([c.pk for c in contacts], "profile")
    bus.publish_many([bus.ContactCreated(contact_id=c.pk, source=c.source) for c in contacts])


@transaction.atomic
def contact_update(*, contact: Contact, tags: list[str] | None = None, **fields) -> Contact:
    """Apply cleaned fields to a contact. `attributes` are merged key by key (a null value
    removes a key), as integrators send partial traits."""
    if "attributes" in fields:
        merged = dict(contact.attributes)
        for key, value in fields.pop("attributes").items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        contact.attributes = merged
    for name, value in fields.items():
        setattr(contact, name, value)
    if not contact.email and not contact.external_id:
        raise KeepersError("A contact needs an email or an external_id.", field="email")
    contact.updated_at = clock.now()
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise KeepersError(
            "Another contact already has this email or external_id.",
            code="conflict",
            status_code=409,
            field="email" if "email" in fields else "external_id",
        ) from None
    if tags is not None:
        contact.tags.set(tags_ensure(tags))
        changes_mark_contacts([contact.pk], "tag")
    changes_mark_contacts([contact.pk], "profile")
    return contact


def contact_find(*, email: str | None = None, external_id: str | None = None) -> Contact | None:
    """The contact an integrator means: by external id first, then by email."""
    if external_id:
        found = Contact.objects.filter(external_id=external_id).first()
        if found:
            return found
    if email:
        return Contact.objects.filter(email=email).first()
    return None


@transaction.atomic
def contact_upsert(*, source: str = "api", **fields) -> tuple[Contact, bool]:
    """Update the contact matching external_id or email, or create one. Returns (contact,
    created). A concurrent create of the same contact is caught and becomes an update."""
    tags = fields.pop("tags", None)
    email, external_id = fields.get("email"), fields.get("external_id")
    if not email and not external_id:
        raise KeepersError("Give an email or an external_id to upsert.", field="email")
    for attempt in range(2):
        existing = contact_find(email=email, external_id=external_id)
        if existing:
            if existing.external_id and external_id and existing.external_id != external_id:
                fields.pop("external_id")  # the email's owner keeps its own id
            return contact_update(contact=existing, tags=tags, **fields), False
        try:
            with transaction.atomic():
                return contact_create(source=source, tags=tags, **fields), True
        except KeepersError as error:
            if error.code != "conflict" or attempt:
                raise
    raise AssertionError("unreachable")


@dataclass
class Identity:
    """Who an incoming item is about, as the integrator said it."""

    email: str | None = None
    external_id: str | None = None
    anonymous_id: str | None = None
    profile: dict = field(default_factory=dict)


def identities_resolve(
    identities: list[Identity], *, source: str, create: bool = True
) -> list[int | None]:
    """Map each identity to a contact id in a handful of queries for the whole batch:
    external id first, then email, then a known anonymous id. Unknown people with an email
    or external id are created (race-safe); anonymous-only items map to None.
    Anonymous ids seen with a known person become aliases, and that visitor's earlier
    anonymous events are attached to the contact."""
    emails = {i.email for i in identities if i.email}
    external_ids = {i.external_id for i in identities if i.external_id}
    anonymous_ids = {i.anonymous_id for i in identities if i.anonymous_id}

    by_email, by_external = _contacts_by_identity(emails, external_ids)
    by_alias = (
        dict(
            ContactAlias.objects.filter(value__in=anonymous_ids).values_list("value", "contact_id")
        )
        if anonymous_ids
        else {}
    )

    def lookup(i: Identity) -> int | None:
        if i.external_id and i.external_id in by_external:
            return by_external[i.external_id]
        if i.email and i.email in by_email:
            return by_email[i.email]
        if not i.email and not i.external_id and i.anonymous_id:
            return by_alias.get(i.anonymous_id)
        return None

    if create:
        missing: dict[tuple, Identity] = {}
        for i in identities:
            if (i.email or i.external_id) and lookup(i) is None:
                key = (i.external_id, None) if i.external_id else (None, i.email)
                missing.setdefault(key, i)
        if missing:
            _contacts_create_missing(list(missing.values()), source=source)
            by_email, by_external = _contacts_by_identity(emails, external_ids)
        _external_ids_attach(identities, by_email, by_external)

    result = [lookup(i) for i in identities]
    new_aliases = {
        i.anonymous_id: cid
        for i, cid in zip(identities, result, strict=True)
        if cid and i.anonymous_id and i.anonymous_id not in by_alias
    }
    if new_aliases:
        aliases_attach(new_aliases)
    return result


def _contacts_by_identity(emails: set, external_ids: set) -> tuple[dict, dict]:
    if not emails and not external_ids:
        return {}, {}
    rows = Contact.objects.filter(
        Q(email__in=emails) | Q(external_id__in=external_ids)
    ).values_list("pk", "email", "external_id")
    by_email: dict[str, int] = {}
    by_external: dict[str, int] = {}
    for pk, email, external_id in rows:
        if email:
            by_email[email] = pk
        if external_id:
            by_external[external_id] = pk
    return by_email, by_external


def _contacts_create_missing(identities: list[Identity], *, source: str) -> None:
    """Insert the people not found, skipping any a concurrent request created first (the
    caller's re-read finds whichever row won); only rows inserted here are announced."""
    now = clock.now()
    fields = [
        "email",
        "external_id",
        "source",
        "created_at",
        "updated_at",
        "stage_changed_at",
        "stage",
        "attributes",
        *PROFILE_FIELDS,
    ]
    fields = list(dict.fromkeys(fields))
    defaults = {"attributes": {}, "birthday": None, "stage": Stage.SUBSCRIBER}
    rows = []
    for i in identities:
        values = {
            "email": i.email,
            "external_id": i.external_id,
            "source": source,
            "created_at": now,
            "updated_at": now,
            "stage_changed_at": now,
        }
        values.update(i.profile)
        rows.append([values.get(f, defaults.get(f, "")) for f in fields])
    inserted = insert_ignore_returning(
        Contact,
        fields,
        rows,
        conflict=None,
        returning=["id", "source"],
        lock_order=["external_id", "email"],
    )
    _contacts_created(
        [
            Contact(pk=pk, source=src, stage=Stage.SUBSCRIBER, created_at=now)
            for pk, src in inserted
        ],
        reason="contact created",
    )


def _external_ids_attach(identities: list[Identity], by_email: dict, by_external: dict) -> None:
    """identify(userId, email) for a contact known only by email: give it the external id."""
    for i in identities:
        if i.external_id and i.external_id not in by_external and i.email in by_email:
            contact_id = by_email[i.email]
            updated = Contact.objects.filter(pk=contact_id, external_id__isnull=True).update(
                external_id=i.external_id, updated_at=clock.now()
            )
            if updated:
                by_external[i.external_id] = contact_id


def aliases_attach(aliases: dict[str, int]) -> None:
    """Remember anonymous ids as belonging to contacts, and hand each visitor's anonymous
    events to the contact."""
    ContactAlias.objects.bulk_create(
        [ContactAlias(value=v, contact_id=c) for v, c in aliases.items()], ignore_conflicts=True
    )
    # One UPDATE for all of them; the alias table decides the owner (first writer wins).
    attached = list(
        Event.objects.filter(contact__isnull=True, anonymous_id__in=list(aliases)).values_list(
            "pk", flat=True
        )
    )
    if attached:
        Event.objects.filter(pk__in=attached).update(
            contact_id=Subquery(
                ContactAlias.objects.filter(value=OuterRef("anonymous_id")).values("contact_id")[:1]
            )
        )
        changes_mark_contacts(set(aliases.values()), "event:*")


@transaction.atomic
def contact_alias(*, previous_id: str, user_id: str, source: str) -> Contact:
    """Segment's alias: `previous_id` (an anonymous id or an old user id) is the same person
    as `user_id`."""
    contact = Contact.objects.filter(external_id=user_id).first()
    old = Contact.objects.filter(external_id=previous_id).first()
    if contact is None and old is not None:
        old.external_id = user_id
        old.updated_at = clock.now()
        old.save(update_fields=["external_id", "updated_at"])
        contact = old
    if contact is None:
        owner = ContactAlias.objects.filter(value=previous_id).values_list("contact_id", flat=True)
        contact = Contact.objects.filter(pk__in=owner).first()
        if contact is not None and not contact.external_id:
            contact.external_id = user_id
            contact.save(update_fields=["external_id"])
    if contact is None:
        contact = contact_create(external_id=user_id, source=source)
    aliases_attach({previous_id: contact.pk})
    return contact
