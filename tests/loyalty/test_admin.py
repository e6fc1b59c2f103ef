"""Loyalty admin: the read-only ledger (pinned queries), manual adjustments through the
ledger services (reason required, staff user recorded, over-balance refused with nothing
written), a contact's ledger with balances and allocations, the liability report and its
CSV, the referral summary, the tier chart and coupon generation."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from crm.models import Contact
from loyalty.models import (
    POINTS,
    Allocation,
    BonusRule,
    ContactTier,
    Coupon,
    CouponRedemption,
    EarnRule,
    LedgerEntry,
    Referral,
    ReferralCode,
    ReferralRefusal,
    Tier,
    TierChange,
)
from loyalty.services.coupons import coupon_create
from loyalty.services.ledger import ledger_debit, ledger_grant
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)
DAY = dt.timedelta(days=1)
LEDGER = "/admin/loyalty/ledgerentry/"
ADJUST = f"{LEDGER}adjust/"


@pytest.fixture(autouse=True)
def program(settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "UTC"
    settings.KEEPERS_BASE_CURRENCY = "EUR"
    with time_machine.travel(T0):
        yield


def person(email: str) -> Contact:
    return Contact.objects.create(email=email, created_at=T0, updated_at=T0)


def points(contact: Contact, amount: int, key: str, **kwargs) -> LedgerEntry:
    return ledger_grant(
        contact=contact, unit=POINTS, amount=amount, reason="order", key=key, **kwargs
    )[0]


# ------------------------------------------------------------------------------------------
# Changelists
# ------------------------------------------------------------------------------------------
def test_every_loyalty_changelist_renders(staff_client):
    ada, bob = person("ada@example.com"), person("bob@example.com")
    points(ada, 100, "a")
    ledger_debit(contact=ada, unit=POINTS, amount=40, reason="redeemed", key="d")
    code = ReferralCode.objects.create(contact=ada, code="ADA23456", created_at=T0)
    Referral.objects.create(referrer=ada, friend=bob, code=code, created_at=T0)
    ReferralRefusal.objects.create(code=code, email="x@example.com", reason="self", at=T0)
    gold = Tier.objects.create(name="Gold", rank=1, threshold=Decimal("10"))
    ContactTier.objects.create(contact=ada, tier=gold, since=T0, updated_at=T0)
    TierChange.objects.create(contact=ada, to_tier=gold, reason="upgrade", at=T0)
    EarnRule.objects.create(currency="EUR")
    BonusRule.objects.create(kind="birthday", points=50)
    coupon = coupon_create(kind="percent", value=10)
    CouponRedemption.objects.create(coupon=coupon, order_ref="O-1", redeemed_at=T0)
    for model in [
        "ledgerentry",
        "referral",
        "referralrefusal",
        "referralcode",
        "tier",
        "tierchange",
        "earnrule",
        "bonusrule",
        "coupon",
        "couponredemption",
    ]:
        response = staff_client.get(f"/admin/loyalty/{model}/")
        assert response.status_code == 200, model
    for model in ["tier", "earnrule", "bonusrule"]:
        assert staff_client.get(f"/admin/loyalty/{model}/add/").status_code == 200, model
    entry = LedgerEntry.objects.filter(type="redeem").get()
    page = staff_client.get(f"{LEDGER}{entry.pk}/change/")
    assert page.status_code == 200
    assert "Taken from grants" in page.content.decode()


def test_the_ledger_changelist_queries_are_pinned(staff_client, django_assert_max_num_queries):
    contacts = [person(f"p{i}@example.com") for i in range(10)]
    for i, contact in enumerate(contacts):
        points(contact, 100, "earn", expires_at=T0 + 60 * DAY)
        ledger_grant(
            contact=contact,
            unit="EUR",
            amount=Decimal("5"),
            reason="goodwill",
            key="adj",
            type="adjust",
            source_type="staff",
            staff_user=staff_client.user,
        )
        ledger_debit(contact=contact, unit=POINTS, amount=10 + i, reason="redeemed", key="r")
    assert LedgerEntry.objects.count() == 30
    # session, user, the page and its count, filter choices (unit, source_type), the date
    # hierarchy: the same with 30 entries or 3,000 (contact and staff user are joined)
    with django_assert_max_num_queries(8):
        response = staff_client.get(LEDGER)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("p3@example.com") == 3
    assert "Manual adjustment" in html and "Liability report" in html


def test_ledger_filters_and_search(staff_client):
    ada, bob = person("ada@example.com"), person("bob@example.com")
    soon = points(ada, 100, "soon", expires_at=T0 + 10 * DAY)
    later = points(ada, 200, "later", expires_at=T0 + 90 * DAY)
    forever = points(bob, 300, "forever")
    gone = points(bob, 400, "gone", expires_at=T0 - DAY, now=T0 - 30 * DAY)

    def shown(**params) -> set[int]:
        response = staff_client.get(LEDGER, params)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert shown(expiry="soon") == {soon.pk}
    assert shown(expiry="never") == {forever.pk}
    assert shown(expiry="expired") == {gone.pk}
    assert shown(q="ada@") == {soon.pk, later.pk}
    assert shown(unit="points", type__exact="earn") == {soon.pk, later.pk, forever.pk, gone.pk}
    filtered = staff_client.get(LEDGER, {"contact__id__exact": ada.pk})
    assert {row.pk for row in filtered.context["cl"].result_list} == {soon.pk, later.pk}
    assert f"{LEDGER}{ada.pk}/ledger/" in filtered.content.decode()


def test_the_ledger_is_read_only(staff_client):
    ada = person("ada@example.com")
    entry = points(ada, 100, "a")
    assert staff_client.get(f"{LEDGER}add/").status_code == 403
    assert staff_client.post(f"{LEDGER}{entry.pk}/change/", {"amount": "999"}).status_code == 403
    assert staff_client.post(f"{LEDGER}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    changelist = staff_client.get(LEDGER)
    assert "delete_selected" not in changelist.content.decode()
    entry.refresh_from_db()
    assert entry.amount == 100 and LedgerEntry.objects.count() == 1


# ------------------------------------------------------------------------------------------
# Manual adjustment
# ------------------------------------------------------------------------------------------
def adjust(client, contact: Contact, **fields):
    data = {"contact": contact.pk, "unit": "points", "direction": "add", "reason": "goodwill"}
    return client.post(ADJUST, {**data, **fields}, follow=True)


def test_an_adjustment_adds_with_the_reason_and_the_staff_user(staff_client):
    ada = person("ada@example.com")
    form = staff_client.get(ADJUST, {"contact": ada.pk})
    assert form.status_code == 200 and "ada@example.com" in form.content.decode()

    response = adjust(staff_client, ada, amount="150", reason="Parcel lost in transit")

    entry = LedgerEntry.objects.get()
    assert (entry.type, entry.amount, entry.remaining) == ("adjust", 150, 150)
    assert entry.reason == "Parcel lost in transit"
    assert entry.staff_user == staff_client.user
    assert entry.source_type == "staff" and entry.idempotency_key.startswith("staff:")
    assert response.redirect_chain[-1][0] == f"{LEDGER}{ada.pk}/ledger/"
    assert "Added 150 points to ada@example.com. Available now: 150." in (response.content.decode())


def test_an_adjustment_adds_store_credit_with_an_expiry(staff_client):
    ada = person("ada@example.com")
    adjust(staff_client, ada, unit="eur", amount="12.50", expires_at="2026-04-01T10:00")
    entry = LedgerEntry.objects.get()
    assert (entry.unit, entry.amount) == ("EUR", Decimal("12.5"))
    assert entry.expires_at == dt.datetime(2026, 4, 1, 10, tzinfo=UTC)


def test_an_adjustment_gives_shop_cash_with_a_redeem_window(staff_client):
    ada = person("ada@example.com")
    adjust(
        staff_client,
        ada,
        unit="EUR",
        amount="10",
        redeemable_from="2026-04-01T00:00",
        expires_at="2026-04-15T00:00",
    )
    entry = LedgerEntry.objects.get()
    assert entry.redeemable_from == dt.datetime(2026, 4, 1, tzinfo=UTC)
    assert entry.expires_at == dt.datetime(2026, 4, 15, tzinfo=UTC)


def test_an_adjustment_expires_after_a_number_of_days(staff_client):
    ada = person("ada@example.com")
    adjust(staff_client, ada, amount="40", expires_in_days="14")
    assert abs(LedgerEntry.objects.get().expires_at - (T0 + 14 * DAY)) < dt.timedelta(minutes=1)


def test_an_adjustment_window_is_checked_as_the_api_checks_it(staff_client):
    ada = person("ada@example.com")
    both = adjust(staff_client, ada, amount="1", expires_in_days="3", expires_at="2026-04-01T10:00")
    assert both.context["form"].errors["expires_in_days"] == [
        "Give expires_at or expires_in_days, not both."
    ]
    closed = adjust(
        staff_client,
        ada,
        amount="1",
        redeemable_from="2026-04-10T00:00",
        expires_at="2026-04-01T00:00",
    )
    assert closed.context["form"].errors["expires_at"] == [
        "It must expire after it becomes redeemable."
    ]
    removal = adjust(
        staff_client, ada, direction="remove", amount="1", redeemable_from="2026-04-10T00:00"
    )
    assert removal.context["form"].errors["redeemable_from"]
    assert not LedgerEntry.objects.exists()


def test_an_adjustment_removes_oldest_expiry_first(staff_client):
    ada = person("ada@example.com")
    later = points(ada, 100, "later", expires_at=T0 + 90 * DAY)
    sooner = points(ada, 20, "sooner", expires_at=T0 + 10 * DAY)

    response = adjust(staff_client, ada, direction="remove", amount="50", reason="Fraud check")

    entry = LedgerEntry.objects.get(type="adjust")
    assert entry.amount == -50 and entry.staff_user == staff_client.user
    assert sorted(Allocation.objects.filter(debit=entry).values_list("grant_id", "amount")) == (
        sorted([(sooner.pk, 20), (later.pk, 30)])
    )
    assert "Removed 50 points from ada@example.com. Available now: 70." in (
        response.content.decode()
    )


def test_an_adjustment_needs_a_reason(staff_client):
    ada = person("ada@example.com")
    response = adjust(staff_client, ada, amount="10", reason="   ")
    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert not LedgerEntry.objects.exists()


def test_removing_more_than_the_balance_shows_why_and_writes_nothing(staff_client):
    ada = person("ada@example.com")
    points(ada, 100, "a")

    response = adjust(staff_client, ada, direction="remove", amount="500")

    assert response.status_code == 200
    assert response.context["form"].errors["amount"] == [
        "Not enough points: 100 available, 500 asked."
    ]
    assert LedgerEntry.objects.count() == 1 and not Allocation.objects.exists()
    assert LedgerEntry.objects.get().remaining == 100


def test_the_service_rules_reach_the_form(staff_client):
    ada = person("ada@example.com")
    half = adjust(staff_client, ada, amount="1.5")
    assert half.context["form"].errors["amount"] == ["Points are whole numbers."]
    unit = adjust(staff_client, ada, unit="euros", amount="1")
    assert unit.context["form"].errors["unit"]
    expiring_removal = adjust(
        staff_client, ada, direction="remove", amount="1", expires_at="2026-04-01T10:00"
    )
    assert expiring_removal.context["form"].errors["expires_at"]
    past = adjust(staff_client, ada, amount="1", expires_at="2026-03-01T10:00")
    assert past.context["form"].errors["expires_at"] == ["The expiry is already past."]
    assert not LedgerEntry.objects.exists()


def test_a_form_sent_twice_records_one_adjustment(staff_client):
    ada = person("ada@example.com")
    key = "0b7f6c1e-5a5e-4d4c-9a37-3f0e8c1d2b11"
    adjust(staff_client, ada, amount="10", key=key)
    again = adjust(staff_client, ada, amount="10", key=key)
    assert LedgerEntry.objects.get().idempotency_key == f"staff:{key}"
    assert "already recorded" in again.content.decode()


def test_an_adjustment_needs_the_csrf_token(django_user_model):
    staff = django_user_model.objects.create_superuser("s", "s@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    ada = person("ada@example.com")
    response = client.post(
        ADJUST,
        {"contact": ada.pk, "unit": "points", "direction": "add", "amount": 5, "reason": "x"},
    )
    assert response.status_code == 403
    assert not LedgerEntry.objects.exists()


def test_adjusting_needs_the_add_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", "c@example.com", "pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_ledgerentry"))
    client.force_login(clerk)
    ada = person("ada@example.com")
    assert client.get(f"{LEDGER}{ada.pk}/ledger/").status_code == 200
    assert client.get(ADJUST).status_code == 403
    assert "Manual adjustment" not in client.get(LEDGER).content.decode()


# ------------------------------------------------------------------------------------------
# A contact's ledger, and the buttons on the contact's page
# ------------------------------------------------------------------------------------------
def test_the_contact_ledger_shows_balances_tier_and_allocations(
    staff_client, django_assert_max_num_queries
):
    ada = person("ada@example.com")
    Tier.objects.create(name="Insider", rank=1, basis="points", threshold=Decimal("1"))
    Tier.objects.create(name="Rouge", rank=2, basis="points", threshold=Decimal("1000"))
    sooner = ledger_grant(
        contact=ada,
        unit="EUR",
        amount=Decimal("10"),
        reason="welcome",
        key="w",
        expires_at=T0 + 14 * DAY,
    )[0]
    later = ledger_grant(
        contact=ada,
        unit="EUR",
        amount=Decimal("30"),
        reason="bonus",
        key="b",
        expires_at=T0 + 30 * DAY,
    )[0]
    ledger_grant(
        contact=ada,
        unit="EUR",
        amount=Decimal("5"),
        reason="shop cash",
        key="c",
        redeemable_from=T0 + 7 * DAY,
    )
    spent = ledger_debit(
        contact=ada, unit="EUR", amount=Decimal("15"), reason="order O-1", key="o"
    )[0]
    points(ada, 250, "p")
    lapsed = points(ada, 40, "old", expires_at=T0 - DAY, now=T0 - 30 * DAY)
    ContactTier.objects.create(
        contact=ada, tier=Tier.objects.get(name="Insider"), since=T0, updated_at=T0
    )

    # session, user, contact, balances, page count, entries, allocations both ways, and
    # tier_progress (tiers, the contact's tier, points and spend): none per entry
    with django_assert_max_num_queries(12):
        response = staff_client.get(f"{LEDGER}{ada.pk}/ledger/")

    html = response.content.decode()
    balances = {b["unit"]: b for b in response.context["balances"]}
    assert balances["EUR"]["available"] == "25.00" and balances["EUR"]["pending"] == "5.00"
    assert balances["EUR"]["expiring"] == [{"at": later.expires_at, "amount": "25.00"}]
    assert balances[POINTS]["available"] == "250"
    assert 'data-kp="available-EUR">25.00<' in html
    assert "Insider" in html and "Rouge" in html and "710 to go" in html  # 250 + 40 earned
    row = html[html.index(f'id="entry-{spent.pk}"') :]
    row = row[: row.index("</tr>")]
    assert f'10.00 from <a href="#entry-{sooner.pk}">' in row
    assert f'5.00 from <a href="#entry-{later.pk}">' in row
    used = html[html.index(f'id="entry-{sooner.pk}"') :]
    assert f'10.00 by <a href="#entry-{spent.pk}">' in used[: used.index("</tr>")]
    lapsed_row = html[html.index(f'id="entry-{lapsed.pk}"') :]
    assert "expired, awaiting write-off" in lapsed_row[: lapsed_row.index("</tr>")]
    assert f"{ADJUST}?contact={ada.pk}" in html


def test_the_contact_page_links_to_the_ledger_and_the_adjustment(staff_client):
    ada = person("ada@example.com")
    html = staff_client.get(f"/admin/crm/contact/{ada.pk}/change/").content.decode()
    assert f"{LEDGER}{ada.pk}/ledger/" in html
    assert f"{ADJUST}?contact={ada.pk}" in html
    assert "<h2>Timeline" in html  # the CRM's page, with the buttons added


# ------------------------------------------------------------------------------------------
# Liability report
# ------------------------------------------------------------------------------------------
@pytest.fixture
def liabilities(settings):
    """Points and store credit at T0, bucketed by expiry month in Paris time."""
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"
    EarnRule.objects.create(currency="EUR", credit_per_point=Decimal("0.01"))
    EarnRule.objects.create(currency="USD", credit_per_point=Decimal("0.02"))
    ada, bob = person("ada@example.com"), person("bob@example.com")
    points(ada, 1000, "p1", expires_at=dt.datetime(2026, 4, 15, tzinfo=UTC))
    points(ada, 500, "p2", expires_at=dt.datetime(2026, 4, 20, tzinfo=UTC))
    points(ada, 300, "p3")
    # past its expiry, not yet written off by the expiry task: owed to nobody
    points(ada, 200, "p4", expires_at=T0 - 5 * DAY, now=T0 - 30 * DAY)
    ledger_debit(contact=ada, unit=POINTS, amount=100, reason="redeemed", key="d1")  # from p1
    # 23:30 UTC on 30 April is 01:30 on 1 May in Paris
    points(bob, 50, "p5", expires_at=dt.datetime(2026, 4, 30, 23, 30, tzinfo=UTC))

    def credit(contact, amount, currency, key, **kwargs):
        ledger_grant(
            contact=contact,
            unit=currency,
            amount=Decimal(amount),
            reason="credit",
            key=key,
            **kwargs,
        )

    credit(ada, "20", "EUR", "c1", expires_at=dt.datetime(2026, 5, 10, tzinfo=UTC))
    credit(ada, "5", "EUR", "c2")
    credit(bob, "7.5", "USD", "c3", expires_at=dt.datetime(2026, 4, 1, 12, tzinfo=UTC))
    credit(
        bob,
        "10",
        "EUR",
        "c4",
        redeemable_from=dt.datetime(2026, 6, 1, tzinfo=UTC),
        expires_at=dt.datetime(2026, 7, 1, 12, tzinfo=UTC),
    )
    credit(bob, "40", "EUR", "c5")
    ledger_debit(
        contact=bob, unit="EUR", amount=Decimal("40"), reason="order", key="d2"
    )  # all of c5


EXPECTED = [
    # month, points, value EUR, value USD, credit EUR, credit USD
    ["2026-04", "1400", "14.00", "28.00", "0.00", "7.50"],
    ["2026-05", "50", "0.50", "1.00", "20.00", "0.00"],
    ["2026-07", "0", "0.00", "0.00", "10.00", "0.00"],
    ["no expiry", "300", "3.00", "6.00", "5.00", "0.00"],
    ["total", "1750", "17.50", "35.00", "35.00", "7.50"],
]


def test_the_liability_report_by_expiry_month(
    staff_client, liabilities, django_assert_max_num_queries
):
    with django_assert_max_num_queries(4):  # session, user, one aggregate, the earn rules
        response = staff_client.get(f"{LEDGER}liability/")
    report = response.context["report"]
    assert report["headers"] == [
        "Points",
        "Points value (EUR)",
        "Points value (USD)",
        "Store credit (EUR)",
        "Store credit (USD)",
    ]
    table = [[row["label"], *row["cells"]] for row in report["rows"]]
    assert [*table, ["total", *report["total_cells"]]] == [
        [row[0], *(f"{Decimal(v):,}" for v in row[1:])] for row in EXPECTED
    ]
    summary = {s["unit"]: s for s in report["summary"]}
    assert summary["EUR"]["pending"] == "10.00" and summary["EUR"]["grants"] == 3
    assert summary[POINTS]["values"] == ["17.50 EUR", "35.00 USD"]
    html = response.content.decode()
    assert html.count('<svg role="img"') == 3  # points, EUR and USD credit
    assert "2026-04: 1,400</title>" in html
    assert f"{LEDGER}liability.csv" in html


def test_the_liability_csv_has_the_same_figures(staff_client, liabilities):
    response = staff_client.get(f"{LEDGER}liability.csv")
    assert response["Content-Type"] == "text/csv"
    assert "loyalty-liability-2026-03-10.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "expiry_month",
        "points",
        "points_value_EUR",
        "points_value_USD",
        "store_credit_EUR",
        "store_credit_USD",
    ]
    assert rows[1:] == EXPECTED


def test_an_empty_liability_report(staff_client):
    html = staff_client.get(f"{LEDGER}liability/").content.decode()
    assert "Nothing is outstanding" in html


# ------------------------------------------------------------------------------------------
# Referrals, tiers, coupons
# ------------------------------------------------------------------------------------------
def test_the_referral_summary_counts_by_status_and_refusals_by_reason(staff_client):
    ada = person("ada@example.com")
    code = ReferralCode.objects.create(contact=ada, code="ADA23456", created_at=T0)
    last_year = T0 - 200 * DAY
    for i, (status, at) in enumerate(
        [
            ("rewarded", T0),
            ("rewarded", last_year),
            ("pending", T0 - 2 * DAY),
            ("refused", last_year),
            ("signed_up", T0),
        ]
    ):
        friend = person(f"friend{i}@example.com")
        Referral.objects.create(
            referrer=ada, friend=friend, code=code, status=status, created_at=at
        )
    for reason, at in [
        ("self-referral: the same email address", T0),
        ("self-referral: the same email address", last_year),
        ("the referrer's monthly cap (10) is reached", T0 - DAY),
    ]:
        ReferralRefusal.objects.create(code=code, email="x@example.com", reason=reason, at=at)

    response = staff_client.get("/admin/loyalty/referral/")

    summary = response.context["summary"]
    counts = {s["status"]: (s["this_month"], s["total"]) for s in summary["statuses"]}
    assert counts == {
        "signed_up": (1, 1),
        "pending": (1, 1),
        "rewarded": (1, 2),
        "refused": (0, 1),
        "cancelled": (0, 0),
    }
    assert (summary["this_month"], summary["total"]) == (3, 5)
    assert [(r["reason"], r["this_month"], r["total"]) for r in summary["refusals"]] == [
        ("self-referral: the same email address", 1, 2),
        ("the referrer's monthly cap (10) is reached", 1, 1),
    ]
    html = response.content.decode()
    assert 'data-kp="rewarded-total">2<' in html
    assert html.count("friend") >= 5  # and the list below it


def test_refusals_are_searched_by_reason(staff_client):
    ada = person("ada@example.com")
    code = ReferralCode.objects.create(contact=ada, code="ADA23456", created_at=T0)
    ReferralRefusal.objects.create(code=code, email="a@x.com", reason="self-referral", at=T0)
    ReferralRefusal.objects.create(code=code, email="b@x.com", reason="monthly cap", at=T0)
    response = staff_client.get("/admin/loyalty/referralrefusal/", {"q": "cap"})
    assert [r.email for r in response.context["cl"].result_list] == ["b@x.com"]
    assert "ada@example.com" in response.content.decode()  # the code's owner


def test_the_tier_chart_counts_contacts_per_tier(staff_client):
    insider = Tier.objects.create(name="Insider", rank=1, threshold=Decimal("0"))
    vib = Tier.objects.create(name="VIB", rank=2, threshold=Decimal("350"))
    Tier.objects.create(name="Rouge", rank=3, threshold=Decimal("1000"))
    for i, tier in enumerate([insider, insider, insider, vib, None]):
        ContactTier.objects.create(
            contact=person(f"t{i}@example.com"), tier=tier, since=T0, updated_at=T0
        )

    response = staff_client.get("/admin/loyalty/tier/")

    assert response.context["distribution"] == [
        ("No tier", 1),
        ("Insider", 3),
        ("VIB", 1),
        ("Rouge", 0),
    ]
    html = response.content.decode()
    assert '<svg role="img" aria-label="Contacts per tier"' in html
    assert "Insider: 3</title>" in html and "Rouge: 0</title>" in html


def test_generating_coupons_makes_n_unique_codes(staff_client):
    response = staff_client.post(
        "/admin/loyalty/coupon/generate/",
        {
            "count": 25,
            "prefix": "spring",
            "kind": "percent",
            "value": "15",
            "max_uses": 1,
            "expires_at": "2026-04-30T23:59",
            "release_on_refund": "on",
        },
    )
    assert response.status_code == 302
    coupons = list(Coupon.objects.all())
    codes = {c.code for c in coupons}
    assert len(coupons) == len(codes) == 25
    assert all(code.startswith("SPRING-") for code in codes)
    assert {(c.kind, c.value, c.max_uses, c.source_type) for c in coupons} == {
        ("percent", Decimal("15"), 1, "admin")
    }
    batch = staff_client.get(response["Location"])
    assert len(batch.context["cl"].result_list) == 25
    assert "25 coupons generated" in batch.content.decode()


def test_coupon_generation_shows_the_service_refusal_and_makes_none(staff_client):
    response = staff_client.post(
        "/admin/loyalty/coupon/generate/",
        {"count": 3, "kind": "percent", "value": "150", "max_uses": 1},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["value"] == [
        "A percent discount is more than 0 and at most 100."
    ]
    assert not Coupon.objects.exists()


def test_coupons_are_made_by_generation_and_can_be_exported(staff_client):
    assert staff_client.get("/admin/loyalty/coupon/add/").status_code == 403
    coupon = coupon_create(kind="fixed", value=10, currency="EUR")
    listed = staff_client.get("/admin/loyalty/coupon/")
    assert "/admin/loyalty/coupon/generate/" in listed.content.decode()
    assert "0 / 1" in listed.content.decode()
    exported = staff_client.post(
        "/admin/loyalty/coupon/",
        {"action": "download_csv", "_selected_action": [coupon.pk]},
    )
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[1][:4] == [coupon.code, "fixed", "10", "EUR"]  # it read 1E+1


def test_the_contact_page_links_to_the_ledger_and_to_an_adjustment(staff_client, django_user_model):
    contact = ContactFactory(email="page@example.com")
    page = staff_client.get(f"/admin/crm/contact/{contact.pk}/change/").content.decode()
    assert f'href="/admin/loyalty/ledgerentry/{contact.pk}/ledger/"' in page
    assert f'href="/admin/loyalty/ledgerentry/adjust/?contact={contact.pk}"' in page

    # staff who may only look at contacts and the ledger get no adjustment button
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_contact", "view_ledgerentry"])
    )
    client = Client()
    client.force_login(viewer)
    page = client.get(f"/admin/crm/contact/{contact.pk}/change/").content.decode()
    assert "Loyalty ledger" in page and "Adjust points / credit" not in page
