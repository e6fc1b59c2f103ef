"""The metrics dashboard at /admin/metrics/: staff only, every chart drawn from a
small shop's data, its numbers as a table and a CSV, bad input as a form error, and a
bounded number of queries.

Shop time is UTC and the base currency USD; time is frozen on 2026-03-15, so "the last 12
months" is 2025-04-01 … 2026-03-15."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from campaigns.dashboard import MAX_CAMPAIGNS
from campaigns.models import (
    Campaign,
    CampaignVersion,
    Conversion,
    Enrollment,
    Survey,
)
from crm.admin_dashboard import CHARTS, MAX_MONTHS
from crm.models import ClvModelFit, Contact, ContactClv, Event, MarketingSpend, Order, Stage
from crm.services.rfm import rfm_recompute
from tests.factories import survey_answered

pytestmark = pytest.mark.django_db  # PostgreSQL in CI, SQLite where it is absent: both dialects

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
URL = "/admin/metrics/"
CHANNELS = ("organic", "paid_search", "social")


@pytest.fixture(autouse=True)
def _metrics_settings(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    settings.KEEPERS_BASE_CURRENCY = "USD"
    settings.KEEPERS_ACTIVE_WINDOW_DAYS = 365


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def _month(today: date, back: int) -> date:
    index = today.year * 12 + today.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def seed_shop(now: datetime, size: int = 42) -> dict:
    """A small shop as the demo makes it, relative to `now`: `size` contacts over three
    channels, signing up across the last 18 months, ordering every one to four months for
    a while, and visiting the site; spend per channel and month; CSAT and NPS answers every
    month; RFM scores; an active campaign with a holdout group (16 + 4 enrolled, 6 and 1
    conversions)."""
    today = now.date()
    ceiling = now - timedelta(hours=1)  # nothing in the future

    def at(back: int, day: int) -> datetime:
        moment = datetime.combine(_month(today, back), datetime.min.time(), tzinfo=UTC)
        return min(moment + timedelta(days=day - 1, hours=12), ceiling)

    contacts = Contact.objects.bulk_create(
        Contact(
            email=f"shopper{i}@example.com",
            channel=CHANNELS[i % 3],
            created_at=at(17 - i % 18, 1 + i % 20),
            updated_at=now,
            stage=Stage.SUBSCRIBER,
        )
        for i in range(size)
    )
    orders, stages = [], {}
    for i, contact in enumerate(contacts):
        if i % 7 == 6:
            continue  # a subscriber who never ordered
        joined, every, count = 17 - i % 18, 1 + i % 4, 1 + i % 5
        for k in range(count):
            back = joined - k * every
            if back < 0:
                break
            orders.append(
                Order(
                    external_id=f"o-{i}-{k}",
                    contact=contact,
                    total=Decimal(30 + 10 * (i % 6) + 5 * k),
                    refunded_total=Decimal("10") if (i + k) % 11 == 0 else Decimal("0"),
                    currency="USD",
                    ordered_at=at(back, 2 + i % 20),
                )
            )
        placed = min(count, joined // every + 1)
        stages[contact.pk] = (
            Stage.LAPSED
            if joined - (placed - 1) * every > 9
            else [Stage.FIRST_TIME, Stage.REPEAT, Stage.REPEAT, Stage.LOYAL, Stage.LOYAL][
                placed - 1
            ]
        )
    Order.objects.bulk_create(orders)
    Event.objects.bulk_create(
        Event(
            contact=contact if k else None,
            anonymous_id="" if k else f"anon-{i}",
            name="Page Viewed",
            occurred_at=contact.created_at - timedelta(hours=k),
            received_at=contact.created_at,
            message_id=f"view-{i}-{k}",
        )
        for i, contact in enumerate(contacts)
        for k in range(1 + i % 3)
    )
    for contact in contacts:
        contact.stage = stages.get(contact.pk, Stage.SUBSCRIBER)
    Contact.objects.bulk_update(contacts, ["stage"])
    MarketingSpend.objects.bulk_create(
        MarketingSpend(
            channel=channel,
            month=_month(today, back),
            amount=Decimal(amount),
            currency="USD",
        )
        for back in range(18)
        for channel, amount in zip(CHANNELS, ("0", "600", "250"), strict=True)
    )
    csat = Survey.objects.create(name="Delivery", kind=Survey.Kind.CSAT, question="How was it?")
    nps = Survey.objects.create(name="Recommend", kind=Survey.Kind.NPS, question="Recommend us?")
    answers = []
    for back in range(13):
        for j in range(4):
            who = contacts[(back * 4 + j) % len(contacts)]
            csat_score = (back + j) % 5 + 1
            nps_score = (back * 3 + j * 4) % 11
            answers += [
                survey_answered(
                    survey=csat, contact=who, ref=f"m{back}", score=csat_score, at=at(back, 5 + j)
                ),
                survey_answered(
                    survey=nps, contact=who, ref=f"m{back}", score=nps_score, at=at(back, 6 + j)
                ),
            ]
    Event.objects.bulk_create(answers)
    rfm_recompute(now=now)

    campaign = Campaign.objects.create(
        name="Win-back", status=Campaign.Status.ACTIVE, trigger={"type": "segment"}
    )
    Campaign.objects.create(name="Draft idea", trigger={"type": "segment"})  # not active
    version = CampaignVersion.objects.create(
        campaign=campaign, number=1, steps=[], published_at=now - timedelta(days=60)
    )
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(
            campaign=campaign,
            version=version,
            contact=contacts[i],
            holdout=i >= 16,
            entered_at=now - timedelta(days=50 - i),
            trigger_key=f"seed-{i}",
            status=Enrollment.Status.COMPLETED,
        )
        for i in range(20)
    )
    Conversion.objects.bulk_create(
        Conversion(
            campaign=campaign,
            enrollment=enrollment,
            revenue=Decimal("30") if enrollment.holdout else Decimal("40"),
            currency="USD",
            holdout=enrollment.holdout,
            at=enrollment.entered_at + timedelta(days=2),
        )
        for enrollment in [*enrollments[:6], enrollments[16]]
    )
    return {"contacts": contacts, "campaign": campaign}


@pytest.fixture
def shop(frozen):
    return seed_shop(NOW)


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- who may see it -------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


def test_a_logged_in_non_staff_user_is_sent_to_the_login(client, django_user_model):
    user = django_user_model.objects.create_user("shopper", "s@example.com", "pw")
    client.force_login(user)

    response = client.get(f"{URL}?csv=retention")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_admin_index_and_sidebar_link_to_the_dashboard(staff_client):
    index = staff_client.get("/admin/").content.decode()
    other_page = staff_client.get("/admin/crm/contact/").content.decode()

    assert f'href="{URL}"' in index
    assert "Metrics" in index
    assert f'href="{URL}"' in other_page  # the sidebar
    # an app's own index lists only that app
    assert staff_client.get("/admin/crm/").context["app_list"][0]["app_label"] == "crm"


# --- the page -------------------------------------------------------------------------------


def test_every_chart_is_drawn_with_data_and_its_numbers(staff_client, shop):
    response = staff_client.get(URL)

    assert response.status_code == 200
    period = response.context["period"]
    assert (period.start, period.end, period.channel) == (date(2025, 4, 1), NOW.date(), None)
    charts = {chart["key"]: chart for chart in response.context["charts"]}
    assert list(charts) == list(CHARTS)
    html = response.content.decode()
    for key, chart in charts.items():
        assert chart["has_data"], key
        assert chart["rows"], key
        assert f'id="chart-{key}"' in html
        assert chart["svg"].startswith("<svg") and 'class="kc-mark"' in chart["svg"], key
        assert f'aria-labelledby="{key}-title {key}-desc"' in chart["svg"]
        assert f"csv={key}" in html
    assert html.count("Show the numbers") == len(CHARTS)
    # twelve months on the trend charts, 2025-04 … 2026-03
    retention = charts["retention"]["rows"]
    assert [row[0] for row in retention] == [f"2025-{m:02}" for m in range(4, 13)] + [
        "2026-01",
        "2026-02",
        "2026-03",
    ]
    # the RFM grid counts every customer once: 42 contacts, every seventh never ordered
    assert sum(row[3] for row in charts["rfm"]["rows"]) == 36
    # every stage of the funnel is listed, contacts add up
    assert sum(row[1] for row in charts["funnel"]["rows"]) == 42
    # 4 CSAT answers in each month
    assert all(row[1] == 4 for row in charts["surveys"]["rows"])


def test_the_headline_shows_todays_predicted_clv(staff_client, shop):
    assert "Predicted CLV: no fit yet" in staff_client.get(URL).content.decode()

    # given a fit with predictions for three customers: 100, 200 and 330 USD, two of them
    # likely active (P(alive) 0.9 and 0.5; the third 0.2)
    fit = ClvModelFit.objects.create(
        as_of=NOW.date(), fitted_at=NOW, currency="USD", customers=3, horizon_months=12
    )
    customers = Contact.objects.order_by("pk")[:3]
    ContactClv.objects.bulk_create(
        ContactClv(
            contact=contact,
            fit=fit,
            x=1,
            t_x=1,
            T=2,
            zbar=10,
            probability_alive=alive,
            purchases_30d=0,
            purchases_90d=0,
            purchases_365d=0,
            expected_spend=10,
            predicted_clv=value,
        )
        for contact, alive, value in zip(customers, (0.9, 0.5, 0.2), (100, 200, 330), strict=True)
    )

    html = staff_client.get(URL).content.decode()
    # (100 + 200 + 330) / 3 = 210; 2 of 3 = 66.67%
    assert "<strong>210.00 USD</strong><span>Predicted CLV, average, next 12 months</span>" in html
    assert "<strong>66.67%</strong><span>Customers likely active" in html


def test_the_campaign_chart_shows_revenue_and_holdout_lift(staff_client, shop):
    response = staff_client.get(URL, {"csv": "campaigns"})

    header, *rows = rows_of(response)
    assert header[0] == "Campaign" and "Lift (pp)" in header
    # treatment: 6 of 16 converted = 37.5 %, 240 revenue, 15 per contact;
    # holdout: 1 of 4 = 25 %, 30 revenue, 7.50 per contact; lift 12.5 pp;
    # incremental ≈ (15 − 7.50) × 16 = 120.
    assert rows == [
        [
            "Win-back",
            "16",
            "4",
            "37.5",
            "25.0",
            "12.5",
            "240.00",
            "30.00",
            "15.00",
            "7.50",
            "120.00",
        ]
    ]


def test_cac_per_channel_is_spend_over_new_customers(staff_client, shop):
    start, end = "2025-06-01", "2025-08-31"

    response = staff_client.get(URL, {"start": start, "end": end, "csv": "channels"})

    header, *rows = rows_of(response)
    assert header[:4] == ["Channel", "New customers", "Spend (USD)", "CAC (USD)"]
    by_channel = {row[0]: row for row in rows}
    paid = by_channel["paid_search"]
    # three whole months at 600 each = 1800, over that channel's new customers
    assert Decimal(paid[2]) == Decimal("1800.00")
    assert Decimal(paid[3]) == (Decimal("1800") / int(paid[1])).quantize(Decimal("0.01"))
    assert response["Content-Disposition"] == (
        f'attachment; filename="keepers-channels-{start}-{end}.csv"'
    )


@pytest.mark.parametrize("key", list(CHARTS))
def test_each_chart_downloads_as_csv_with_the_tables_numbers(staff_client, shop, key):
    page = staff_client.get(URL, {"months": 6})
    chart = next(c for c in page.context["charts"] if c["key"] == key)

    response = staff_client.get(URL, {"months": 6, "csv": key})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header, *rows = rows_of(response)
    assert header == chart["headers"]
    assert rows and len(rows) == len(chart["rows"])
    assert rows[0][0] == str(chart["rows"][0][0])


def test_a_channel_keeps_that_channels_contacts(staff_client, shop):
    response = staff_client.get(URL, {"channel": "paid_search"})

    assert response.status_code == 200
    channels = next(c for c in response.context["charts"] if c["key"] == "channels")
    assert [row[0] for row in channels["rows"]] == ["paid_search"]
    rfm = next(c for c in response.context["charts"] if c["key"] == "rfm")
    # paid_search is every third contact (i % 3 == 1): 14, of whom i = 13, 34 never ordered
    assert sum(row[3] for row in rfm["rows"]) == 12
    # the presets keep the channel
    assert 'href="?months=3&amp;channel=paid_search"' in response.content.decode()


def test_presets_choose_the_last_months_to_date(staff_client, shop):
    response = staff_client.get(URL, {"months": 3})

    period = response.context["period"]
    assert (period.start, period.end) == (date(2026, 1, 1), NOW.date())
    assert [row[0] for row in response.context["charts"][0]["rows"]] == [
        "2026-01",
        "2026-02",
        "2026-03",
    ]


def test_an_empty_shop_shows_the_empty_state(staff_client, frozen):
    response = staff_client.get(URL)

    assert response.status_code == 200
    assert "No data for this period yet" in response.content.decode()
    assert not response.context["has_data"]


def test_names_are_escaped_in_the_page_and_safe_in_the_csv(staff_client, frozen):
    from campaigns.models import CampaignVersion

    seed = seed_shop(NOW)
    contact = seed["contacts"][0]
    Contact.objects.filter(pk=contact.pk).update(channel="<b>bold</b>")
    Campaign.objects.filter(pk=seed["campaign"].pk).update(name="=HYPERLINK(1)")
    assert CampaignVersion.objects.exists()

    page = staff_client.get(URL).content.decode()
    download = rows_of(staff_client.get(URL, {"csv": "campaigns"}))

    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert download[1][0] == "'=HYPERLINK(1)"


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2025-13-40"}, "Enter a valid date."),
        ({"end": "yesterday"}, "Enter a valid date."),
        ({"start": "2025-06-01", "end": "2025-01-01"}, "The period ends before it starts."),
        ({"start": "2030-01-01"}, "The period starts in the future"),
        ({"start": "2020-01-01", "end": "2025-12-31"}, f"at most {MAX_MONTHS} calendar months"),
        ({"channel": "carrier-pigeon"}, "Select a valid choice."),
        ({"months": "7"}, "Select a valid choice."),
    ],
)
def test_bad_input_is_a_form_error_not_a_500(staff_client, frozen, query, message):
    response = staff_client.get(URL, query)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["charts"] == []

    download = staff_client.get(URL, {**query, "csv": "retention"})
    assert download.status_code == 400
    assert message in download.content.decode()


def test_an_unknown_chart_is_not_found(staff_client, frozen):
    assert staff_client.get(URL, {"csv": "horoscope"}).status_code == 404


# --- cost -------------------------------------------------------------------------------------


def test_the_page_runs_a_bounded_number_of_queries(
    staff_client, shop, django_assert_max_num_queries
):
    """However many contacts and orders: on a cold cache, 4 queries per month for the
    monthly summaries (planner settings for the customer query, customers, spend, surveys)
    and 4 for the whole period's, 7 for the funnel, 1 each for the channel list, the
    cohorts, the RFM grid and the active campaigns, 4 per campaign shown, 2 for the CLV
    predictions, 2 for the session and user: 12 × 4 + 4 + 7 + 4 + 6 × 4 + 2 + 2 = 91."""
    for n in range(5):
        Campaign.objects.create(
            name=f"Campaign {n}", status=Campaign.Status.ACTIVE, trigger={"type": "segment"}
        )

    with django_assert_max_num_queries(12 * 4 + 4 + 7 + 4 + 6 * 4 + 2 + 2):
        assert staff_client.get(URL).status_code == 200
    # warm: the metrics come from the cache; channels, RFM and campaigns are read again
    with django_assert_max_num_queries(3 + 1 + 6 * 4 + 2 + 2):
        assert staff_client.get(URL).status_code == 200
    # a CSV reads only its own chart's figures (here a channel's monthly summaries)
    with django_assert_max_num_queries(1 + 12 * 4 + 2):
        assert staff_client.get(URL, {"csv": "retention", "channel": "social"}).status_code == 200


def test_campaigns_shown_are_capped(staff_client, frozen):
    Campaign.objects.bulk_create(
        Campaign(name=f"Campaign {n:02}", status=Campaign.Status.ACTIVE, trigger={})
        for n in range(MAX_CAMPAIGNS + 3)
    )

    rows = rows_of(staff_client.get(URL, {"csv": "campaigns"}))[1:]

    assert [row[0] for row in rows] == [f"Campaign {n:02}" for n in range(MAX_CAMPAIGNS)]
