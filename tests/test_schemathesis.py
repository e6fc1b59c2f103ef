"""The API answers as its schema says: every operation in /api/schema/ is called with
generated input (valid and invalid), in process through the WSGI app, with a write key,
over a small shop (contacts, a product, an order, a segment, a campaign, a broadcast, a
coupon, a topic, a survey with an answer, a suppression, a failed webhook delivery). No answer may be a 5xx, and each status, content type, header and body must be
one the schema documents for that operation.

Bounded and deterministic: KEEPERS_SCHEMATHESIS_EXAMPLES (25 by default) generated cases
per operation, derandomized from KEEPERS_SCHEMATHESIS_SEED, after the schema's boundary
and negative cases (the coverage phase). The stateful phase (chains of calls through
response links) is off: the schema declares no links."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import ContactFactory

EXAMPLES = int(os.environ.get("KEEPERS_SCHEMATHESIS_EXAMPLES", "25"))
# Another seed explores other cases (a failure found so is a regression test to write).
SEED = int(os.environ.get("KEEPERS_SCHEMATHESIS_SEED", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    WSGIHandler(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)

# The shop's real values, by path parameter and by body field: a generated case takes one
# of them half the time, so operations reach real objects (and valid currencies, months,
# templates) as well as unknown ones.
REAL: dict[str, dict[str, list]] = {"path": {}, "body": {}}


def _half_real(value: object, real: dict[str, list]):
    if isinstance(value, list):
        return st.tuples(*(_half_real(item, real) for item in value)).map(list)
    if not isinstance(value, dict):
        return st.just(value)
    return st.fixed_dictionaries(
        {
            name: st.sampled_from(real[name]) | st.just(item) if name in real else st.just(item)
            for name, item in value.items()
        }
    )


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    return _half_real(path_parameters, REAL["path"])


@schema.hook
def flatmap_body(context, body):
    return _half_real(body, REAL["body"])


@pytest.fixture
def shop(db, write_key):
    """A small shop, and the write key's header. In-process WSGI requests share the
    test's transaction, so Django must not close the connection at each request's start
    and end (its test client does the same). Mail (subscribe's confirmation) goes to
    Anymail's test backend, as in every test."""
    from campaigns.models import (
        Broadcast,
        Campaign,
        EmailTemplate,
        Survey,
        SurveyAnswer,
        WebhookDelivery,
    )
    from campaigns.services.delivery import suppression_create
    from crm.models import Segment, Topic
    from crm.services.orders import order_item_parse, orders_place
    from crm.services.products import product_item_parse, products_upsert
    from crm.services.segments import segment_save
    from loyalty.services.coupons import coupon_create

    contacts = ContactFactory.create_batch(3)
    products_upsert([product_item_parse({"product_id": "sku-1", "name": "Mug", "price": "12"})])
    orders_place(
        [
            order_item_parse(
                {
                    "external_id": "order-1",
                    "email": contacts[0].email,
                    "total": "24.00",
                    "currency": "USD",
                    "items": [{"product_id": "sku-1", "quantity": 2, "price": "12"}],
                }
            )
        ]
    )
    segment = segment_save(name="Everyone", kind=Segment.Kind.STATIC)
    template = EmailTemplate.objects.create(name="news", subject="News", html_body="<p>Hi</p>")
    campaign = Campaign.objects.create(name="Welcome")
    broadcast = Broadcast.objects.create(
        name="March",
        template=template,
        segment=segment,
        send_date=dt.date(2026, 12, 31),
        send_time=dt.time(9),
    )
    coupon = coupon_create(kind="fixed", value=Decimal(5), currency="USD")
    topic = Topic.objects.create(slug="news", name="News")
    survey = Survey.objects.create(name="NPS", kind="nps", question="Recommend us?")
    SurveyAnswer.objects.create(
        survey=survey,
        contact=contacts[0],
        ref="order:order-1",
        score=9,
        category="promoter",
        answered_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        updated_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    suppression, _ = suppression_create(email="bounced@example.com", reason="hard_bounce")
    webhook = WebhookDelivery.objects.create(  # a retry queues a try to a port nothing hears
        url="http://127.0.0.1:9/hook",
        payload={"kind": "vip"},
        idempotency_key="schemathesis",
        status="failed",
        attempts=8,
        created_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    REAL["path"].update(
        id=[
            contacts[0].pk,
            segment.pk,
            campaign.pk,
            broadcast.pk,
            template.pk,
            topic.pk,
            survey.pk,
            suppression.pk,
            webhook.pk,
        ],
        contact_id=[c.pk for c in contacts],
        external_id=["order-1"],
        code=[coupon.code],
    )
    REAL["body"].update(
        contact_id=[c.pk for c in contacts],
        email=[c.email for c in contacts],
        code=[coupon.code],
        product_id=["sku-1"],
        template=["news"],
        segment=[segment.pk],
        currency=["USD"],
        month=["2026-03"],
        amount=["10.00"],
    )
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {"Authorization": f"Bearer {write_key}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    REAL["path"].clear()
    REAL["body"].clear()


@pytest.mark.postgres
@schema.parametrize()
# The shop is made once per operation and its examples add to it (function-scoped, on
# purpose); generated bodies can be large and slow to draw. No example database: the run
# is derandomized, and CI keeps no state between runs.
@hypothesis.settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_the_api_answers_as_documented(case, shop):
    case.call_and_validate(headers=shop, checks=CHECKS)
