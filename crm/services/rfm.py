"""RFM scores: recency, frequency and monetary 1–5 by quintile over customers (contacts
with at least one live order), and the classic named groups from (R, F). One INSERT … SELECT
with window functions; recomputed nightly. Monetary is net spend in the base currency."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from crm import clock
from crm.db import db_datetime
from crm.models import ContactRfm, Order, OrderStatus, Segment
from crm.services.segments import segment_refresh

# (R, F) → group, the widely used eleven-segment map.
GROUP_SQL = """CASE
  WHEN r = 5 AND f >= 4 THEN 'champions'
  WHEN r BETWEEN 3 AND 4 AND f >= 4 THEN 'loyal'
  WHEN r >= 4 AND f BETWEEN 2 AND 3 THEN 'potential_loyalist'
  WHEN r = 5 AND f = 1 THEN 'new'
  WHEN r = 4 AND f = 1 THEN 'promising'
  WHEN r = 3 AND f = 3 THEN 'need_attention'
  WHEN r = 3 AND f <= 2 THEN 'about_to_sleep'
  WHEN r <= 2 AND f = 5 THEN 'cant_lose'
  WHEN r <= 2 AND f >= 3 THEN 'at_risk'
  WHEN r = 1 AND f = 1 THEN 'lost'
  ELSE 'hibernating' END"""


def _quintile(column: str) -> str:
    """1–5 by quintile of PERCENT_RANK: equal values share a score (NTILE would split ties
    at random), and ties take the lowest quintile they reach, so the many one-order
    customers score frequency 1, as the named groups expect."""
    share = f"PERCENT_RANK() OVER (ORDER BY {column})"
    return (
        f"CASE WHEN {share} < 0.2 THEN 1 WHEN {share} < 0.4 THEN 2 "
        f"WHEN {share} < 0.6 THEN 3 WHEN {share} < 0.8 THEN 4 ELSE 5 END"
    )


@transaction.atomic
def rfm_recompute(*, now: datetime | None = None) -> int:
    """Score every customer; contacts with no live order lose their scores. Segments that
    read RFM are then refreshed. Returns the number of customers scored."""

    now = now or clock.now()
    qn = connection.ops.quote_name
    orders, rfm = qn(Order._meta.db_table), qn(ContactRfm._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH stats AS (
              SELECT contact_id, MAX(ordered_at) AS last_at, COUNT(*) AS n,
                     SUM(CASE WHEN currency = %s THEN total - refunded_total ELSE 0 END) AS spend
              FROM {orders} WHERE status <> %s GROUP BY contact_id
            ), scored AS (
              SELECT contact_id,
                     {_quintile("last_at")} AS r,
                     {_quintile("n")} AS f,
                     {_quintile("spend")} AS m
              FROM stats
            )
            INSERT INTO {rfm} (contact_id, recency, frequency, monetary, rfm_group, computed_at)
            SELECT contact_id, r, f, m, {GROUP_SQL}, %s FROM scored WHERE true
            ON CONFLICT (contact_id) DO UPDATE SET recency = excluded.recency,
              frequency = excluded.frequency, monetary = excluded.monetary,
              rfm_group = excluded.rfm_group, computed_at = excluded.computed_at
            """,
            [settings.KEEPERS_BASE_CURRENCY, OrderStatus.REFUNDED, db_datetime(now)],
        )
        scored = cursor.rowcount
        cursor.execute(
            # NOT EXISTS is an anti-join; NOT IN over millions of orders degrades to a
            # per-row scan once the subquery no longer fits in work_mem.
            f"DELETE FROM {rfm} WHERE NOT EXISTS (SELECT 1 FROM {orders} o "
            f"WHERE o.contact_id = {rfm}.contact_id AND o.status <> %s)",
            [OrderStatus.REFUNDED],
        )
    for segment in Segment.objects.filter(
        kind=Segment.Kind.DYNAMIC, is_active=True, is_template=False
    ):
        if "rfm" in segment.depends_on:
            segment_refresh(segment_id=segment.pk, now=now)
    return scored
