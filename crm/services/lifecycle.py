"""Lifecycle stages, computed from data, never typed by hand.

One SQL expression decides a contact's stage; the per-contact path (after an order or an
engagement event) and the nightly pass over everyone both use it, so they cannot disagree.
The nightly pass is set-based: per chunk of contacts, one query finds the contacts whose
stage differs, one INSERT records the changes and one UPDATE per target stage applies them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    FloatField,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.db.models.lookups import GreaterThanOrEqual

from crm import bus, clock
from crm.db import lock_contacts
from crm.models import Contact, Event, Order, Stage, StageChange, order_net
from crm.services.changes import changes_mark

CHUNK = 10_000


def _per_contact(queryset, aggregate):
    """A correlated subquery: `aggregate` over the contact's rows of `queryset`."""
    return Subquery(
        queryset.filter(contact=OuterRef("pk"))
        .order_by()
        .values("contact")
        .annotate(value=aggregate)
        .values("value")[:1]
    )


def stage_expression(now: datetime):
    """The stage every contact should be in at `now`, as one SQL CASE expression."""
    live_orders = Order.objects.live()
    order_count = Coalesce(_per_contact(live_orders, Count("pk")), 0)
    last_order = _per_contact(live_orders, Max("ordered_at"))
    net = order_net()
    spend_12m = Coalesce(
        _per_contact(
            live_orders.filter(
                currency=settings.KEEPERS_BASE_CURRENCY, ordered_at__gte=now - timedelta(days=365)
            ),
            Sum(net),
        ),
        Value(Decimal("0")),
        output_field=DecimalField(max_digits=14, decimal_places=4),
    )
    unengaged_since = now - timedelta(days=settings.KEEPERS_UNENGAGED_DAYS)
    engaged = Exists(
        Event.objects.filter(
            contact=OuterRef("pk"),
            name__in=settings.KEEPERS_ENGAGEMENT_EVENTS,
            occurred_at__gte=unengaged_since,
        )
    )
    return order_count, last_order, spend_12m, engaged, unengaged_since


def _at_risk_rules(now: datetime) -> list[When]:
    """When a customer (not lapsed) is at risk. By default: no order for
    KEEPERS_AT_RISK_DAYS. With KEEPERS_AT_RISK_FROM_CLV: the latest CLV fit's probability
    alive is below KEEPERS_AT_RISK_P_ALIVE; the recency rule stays for customers the
    prediction does not cover (no row yet, or a last order the fit did not see). A one-order customer has P(alive) = 1 under BG/NBD, so only
    repeat customers become at risk by the model; anyone still lapses by recency."""
    by_recency = Q(last_order_at__lt=now - timedelta(days=settings.KEEPERS_AT_RISK_DAYS))
    if not settings.KEEPERS_AT_RISK_FROM_CLV:
        return [When(by_recency, then=Value(Stage.AT_RISK))]
    threshold = float(settings.KEEPERS_AT_RISK_P_ALIVE)
    return [
        When(predicted_alive__lt=threshold, then=Value(Stage.AT_RISK)),
        When(Q(predicted_alive__isnull=True) & by_recency, then=Value(Stage.AT_RISK)),
    ]


def _predicted_alive():
    """The contact's current probability alive: NULL without a prediction, or when the
    contact's last order is one the fit did not see (after its as_of, a UTC day, or after
    it read the orders)."""
    return Case(
        When(
            Q(clv__probability_alive__isnull=False)
            & Q(GreaterThanOrEqual(F("clv__fit__as_of"), TruncDate("last_order_at", tzinfo=UTC)))
            & Q(last_order_at__lte=F("clv__fit__fitted_at")),
            then=F("clv__probability_alive"),
        ),
        default=None,
        output_field=FloatField(),
    )


def contacts_with_target_stage(queryset, now: datetime):
    order_count, last_order, spend_12m, engaged, unengaged_since = stage_expression(now)
    annotated = queryset.annotate(
        n_orders=order_count,
        last_order_at=last_order,
        spend_12m=spend_12m,
        engaged=engaged,
    )
    if settings.KEEPERS_AT_RISK_FROM_CLV:
        annotated = annotated.annotate(predicted_alive=_predicted_alive())
    return annotated.annotate(
        target_stage=Case(
            When(
                Q(n_orders=0) & Q(created_at__lt=unengaged_since) & Q(engaged=False),
                then=Value(Stage.UNENGAGED),
            ),
            When(n_orders=0, then=Value(Stage.SUBSCRIBER)),
            When(
                last_order_at__lt=now - timedelta(days=settings.KEEPERS_LAPSED_DAYS),
                then=Value(Stage.LAPSED),
            ),
            *_at_risk_rules(now),
            When(
                Q(n_orders__gte=2)
                & (
                    Q(n_orders__gte=settings.KEEPERS_LOYAL_MIN_ORDERS)
                    | Q(spend_12m__gte=settings.KEEPERS_LOYAL_SPEND_12M)
                ),
                then=Value(Stage.LOYAL),
            ),
            When(n_orders__gte=2, then=Value(Stage.REPEAT)),
            default=Value(Stage.FIRST_TIME),
        )
    )


def lifecycle_recompute(
    *, contact_ids: Iterable[int], reason: str, now: datetime | None = None
) -> int:
    """Bring the given contacts to the stage their data says. Returns how many changed."""
    ids = sorted(set(contact_ids))
    now = now or clock.now()
    return sum(
        _recompute_chunk(Q(pk__in=ids[i : i + CHUNK]), reason, now)
        for i in range(0, len(ids), CHUNK)
    )


def lifecycle_recompute_all(
    *,
    reason: str = "nightly recompute",
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Every contact, in primary-key ranges of CHUNK, each range in its own short
    transaction. Safe to run twice or alongside ingestion: rows are locked before they are
    compared, and a second run finds nothing to change."""
    now = now or clock.now()
    bounds = Contact.objects.order_by().aggregate(lo=Min("pk"), hi=Max("pk"))
    if bounds["lo"] is None:
        return 0
    lo, hi = bounds["lo"], bounds["hi"]
    changed = 0
    for start in range(lo, hi + 1, CHUNK):
        changed += _recompute_chunk(Q(pk__gte=start, pk__lt=start + CHUNK), reason, now)
        if progress:
            progress(min(start + CHUNK, hi + 1) - lo, hi + 1 - lo)
    return changed


@transaction.atomic
def _recompute_chunk(where: Q, reason: str, now: datetime) -> int:
    lock_contacts(where)
    rows = list(
        contacts_with_target_stage(Contact.objects.filter(where), now)
        .exclude(stage=F("target_stage"))
        .values_list("pk", "stage", "target_stage")
    )
    if not rows:
        return 0
    StageChange.objects.bulk_create(
        [
            StageChange(contact_id=pk, from_stage=old, to_stage=new, at=now, reason=reason)
            for pk, old, new in rows
        ]
    )
    by_target: dict[str, list[int]] = defaultdict(list)
    for pk, _old, new in rows:
        by_target[new].append(pk)
    for stage, pks in by_target.items():
        Contact.objects.filter(pk__in=pks).update(stage=stage, stage_changed_at=now)
    changes_mark((pk, "stage") for pk, _old, _new in rows)
    bus.publish_many(
        [
            bus.StageChanged(contact_id=pk, from_stage=old, to_stage=new, at=now, reason=reason)
            for pk, old, new in rows
        ]
    )
    return len(rows)
