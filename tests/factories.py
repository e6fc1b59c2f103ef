"""factory_boy factories for CRM data. Orders go through the service (orders_place) in
tests that care about stages; these factories make rows directly for list/query tests."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.utils import timezone as dj_timezone

from crm.models import Contact, Event, Order, Tag


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag-{n}")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    timezone = "Europe/Paris"
    created_at = factory.LazyFunction(dj_timezone.now)
    updated_at = factory.LazyFunction(dj_timezone.now)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    contact = factory.SubFactory(ContactFactory)
    name = "Product Viewed"
    occurred_at = factory.LazyFunction(dj_timezone.now)
    received_at = factory.LazyFunction(dj_timezone.now)
    message_id = factory.Sequence(lambda n: f"msg-{n}")


def survey_answered(*, survey, contact, ref: str, score: int, at, **fields) -> Event:
    """The "Survey Answered" event campaigns.services.surveys records for an answer (what
    crm's CSAT and NPS read), unsaved; `survey` is a campaigns Survey."""
    return Event(
        contact=contact,
        name="Survey Answered",
        properties={
            "survey": survey.name,
            "kind": survey.kind,
            "score": score,
            "category": fields.pop("category", ""),
            "ref": ref,
        },
        occurred_at=at,
        received_at=at,
        source="survey",
        # as the survey pages key them: survey-answer:<the answer>:<score>:<time>
        message_id=f"survey-answer:{survey.pk}-{contact.pk}-{ref}:{score}:{at.isoformat()}",
        **fields,
    )


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    external_id = factory.Sequence(lambda n: f"order-{n}")
    contact = factory.SubFactory(ContactFactory)
    total = Decimal("50.00")
    currency = "USD"
    ordered_at = factory.LazyFunction(dj_timezone.now)
