"""Metrics: each definition on a small data set computed by hand in the comments.

Shop time is UTC and the base currency USD throughout; the active window is 365 days unless
a test says otherwise."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from crm.errors import KeepersError
from crm.models import Contact, MarketingSpend, OrderStatus, Segment, SegmentMembership, Stage
from crm.models import StageChange as Change
from crm.services.metrics import cohorts, funnel, metrics_cache_connect, metrics_summary
from tests.factories import ContactFactory, EventFactory, OrderFactory, survey_answered

pytestmark = pytest.mark.django_db  # PostgreSQL in CI, SQLite where it is absent: both dialects

JUNE = (date(2025, 6, 1), date(2025, 6, 30))


@pytest.fixture(autouse=True)
def _metrics_settings(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    settings.KEEPERS_BASE_CURRENCY = "USD"
    settings.KEEPERS_ACTIVE_WINDOW_DAYS = 365


def at(moment: str) -> datetime:
    """'2025-06-05' is noon that day; a full ISO time is taken as given (UTC)."""
    parsed = datetime.fromisoformat(moment if "T" in moment else f"{moment}T12:00")
    return parsed.replace(tzinfo=UTC)


def person(name: str, *, channel: str = "", created: str = "2024-01-01") -> Contact:
    return ContactFactory(email=f"{name}@example.com", channel=channel, created_at=at(created))


def buy(contact: Contact, when: str, total: str, *, refunded: str = "0", currency: str = "USD"):
    status = OrderStatus.PLACED
    if Decimal(refunded):
        status = OrderStatus.REFUNDED if refunded == total else OrderStatus.PARTIALLY_REFUNDED
    return OrderFactory(
        contact=contact,
        ordered_at=at(when),
        total=Decimal(total),
        refunded_total=Decimal(refunded),
        currency=currency,
        status=status,
    )


# --- customer at date d, S / E / N, CRR and churn --------------------------------------------


def test_customer_at_date_counts_orders_within_the_active_window(settings):
    # Period: the single day d = 2025-12-31. The window at the close of d (2026-01-01 00:00)
    # reaches back 365 days to 2025-01-01 00:00.
    a, b, c, d = (person(n) for n in "abcd")
    buy(a, "2025-01-01T00:00", "10")  # first instant inside E's window → customer at d
    buy(b, "2024-12-31T23:59", "10")  # one minute before it → not a customer at d
    buy(c, "2026-01-01T09:00", "10")  # after d only → not a customer at d
    buy(d, "2025-12-31T22:00", "10")  # on d itself → customer at d, and new in the period

    summary = metrics_summary(date(2025, 12, 31), date(2025, 12, 31))

    # S is taken at the close of 2025-12-30: its window starts 2024-12-31 00:00, so a and b.
    # E = {a, d}; N = {d} (first order on d). CRR = (2 − 1) / 2 × 100 = 50.
    assert summary["customers"] == {"start": 2, "end": 2, "new": 1, "to_date": 3, "repeat": 0}
    assert summary["retention_rate"] == 50.0

    # A 30-day window: at the close of d it starts 2025-12-02, so only d is a customer; at
    # the close of 12-30 nobody is (a's and b's orders are a year old): S = 0 → no CRR.
    settings.KEEPERS_ACTIVE_WINDOW_DAYS = 30
    summary = metrics_summary(date(2025, 12, 31), date(2025, 12, 31))
    assert (summary["customers"]["start"], summary["customers"]["end"]) == (0, 1)
    assert summary["retention_rate"] is None


@pytest.fixture
def june_customers():
    """June 2025 (30 days); the preceding period of equal length is 2025-05-02 … 05-31.
    S is taken at the close of 05-31 (window from 2024-06-01), E at the close of 06-30
    (window from 2024-07-01)."""
    a, b, d, f, g = (person(n) for n in "abdfg")
    buy(a, "2025-05-10", "100")  # a: preceding period 100
    buy(a, "2025-06-05", "80", refunded="30")  # a: June 80 − 30 = 50 net
    buy(b, "2025-05-20", "200")  # b: preceding period 200, nothing in June
    buy(d, "2024-06-15", "60")  # d: inside S's window, outside E's → churned
    buy(f, "2025-06-10", "120")  # f: first order in June → new
    buy(f, "2025-06-11", "500", currency="EUR")  # an order, but not USD revenue
    buy(g, "2024-03-01", "50")  # g: lapsed before the period, in neither S nor E
    return {"a": a, "b": b, "d": d, "f": f, "g": g}


def test_retention_and_churn_add_up_to_100(june_customers):
    summary = metrics_summary(*JUNE)

    # S = {a, b, d} = 3; E = {a, b, f} = 3; N = {f} = 1.
    # CRR = (E − N) / S × 100 = (3 − 1) / 3 × 100 = 66.67
    # churn = (S − (E − N)) / S × 100 = (3 − 2) / 3 × 100 = 33.33
    assert summary["customers"]["start"] == 3
    assert summary["customers"]["end"] == 3
    assert summary["customers"]["new"] == 1
    assert summary["retention_rate"] == 66.67
    assert summary["churn_rate"] == 33.33
    assert summary["retention_rate"] + summary["churn_rate"] == 100


def test_net_revenue_retention_subtracts_refunds(june_customers):
    summary = metrics_summary(*JUNE)

    # The S customers a, b, d. June net revenue: a 80 − 30 = 50, b 0, d 0 → 50.
    # Preceding period (05-02 … 05-31): a 100, b 200, d 0 → 300.
    # NRR = 50 / 300 × 100 = 16.67. (f's June revenue is not in it: f was not in S.)
    nrr = summary["net_revenue_retention"]
    assert (nrr["revenue"], nrr["previous_revenue"]) == (Decimal("50.00"), Decimal("300.00"))
    assert nrr["rate"] == 16.67
    assert summary["period"]["previous_start"] == date(2025, 5, 2)

    # Revenue in June: orders a 80 (30 refunded) and f 120 in USD; f's EUR order is
    # counted as an order but not as revenue: 3 orders, gross 200, refunded 30, net 170.
    assert summary["revenue"] == {
        "orders": 3,
        "gross": Decimal("200.00"),
        "refunded": Decimal("30.00"),
        "net": Decimal("170.00"),
    }


# --- CAC, historic CLV and CLV : CAC ---------------------------------------------------------


@pytest.fixture
def acquisition():
    p0 = person("p0", channel="paid_search")
    buy(p0, "2024-11-01", "210")  # acquired before June
    p1, p2 = person("p1", channel="paid_search"), person("p2", channel="paid_search")
    buy(p1, "2025-06-20", "100")
    buy(p1, "2025-06-25", "50")
    buy(p2, "2025-06-20", "90")
    s1 = person("s1", channel="social")
    buy(s1, "2025-06-20", "250", refunded="50")
    o1 = person("o1", channel="organic")
    buy(o1, "2025-06-20", "40")
    for channel, month, amount, currency in [
        ("paid_search", date(2025, 6, 1), "300", "USD"),
        ("paid_search", date(2025, 5, 1), "310", "USD"),  # May: outside June
        ("social", date(2025, 6, 1), "100", "USD"),
        ("social", date(2025, 6, 1), "1000", "EUR"),  # not the base currency
    ]:
        MarketingSpend.objects.create(
            channel=channel, month=month, amount=Decimal(amount), currency=currency
        )


def test_cac_overall_and_per_channel(acquisition):
    summary = metrics_summary(*JUNE)

    # N: p1, p2 (paid_search), s1 (social), o1 (organic) = 4; USD spend in June 300 + 100.
    # CAC = 400 / 4 = 100; paid_search 300 / 2 = 150; social 100 / 1 = 100; organic 0 / 1 = 0.
    assert summary["customers"]["new"] == 4
    assert (summary["spend"], summary["cac"]) == (Decimal("400.00"), Decimal("100.00"))
    channels = {row["channel"]: row for row in summary["channels"]}
    assert channels["paid_search"]["cac"] == Decimal("150.00")
    assert channels["social"]["cac"] == Decimal("100.00")
    assert channels["organic"]["cac"] == Decimal("0.00")

    # One channel only: its spend and its new customers.
    only = metrics_summary(*JUNE, channel="paid_search")
    assert (only["spend"], only["customers"]["new"], only["cac"]) == (
        Decimal("300.00"),
        2,
        Decimal("150.00"),
    )


def test_spend_counts_a_partly_covered_month_pro_rata(acquisition):
    # 2025-06-16 … 06-30 is 15 of June's 30 days: spend (300 + 100) × 15 / 30 = 200.
    # All four first orders are on 06-20, so N = 4 and CAC = 200 / 4 = 50.
    summary = metrics_summary(date(2025, 6, 16), date(2025, 6, 30))
    assert (summary["spend"], summary["cac"]) == (Decimal("200.00"), Decimal("50.00"))


def test_historic_clv_averages_and_clv_to_cac_per_channel(acquisition):
    summary = metrics_summary(*JUNE)
    channels = {row["channel"]: row for row in summary["channels"]}

    # Net revenue to date: p0 210, p1 100 + 50 = 150, p2 90 → paid_search average
    # (210 + 150 + 90) / 3 = 150; CLV : CAC = 150 / 150 = 1.0.
    assert channels["paid_search"]["average_clv"] == Decimal("150.00")
    assert channels["paid_search"]["clv_cac"] == 1.0
    # s1: 250 − 50 refunded = 200; CLV : CAC = 200 / 100 = 2.0.
    assert channels["social"]["average_clv"] == Decimal("200.00")
    assert channels["social"]["clv_cac"] == 2.0
    # o1: 40, but CAC 0 → no ratio.
    assert channels["organic"]["average_clv"] == Decimal("40.00")
    assert channels["organic"]["clv_cac"] is None
    # Overall: (210 + 150 + 90 + 200 + 40) / 5 = 690 / 5 = 138; 138 / 100 = 1.38.
    assert summary["average_clv"] == Decimal("138.00")
    assert summary["clv_cac"] == 1.38


def test_segment_filter_keeps_current_members_and_leaves_spend_out(acquisition):
    segment = Segment.objects.create(name="VIP", kind=Segment.Kind.STATIC)
    for email in ("p1@example.com", "s1@example.com"):
        SegmentMembership.objects.create(
            segment=segment, contact=Contact.objects.get(email=email), entered_at=at("2025-01-01")
        )
    summary = metrics_summary(*JUNE, segment_id=segment.pk)
    # Members p1 and s1 are both new in June: N = 2; net revenue 150 + 200 = 350.
    assert summary["customers"]["new"] == 2
    assert summary["revenue"]["net"] == Decimal("350.00")
    assert (summary["spend"], summary["cac"], summary["clv_cac"]) == (None, None, None)


def test_stage_filter_keeps_contacts_now_in_that_stage_and_leaves_spend_out(acquisition):
    # p1 and s1 are now loyal (whatever their orders say: the filter reads Contact.stage)
    Contact.objects.filter(email__in=["p1@example.com", "s1@example.com"]).update(stage=Stage.LOYAL)
    summary = metrics_summary(*JUNE, stage=Stage.LOYAL)
    # Both are new in June: N = 2; net revenue 150 + 200 = 350; spend not attributed.
    assert summary["customers"]["new"] == 2
    assert summary["revenue"]["net"] == Decimal("350.00")
    assert (summary["spend"], summary["cac"]) == (None, None)
    assert summary["filters"] == {"channel": None, "segment": None, "stage": "loyal"}
    with pytest.raises(KeepersError) as error:
        metrics_summary(*JUNE, stage="royal")
    assert error.value.field == "stage"


# --- CSAT and NPS ----------------------------------------------------------------------------


def test_csat_and_nps():
    from campaigns.models import Survey

    csat = Survey.objects.create(name="CSAT", kind=Survey.Kind.CSAT, question="Happy?")
    nps = Survey.objects.create(name="NPS", kind=Survey.Kind.NPS, question="Recommend us?")
    who = person("answers")

    def answer(survey, n: int, score: int, when: str = "2025-06-15") -> None:
        survey_answered(survey=survey, contact=who, ref=f"r{n}", score=score, at=at(when)).save()

    for n, score in enumerate([5, 4, 3, 1, 5]):
        answer(csat, n, score)
    answer(csat, 99, 5, when="2025-07-01")  # after the period
    for n, score in enumerate([10, 9, 9, 8, 7, 6, 0, 10, 3, 9]):
        answer(nps, n, score)

    surveys = metrics_summary(*JUNE)["surveys"]

    # CSAT: 5, 4, 5 are 4–5 → 3 of 5 answers = 60.
    assert surveys["csat"] == {"score": 60.0, "answers": 5, "satisfied": 3}
    # NPS: promoters 10, 9, 9, 10, 9 = 5; passives 8, 7 = 2; detractors 6, 0, 3 = 3.
    # NPS = 5/10 × 100 − 3/10 × 100 = 50 − 30 = 20.
    assert surveys["nps"] == {
        "score": 20.0,
        "answers": 10,
        "promoters": 5,
        "passives": 2,
        "detractors": 3,
    }


def test_csat_and_nps_count_keepers_survey_answers_only_and_follow_a_renamed_survey():
    from campaigns.models import Survey
    from crm.services.contacts import Identity
    from crm.services.events import EventIn, events_ingest

    nps = Survey.objects.create(name="NPS", kind=Survey.Kind.NPS, question="Recommend us?")
    who = person("renamed")
    survey_answered(survey=nps, contact=who, ref="r1", score=9, at=at("2025-06-10")).save()
    nps.name = "Recommend Keepers"
    nps.save()
    # the same answer changed after the rename: still one answer, now a detractor's
    survey_answered(survey=nps, contact=who, ref="r1", score=3, at=at("2025-06-11")).save()
    # an integrator's own "Survey Answered" (another tool's survey) is not Keepers' NPS
    events_ingest(
        [
            EventIn(
                name="Survey Answered",
                identity=Identity(email="renamed@example.com"),
                properties={"survey": "Typeform", "kind": "nps", "score": 10, "ref": "t1"},
                occurred_at=at("2025-06-12"),
                message_id="typeform-1",
            )
        ]
    )
    assert metrics_summary(*JUNE)["surveys"]["nps"] == {
        "score": -100.0,
        "answers": 1,
        "promoters": 0,
        "passives": 0,
        "detractors": 1,
    }


# --- cohorts ---------------------------------------------------------------------------------


def test_cohort_table_counts_percentages_and_revenue():
    x, y, z, u, w, v = (person(n) for n in "xyzuwv")
    buy(x, "2025-01-05", "100")
    buy(x, "2025-02-10", "50")
    buy(x, "2025-03-15", "30", refunded="30")  # refunded: still an order, net 0
    buy(y, "2025-01-20", "200")
    buy(y, "2025-03-02", "100")
    buy(z, "2025-02-14", "80")
    buy(z, "2025-02-20", "20")  # the same month: z counts once
    buy(u, "2025-02-01", "500", currency="EUR")  # a customer; no USD revenue
    buy(w, "2025-03-31T23:00", "60")  # the last hour of `end`
    buy(w, "2025-04-02", "999")  # after `end`: left out
    buy(v, "2024-12-30", "10")  # first order before the three months: no cohort
    buy(v, "2025-01-10", "10")

    table = cohorts(3, end=date(2025, 3, 31))
    rows = {row["cohort"]: row for row in table["cohorts"]}
    assert list(rows) == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)]

    # January: x and y. Ordering in Jan (month 0): both; Feb (1): x; Mar (2): x and y.
    # Percentages of 2: 100, 50, 100. Revenue: Jan 100 + 200 = 300; Feb 50;
    # Mar (30 − 30) + 100 = 100; total 450; average historic CLV 450 / 2 = 225.
    jan = rows[date(2025, 1, 1)]
    assert (jan["customers"], jan["active"], jan["percent"]) == (2, [2, 1, 2], [100.0, 50.0, 100.0])
    assert jan["revenue_by_month"] == [Decimal("300.00"), Decimal("50.00"), Decimal("100.00")]
    assert (jan["revenue"], jan["average_clv"]) == (Decimal("450.00"), Decimal("225.00"))

    # February: z and u. Feb: both (100 %); Mar: nobody (0 %). Revenue 80 + 20 = 100 (u's
    # EUR order is not USD revenue); average 100 / 2 = 50.
    feb = rows[date(2025, 2, 1)]
    assert (feb["customers"], feb["active"], feb["percent"]) == (2, [2, 0], [100.0, 0.0])
    assert (feb["revenue"], feb["average_clv"]) == (Decimal("100.00"), Decimal("50.00"))

    # March: w only, 60 (its April order is after the end).
    mar = rows[date(2025, 3, 1)]
    assert (mar["customers"], mar["active"], mar["revenue"]) == (1, [1], Decimal("60.00"))


# --- funnel ----------------------------------------------------------------------------------


def test_funnel_stages_per_month_and_transition_rates():
    # a: subscriber 04-10 → first_time 05-15 → repeat 06-20
    # b: subscriber 05-03 → first_time 06-05
    # c: subscriber 06-12
    # d: subscriber 03-01 → first_time 03-10 → at_risk 06-28
    history = {
        "a": ["2025-04-10 subscriber", "2025-05-15 first_time", "2025-06-20 repeat"],
        "b": ["2025-05-03 subscriber", "2025-06-05 first_time"],
        "c": ["2025-06-12 subscriber"],
        "d": ["2025-03-01 subscriber", "2025-03-10 first_time", "2025-06-28 at_risk"],
    }
    for name, steps in history.items():
        previous = ""
        contact = person(name, created=steps[0].split()[0])
        for step in steps:
            day, stage = step.split()
            Change.objects.create(
                contact=contact, from_stage=previous, to_stage=stage, at=at(day), reason="test"
            )
            previous = stage
        Contact.objects.filter(pk=contact.pk).update(stage=previous)

    result = funnel(date(2025, 5, 1), date(2025, 6, 30))

    today = {row["stage"]: row["contacts"] for row in result["stages"]}
    assert today == {
        Stage.SUBSCRIBER: 1,
        Stage.FIRST_TIME: 1,
        Stage.REPEAT: 1,
        Stage.LOYAL: 0,
        Stage.AT_RISK: 1,
        Stage.LAPSED: 0,
        Stage.UNENGAGED: 0,
    }
    may, june = result["months"]
    # Opening of May (05-01): a subscriber, d first_time.
    # Close of May: a first_time, b subscriber, d first_time → subscriber 1, first_time 2.
    assert {k: v for k, v in may["stages"].items() if v} == {"subscriber": 1, "first_time": 2}
    # In May: b is new; a moved subscriber → first_time: 1 of the 1 subscriber at the
    # opening = 100 %.
    assert may["new_contacts"] == 1
    assert may["transitions"] == [
        {"from_stage": "subscriber", "to_stage": "first_time", "contacts": 1, "rate": 100.0}
    ]
    # Close of June: a repeat, b first_time, c subscriber, d at_risk.
    assert {k: v for k, v in june["stages"].items() if v} == {
        "subscriber": 1,
        "first_time": 1,
        "repeat": 1,
        "at_risk": 1,
    }
    # June opens with subscriber 1 (b) and first_time 2 (a, d): b → first_time 1/1 = 100 %;
    # a → repeat 1/2 = 50 %; d → at_risk 1/2 = 50 %. c is new.
    assert june["new_contacts"] == 1
    assert {(t["from_stage"], t["to_stage"]): t["rate"] for t in june["transitions"]} == {
        ("subscriber", "first_time"): 100.0,
        ("first_time", "repeat"): 50.0,
        ("first_time", "at_risk"): 50.0,
    }


def test_funnel_stage_measures():
    from loyalty.models import Referral, ReferralCode

    # Reach: Page Viewed events in June per visitor.
    k1, k2 = person("k1"), person("k2")
    views = {k1: 3, k2: 1, "anon-1": 2, "anon-2": 1, "anon-3": 1, "anon-4": 1, "anon-5": 4}
    views["anon-6"] = 1
    for who, count in views.items():
        for _ in range(count):
            if isinstance(who, Contact):
                EventFactory(contact=who, name="Page Viewed", occurred_at=at("2025-06-10"))
            else:
                EventFactory(
                    contact=None, anonymous_id=who, name="Page Viewed", occurred_at=at("2025-06-10")
                )
    EventFactory(contact=k2, name="Page Viewed", occurred_at=at("2025-07-01"))  # July
    EventFactory(contact=k2, name="Product Viewed", occurred_at=at("2025-06-10"))  # not a page
    # Conversion: four contacts created in June.
    n1 = person("n1", created="2025-06-01T00:00")
    buy(n1, "2025-06-04T00:00", "50")  # 3 days after signup
    n2 = person("n2", created="2025-06-10T12:00")
    buy(n2, "2025-06-11T00:00", "70")  # 0.5 days
    person("n3", created="2025-06-20")  # no order
    n4 = person("n4", created="2025-06-25T12:00")
    buy(n4, "2025-07-02", "30")  # after the period: not converted in it
    # Repeat purchases: r1 twice, r2 once.
    r1, r2 = person("r1"), person("r2")
    buy(r1, "2025-03-01", "30")
    buy(r1, "2025-06-15", "30")
    buy(r2, "2025-02-01", "20")
    # One referral made in June.
    code = ReferralCode.objects.create(contact=r1, code="R1CODE", created_at=at("2025-01-01"))
    Referral.objects.create(referrer=r1, friend=n1, code=code, created_at=at("2025-06-01"))

    result = funnel(*JUNE)

    # Visitors: k1, k2, anon-1 … anon-6 = 8; page views 3 + 1 + 2 + 1 + 1 + 1 + 4 + 1 = 14;
    # one page only: k2, anon-2, anon-3, anon-4, anon-6 = 5 → bounce rate 5 / 8 = 62.5 %.
    assert result["reach"] == {
        "visitors": 8,
        "page_views": 14,
        "single_page_visitors": 5,
        "bounce_rate": 62.5,
    }
    # Signup rate: 4 new subscribers (n1 … n4) ÷ 8 visitors = 50 %.
    assert result["acquisition"]["signup_rate"] == 50.0
    # Subscriber → first order: n1 and n2 of the 4 = 50 %; median of 3 and 0.5 days = 1.75.
    assert result["conversion"] == {
        "new_subscribers": 4,
        "first_orders": 2,
        "rate": 50.0,
        "median_days": 1.75,
    }
    # Customers to the end of June: n1, n2, r1, r2 (n4's order is in July) = 4; with two
    # orders or more: r1 → repeat-purchase rate 1 / 4 = 25 %.
    retention = result["retention"]
    assert (retention["customers"], retention["repeat_customers"]) == (4, 1)
    assert retention["repeat_purchase_rate"] == 25.0
    # Loyalty: average historic CLV (50 + 70 + 60 + 20) / 4 = 50; E = the same 4 customers
    # (all ordered within the year) → referral rate 1 / 4 = 25 %. No NPS answers.
    loyalty = result["loyalty"]
    assert loyalty["average_clv"] == Decimal("50.00")
    assert (loyalty["referrals"], loyalty["referral_rate"]) == (1, 25.0)
    assert (loyalty["nps"], loyalty["nps_answers"]) == (None, 0)


# --- caching ---------------------------------------------------------------------------------


def test_cached_figures_are_refreshed_when_an_order_is_placed(
    django_capture_on_commit_callbacks, django_assert_num_queries
):
    from crm.services.orders import order_item_parse, orders_place

    metrics_cache_connect()  # what crm's AppConfig.ready() does
    buy(person("early"), "2025-06-02", "10")
    assert metrics_summary(*JUNE)["customers"]["new"] == 1

    # Written behind the services' back (no OrderPlaced): the cached figure stays.
    buy(person("quiet"), "2025-06-03", "10")
    with django_assert_num_queries(0):
        assert metrics_summary(*JUNE)["customers"]["new"] == 1

    # Placed through the service: OrderPlaced bumps the cache generation on commit.
    order = order_item_parse(
        {
            "external_id": "o-1",
            "email": "new@example.com",
            "total": "25",
            "ordered_at": "2025-06-04T10:00:00Z",
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        orders_place([order])
    assert metrics_summary(*JUNE)["customers"]["new"] == 3


def test_a_bulk_placement_makes_the_cached_figures_stale_once(django_capture_on_commit_callbacks):
    """One generation bump a delivery, not one an order (the demo's seed bumped it 6,378
    times)."""
    from django.core.cache import cache

    from crm.services.metrics import GENERATION_KEY
    from crm.services.orders import order_item_parse, orders_place

    metrics_cache_connect()
    metrics_summary(*JUNE)
    before = cache.get(GENERATION_KEY)
    orders = [
        order_item_parse({"external_id": f"b-{n}", "email": f"b{n}@example.com", "total": "5"})
        for n in range(3)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        orders_place(orders)
    assert cache.get(GENERATION_KEY) == before + 1


def test_summary_query_count_is_pinned(
    acquisition, django_assert_max_num_queries, django_assert_num_queries
):
    # work_mem for the next statement, customers (one pass over the orders), spend, survey
    # answers.
    with django_assert_max_num_queries(4):
        metrics_summary(*JUNE)
    segment = Segment.objects.create(name="Any", kind=Segment.Kind.STATIC)
    # + the segment's existence.
    with django_assert_max_num_queries(5):
        metrics_summary(*JUNE, segment_id=segment.pk, channel="social")
    with django_assert_num_queries(0):
        metrics_summary(*JUNE)


# --- API -------------------------------------------------------------------------------------


def test_summary_api(read_api, june_customers):
    response = read_api.get("/api/v1/metrics/summary/?start=2025-06-01&end=2025-06-30")

    assert response.status_code == 200, response.json()
    body = response.json()
    # to_date: a, b, d, f, g; repeat: a (two orders) and f (USD and EUR).
    assert body["customers"] == {"start": 3, "end": 3, "new": 1, "to_date": 5, "repeat": 2}
    assert (body["retention_rate"], body["churn_rate"]) == (66.67, 33.33)
    assert body["net_revenue_retention"] == {
        "rate": 16.67,
        "revenue": "50.00",
        "previous_revenue": "300.00",
    }
    assert body["revenue"]["net"] == "170.00"
    assert body["surveys"]["nps"]["score"] is None
    assert body["currency"] == "USD"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2025-13-01&end=2025-06-30", "start"),
        ("start=2025-06-01", "end"),
        ("start=2025-06-30&end=2025-06-01", "end"),
        ("start=2025-06-01&end=2025-06-30&segment=abc", "segment"),
        ("start=2025-06-01&end=2025-06-30&stage=royal", "stage"),
    ],
)
def test_summary_api_names_the_bad_field(read_api, query, field):
    response = read_api.get(f"/api/v1/metrics/summary/?{query}")

    assert response.status_code == 400
    assert response.json()["details"]["field"] == field


def test_summary_api_unknown_segment_is_404(read_api):
    response = read_api.get("/api/v1/metrics/summary/?start=2025-06-01&end=2025-06-30&segment=999")
    assert response.status_code == 404
    assert response.json()["details"]["field"] == "segment"


def test_cohorts_api(read_api):
    x = person("x")
    buy(x, "2025-02-10", "40")
    buy(x, "2025-03-10", "60")

    response = read_api.get("/api/v1/metrics/cohorts/?months=2&end=2025-03-31")

    assert response.status_code == 200
    # February: x, ordering again in March → [1, 1] = [100 %, 100 %]; revenue 40 + 60.
    feb, mar = response.json()["cohorts"]
    assert feb == {
        "cohort": "2025-02-01",
        "customers": 1,
        "active": [1, 1],
        "percent": [100.0, 100.0],
        "revenue": "100.00",
        "revenue_by_month": ["40.00", "60.00"],
        "average_clv": "100.00",
    }
    assert (mar["customers"], mar["average_clv"]) == (0, None)
    assert read_api.get("/api/v1/metrics/cohorts/?months=0").json()["details"]["field"] == "months"
    assert read_api.get("/api/v1/metrics/cohorts/?end=soon").status_code == 400


def test_funnel_api(read_api):
    response = read_api.get("/api/v1/metrics/funnel/?start=2025-06-01&end=2025-06-30")

    assert response.status_code == 200
    body = response.json()
    assert [m["month"] for m in body["months"]] == ["2025-06-01"]
    assert body["reach"]["bounce_rate"] is None  # no visitors: no rate
    bad = read_api.get("/api/v1/metrics/funnel/?start=June&end=2025-06-30")
    assert (bad.status_code, bad.json()["details"]["field"]) == (400, "start")
