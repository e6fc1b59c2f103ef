"""Authoring email templates: where one is used (and so may not be deleted or renamed),
previews and test sends for a contact with a sample event — the admin's preview page and
the API's preview and test-send endpoints call these, so both show what a send step would
send.

A preview renders through `rendering.email_render` with the context `SendEmail._send_one`
gives it (the event's cart items enriched from the catalog, a Recommender, the
enrolment's `results`), so a cart or coupon email previews with its items."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from django.utils.translation import gettext

from campaigns.mjml import mjml_problems
from campaigns.models import (
    Broadcast,
    Campaign,
    CampaignVersion,
    EmailTemplate,
    EmailTemplateVariant,
    Enrollment,
    Message,
)
from campaigns.services.messages import message_build
from campaigns.services.rendering import Rendered, email_render, template_problems
from campaigns.services.sending import email_build
from crm import clock
from crm.errors import KeepersError
from crm.limits import limit_take
from crm.models import Contact, Event
from crm.services.parsing import parse_object, parse_str
from crm.services.recommendations import Recommender

# A sample event, by what it stands for: the newest of these event names is the sample.
SAMPLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cart": ("Their last cart", ("Checkout Started", "Product Added")),
    "order": ("Their last order", ("Order Completed",)),
    "product": ("The last product they viewed", ("Product Viewed",)),
    "any": ("Their last event of any kind", ()),
}
CART_ITEMS_READ = 20  # Product Added events gathered into a cart without a checkout


def sample_event(*, contact: Contact, sample: str) -> Event | None:
    """The contact's newest event of that sample kind (None when they have none). A cart
    whose newest event is a Product Added, with no checkout since, is the products added
    since their last checkout or order, as one unsaved event with `products`, so a cart
    email previews with every item."""
    if sample not in SAMPLES:
        raise KeepersError(f"sample is one of {', '.join(SAMPLES)}.", field="sample")
    names = SAMPLES[sample][1]
    events = Event.objects.filter(contact=contact).order_by("-occurred_at", "-pk")
    newest = (events.filter(name__in=names) if names else events).first()
    if newest is None or newest.name != "Product Added":
        return newest
    since = (
        events.filter(name__in=("Checkout Started", "Order Completed"))
        .values_list("occurred_at", flat=True)
        .first()
    )
    added = events.filter(name="Product Added")
    if since is not None:
        added = added.filter(occurred_at__gt=since)
    items = [e.properties for e in added[:CART_ITEMS_READ]][::-1]
    return Event(
        contact=contact,
        name=newest.name,
        occurred_at=newest.occurred_at,
        properties={**newest.properties, "products": items},
    )


def preview_event(
    *,
    contact: Contact,
    sample: str = "",
    name: str = "",
    properties: dict | None = None,
) -> Event | None:
    """The event a preview renders with: the sample's (if any), its properties updated
    with those typed in; typed properties without a sample make an event of `name`."""
    event = sample_event(contact=contact, sample=sample) if sample else None
    properties = parse_object(properties, "properties") if properties else {}
    name = parse_str(name, "event_name", max_length=200)
    if event is None and not properties and not name:
        return None
    return Event(
        contact=contact,
        name=name or (event.name if event else "Preview"),
        occurred_at=event.occurred_at if event else clock.now(),
        properties={**(event.properties if event else {}), **properties},
    )


def email_preview(
    *,
    template: EmailTemplate,
    contact: Contact,
    event: Event | None,
    extra: dict | None = None,
    ab_side: str = "",
) -> Rendered:
    """The email a send_email step would render for this contact after this event (raises
    RenderError with the reason): the engine's context, with no enrolment. `extra` is what
    another sender adds to it (a broadcast's `broadcast`), `ab_side` its A/B side."""
    return email_render(
        template=template,
        contact=contact,
        event=event,
        ab_side=ab_side,
        extra={
            "results": {},
            "enrollment_id": None,
            "step_id": "preview",
            "recommender": Recommender([contact]),
            **(extra or {}),
        },
    )


def test_send_limits_take(*, sender: str, to_email: str) -> None:
    """A test send counts against who asks (an API key, a staff user) and the address it
    goes to; past either limit, RateLimited (429) and nothing is sent."""
    limit_take(scope="test-send:sender", key=sender, rate=settings.KEEPERS_RATE_TEST_SEND)
    limit_take(
        scope="test-send:address",
        key=to_email.strip().lower(),
        rate=settings.KEEPERS_RATE_TEST_SEND_ADDRESS,
    )


def email_test_send(
    *,
    template: EmailTemplate,
    contact: Contact,
    to_email: str,
    sender: str,
    event: Event | None = None,
) -> Message:
    """Render for `contact` (as `email_preview`) and send it at once, marked [TEST], to
    `to_email`; the Message is built through message_build and not stored (nothing is
    recorded against the contact). Rate-limited per sender and address."""
    return email_tests_send(
        variants=[("", template, "")],
        contact=contact,
        to_email=to_email,
        sender=sender,
        event=event,
    )[0]


def email_tests_send(
    *,
    variants: list[tuple[str, EmailTemplate, str]],
    contact: Contact,
    to_email: str,
    sender: str,
    event: Event | None = None,
    extra: dict | None = None,
) -> list[Message]:
    """`email_test_send` for several renderings sent as one test (a broadcast's A/B
    subjects, each `(label, template, ab_side)`: "[TEST] A: …"), with a sender's own context
    (`extra`). One take of the rate limit for the whole test; all are rendered before any
    is sent, so a rendering that fails sends none."""
    test_send_limits_take(sender=sender, to_email=to_email)
    now = clock.now()
    tests = [
        message_build(
            contact=contact,
            rendered=email_preview(
                template=template, contact=contact, event=event, extra=extra, ab_side=side
            ),
            template=template,
            to_email=to_email,
            subject_prefix=f"[TEST] {label}",
            idempotency_key=f"test:{uuid.uuid4()}",
            now=now,
            step_id="test",
        )
        for label, template, side in variants
    ]
    get_connection().send_messages([email_build(test) for test in tests])
    return tests


def _refers(steps: list, template: EmailTemplate) -> bool:
    return any(
        isinstance(step, dict)
        and step.get("type") == "send_email"
        and (step.get("config") or {}).get("template") in (template.name, template.pk)
        for step in steps or []
    )


def template_users(template: EmailTemplate) -> list[str]:
    """What would break without this template (or under another name): the campaigns
    whose draft or live version sends it (archived ones aside), versions that running
    enrolments are on, and broadcasts."""
    users = [
        f"campaign {c.name!r}"
        for c in Campaign.objects.exclude(status=Campaign.Status.ARCHIVED).select_related(
            "published_version"
        )
        if _refers(c.steps, template)
        or (c.published_version and _refers(c.published_version.steps, template))
    ]
    running = CampaignVersion.objects.filter(
        pk__in=Enrollment.objects.filter(status=Enrollment.Status.ACTIVE).values("version_id")
    ).select_related("campaign")
    users += [
        f"campaign {v.campaign.name!r} v{v.number} (running enrolments)"
        for v in running
        if _refers(v.steps, template) and f"campaign {v.campaign.name!r}" not in users
    ]
    users += [
        f"broadcast {name!r}"
        for name in Broadcast.objects.filter(template=template).values_list("name", flat=True)
    ]
    return users


def _in_use(template: EmailTemplate, doing: str) -> KeepersError:
    users = template_users(template)
    return KeepersError(
        f"{doing} {template.name!r} would break {', '.join(users)}; take it out of them first.",
        code="template_in_use",
        status_code=409,
        details={"used_by": users},
    )


@transaction.atomic
def template_source_problems(fields: dict, *, format: str) -> list[tuple[str, str]]:
    """What stops a template (or one of its language versions) from being saved, as
    (field, message): its tags must compile and name surveys that exist; blocks must
    compile as MJML (each problem with its line); an HTML template needs its HTML body.
    The admin's forms and the API ask this."""
    problems: list[tuple[str, str]] = []
    if format == EmailTemplate.Format.MJML:
        body = "mjml_body"
        problems += [(body, problem) for problem in mjml_problems(fields.get(body) or "")]
    else:
        body = "html_body"
        if not (fields.get(body) or "").strip():
            problems.append((body, gettext("Write the email's HTML body.")))
    for field in ("subject", "preheader", body, "text_body"):
        problems += [(field, problem) for problem in template_problems(fields.get(field) or "")]
    return problems


VARIANT_FIELDS = (
    "language",
    "subject",
    "subject_b",
    "preheader",
    "mjml_body",
    "html_body",
    "text_body",
)


@transaction.atomic
def email_template_save(
    *, template: EmailTemplate, fields: dict, variants: list[dict] | None = None
) -> EmailTemplate:
    """Create or update a template; `variants` (when given) replaces its versions in other
    languages. Campaign steps name their template, so a template in use keeps its name
    (409)."""
    if template.pk and "name" in fields and fields["name"] != template.name:
        current = EmailTemplate.objects.select_for_update().get(pk=template.pk)
        if template_users(current):
            raise _in_use(current, "Renaming")
    for name, value in fields.items():
        setattr(template, name, value)
    template.save()
    if variants is not None:
        languages = [v["language"] for v in variants]
        if template.language in languages or len(set(languages)) != len(languages):
            raise KeepersError(
                f"variants: one per language, other than the template's own ({template.language}).",
                field="variants",
            )
        template.variants.exclude(language__in=languages).delete()
        for given in variants:
            variant = template.variants.filter(language=given["language"]).first()
            variant = variant or EmailTemplateVariant(template=template)
            for name in VARIANT_FIELDS:
                setattr(variant, name, given.get(name, ""))
            variant.template = template
            variant.save()
        template.refresh_from_db()
    return template


@transaction.atomic
def email_template_delete(*, template: EmailTemplate) -> None:
    """Delete a template nothing uses; else 409 naming what uses it."""
    template = EmailTemplate.objects.select_for_update().get(pk=template.pk)
    if template_users(template):
        raise _in_use(template, "Deleting")
    template.delete()
