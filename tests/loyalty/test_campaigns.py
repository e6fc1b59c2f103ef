"""Loyalty in campaigns: the grant step (its result in later emails, once per visit),
the expiring-credit and tier-changed triggers, and the abandoned-cart playbook's coupon."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from campaigns.models import Campaign, EmailTemplate, Enrollment
from campaigns.playbooks import playbooks_install
from campaigns.services.definitions import campaign_publish
from campaigns.services.triggers import date_triggers_run
from crm.errors import KeepersError
from loyalty.models import Coupon, LedgerEntry, Tier, TierChange
from loyalty.services.credit import credit_grant
from loyalty.services.ledger import ledger_grant
from loyalty.services.tiers import tiers_recompute
from tests.campaigns.conftest import T0, sent_to, shopper, track

pytestmark = pytest.mark.django_db


def campaign(name, trigger, steps, **extra):
    made = Campaign.objects.create(
        name=name, trigger=trigger, steps=steps, reentry="always", **extra
    )
    campaign_publish(campaign=made)
    return made


def test_a_grant_step_issues_a_coupon_once_and_the_next_email_shows_it(run):
    EmailTemplate.objects.create(
        name="gift",
        subject="A gift",
        html_body="<p>Code {{ results.coupon }} until {{ results.coupon_expires_at|slice:':10' }}; "
        "{{ results.credit_amount }} {{ results.credit_currency }} credit</p>",
    )
    campaign(
        "Gift",
        {"type": "event", "name": "Signed Up"},
        [
            {
                "id": "coupon",
                "type": "grant",
                "config": {
                    "reward": "coupon",
                    "coupon_type": "percent",
                    "value": 15,
                    "expires_in_days": 7,
                },
                "next": "credit",
            },
            {
                "id": "credit",
                "type": "grant",
                "config": {
                    "reward": "credit",
                    "amount": "5",
                    "currency": "EUR",
                    "expires_in_days": 14,
                },
                "next": "mail",
            },
            {"id": "mail", "type": "send_email", "config": {"template": "gift"}},
        ],
    )
    with time_machine.travel(T0, tick=False) as clock:
        ada = shopper("ada@example.com")
        track(ada.email, "Signed Up", T0, "s1")
        clock.shift(timedelta(seconds=10))
        run()
        run()

    coupon = Coupon.objects.get()
    assert coupon.contact == ada and coupon.value == 15 and coupon.source_type == "campaign"
    body = mail.outbox[0].alternatives[0][0]
    assert f"Code {coupon.code} until 2026-03-09" in body and "5.00 EUR credit" in body
    assert LedgerEntry.objects.get(unit="EUR").expires_at == T0 + timedelta(days=14, seconds=10)


def test_bad_grant_steps_are_refused_with_the_path():
    for config, path in [
        ({"reward": "cash"}, "steps[0].config.reward"),
        ({"reward": "points", "points": 0}, "steps[0].config.points"),
        ({"reward": "credit", "amount": "5", "currency": "euro"}, "steps[0].config.currency"),
        ({"reward": "coupon", "coupon_type": "fixed", "value": 5}, "steps[0].config.currency"),
    ]:
        made = Campaign.objects.create(
            name=f"bad {path} {config}",
            trigger={"type": "manual"},
            steps=[{"id": "g", "type": "grant", "config": config}],
        )
        with pytest.raises(KeepersError) as error:
            campaign_publish(campaign=made)
        assert error.value.field == path


def test_a_grant_step_gives_shop_cash_with_a_redeem_window_and_a_fixed_expiry(run):
    EmailTemplate.objects.create(
        name="cash",
        subject="Shop cash",
        html_body="<p>{{ results.credit_amount }} {{ results.credit_currency }} from "
        "{{ results.credit_redeemable_from|slice:':10' }} to "
        "{{ results.credit_expires_at|slice:':10' }}</p>",
    )
    opens, closes = T0 + timedelta(days=20), T0 + timedelta(days=35)
    with time_machine.travel(T0, tick=False) as clock:
        campaign(
            "Shop cash",
            {"type": "event", "name": "Signed Up"},
            [
                {
                    "id": "cash",
                    "type": "grant",
                    "config": {
                        "reward": "credit",
                        "amount": "10",
                        "currency": "EUR",
                        "redeemable_from": opens.isoformat(),
                        "expires_at": closes.isoformat(),
                    },
                    "next": "mail",
                },
                {"id": "mail", "type": "send_email", "config": {"template": "cash"}},
            ],
        )
        ada = shopper("ada@example.com")
        track(ada.email, "Signed Up", T0, "s1")
        clock.shift(timedelta(seconds=10))
        run()
        run()

    entry = LedgerEntry.objects.get(unit="EUR")
    assert (entry.redeemable_from, entry.expires_at) == (opens, closes)
    assert "10.00 EUR from 2026-03-22 to 2026-04-06" in mail.outbox[0].alternatives[0][0]


def test_a_grant_dates_typed_without_an_offset_are_the_shops(settings):
    """The journey builder's date fields send "2026-05-01T00:00" (a datetime-local): that
    is midnight in the shop, not in UTC."""
    from loyalty.steps import _window

    settings.KEEPERS_SHOP_TIME_ZONE = "Asia/Tokyo"
    expires, opens = _window(
        {"expires_at": "2026-05-01T00:00", "redeemable_from": "2026-04-01T09:00+00:00"},
        T0,
    )
    assert expires.isoformat() == "2026-04-30T15:00:00+00:00"
    assert opens.isoformat() == "2026-04-01T09:00:00+00:00"  # an offset given is kept


def test_a_grant_step_window_is_checked_as_the_api_checks_it():
    past, soon, later = T0 - timedelta(days=1), T0 + timedelta(days=5), T0 + timedelta(days=9)
    credit = {"reward": "credit", "amount": "5", "currency": "EUR"}
    with time_machine.travel(T0, tick=False):
        for config, path, message in [
            (
                {**credit, "expires_in_days": 7, "expires_at": later.isoformat()},
                "steps[0].config.expires_in_days",
                "Give expires_at or expires_in_days, not both.",
            ),
            (
                {**credit, "expires_at": soon.isoformat(), "redeemable_from": later.isoformat()},
                "steps[0].config.expires_at",
                "It must expire after it becomes redeemable.",
            ),
            (
                {**credit, "expires_at": past.isoformat()},
                "steps[0].config.expires_at",
                "The expiry is already past.",
            ),
            (
                {**credit, "redeemable_from": "next week"},
                "steps[0].config.redeemable_from",
                None,
            ),
        ]:
            made = Campaign.objects.create(
                name=f"window {path} {config}",
                trigger={"type": "manual"},
                steps=[{"id": "g", "type": "grant", "config": config}],
            )
            with pytest.raises(KeepersError) as error:
                campaign_publish(campaign=made)
            assert error.value.field == path
            assert message is None or error.value.message.endswith(message)


def test_a_coupon_grant_step_opens_on_redeemable_from(run):
    campaign(
        "Later coupon",
        {"type": "event", "name": "Signed Up"},
        [
            {
                "id": "coupon",
                "type": "grant",
                "config": {
                    "reward": "coupon",
                    "coupon_type": "percent",
                    "value": 10,
                    "redeemable_from": (T0 + timedelta(days=3)).isoformat(),
                    "expires_in_days": 10,
                },
            }
        ],
    )
    with time_machine.travel(T0, tick=False) as clock:
        ada = shopper("ada@example.com")
        track(ada.email, "Signed Up", T0, "s1")
        clock.shift(timedelta(seconds=10))
        run()
    coupon = Coupon.objects.get()
    assert coupon.starts_at == T0 + timedelta(days=3)
    assert coupon.expires_at == T0 + timedelta(days=10, seconds=10)


def test_the_earn_window_grants_only_within_it_and_lets_the_contact_go_on(run):
    campaign(
        "November cash",
        {"type": "event", "name": "Signed Up"},
        [
            {
                "id": "cash",
                "type": "grant",
                "config": {
                    "reward": "credit",
                    "amount": "10",
                    "currency": "EUR",
                    # naive: the shop's zone (UTC in tests)
                    "earn_from": (T0 + timedelta(days=1)).replace(tzinfo=None).isoformat(),
                    "earn_until": (T0 + timedelta(days=2)).isoformat(),
                },
                "next": "tag",
            },
            {"id": "tag", "type": "update_contact", "config": {"add_tags": ["passed"]}},
        ],
    )
    with time_machine.travel(T0, tick=False) as clock:
        for n, at in enumerate((T0, T0 + timedelta(days=1, hours=1), T0 + timedelta(days=2))):
            clock.move_to(at)
            contact = shopper(f"p{n}@example.com")
            track(contact.email, "Signed Up", at, f"s{n}")
            clock.shift(timedelta(seconds=10))
            run()
            run()

    granted = LedgerEntry.objects.filter(unit="EUR").values_list("contact__email", flat=True)
    assert list(granted) == ["p1@example.com"]
    runs = Enrollment.objects.order_by("contact__email")
    assert [e.status for e in runs] == ["completed"] * 3
    decisions = [e.runs.get(step_id="cash").decision for e in runs]
    assert decisions[0] == decisions[2] == "not granted: outside the earn window"


def test_an_earn_window_that_closes_before_it_opens_is_refused():
    made = Campaign.objects.create(
        name="Bad window",
        trigger={"type": "event", "name": "Signed Up"},
        steps=[
            {
                "id": "cash",
                "type": "grant",
                "config": {
                    "reward": "points",
                    "points": 5,
                    "earn_from": "2026-11-02T00:00:00",
                    "earn_until": "2026-11-01T00:00:00",
                },
            }
        ],
    )
    with pytest.raises(KeepersError) as error:
        campaign_publish(campaign=made)
    assert error.value.field == "steps[0].config.earn_until"


def test_credit_expiring_in_seven_days_enrolls_each_grant_once(
    run, django_capture_on_commit_callbacks
):
    EmailTemplate.objects.create(
        name="expiring", subject="Your credit expires soon", html_body="<p>Use it</p>"
    )
    campaign(
        "Credit reminder",
        {"type": "credit_expiring", "days": 7},
        [{"id": "mail", "type": "send_email", "config": {"template": "expiring"}}],
    )
    with time_machine.travel(T0, tick=False) as clock:
        ada = shopper("ada@example.com")
        credit_grant(
            contact=ada,
            amount=Decimal("35"),
            currency="EUR",
            reason="Welcome",
            key="w",
            expires_at=T0 + timedelta(days=14),
        )
        date_triggers_run()
        assert Enrollment.objects.count() == 0
        clock.shift(timedelta(days=7, hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            date_triggers_run()
            date_triggers_run()
        assert Enrollment.objects.count() == 1
    assert sent_to("ada@example.com") == ["Your credit expires soon"]


def test_the_starter_reminders_show_the_amount_the_unit_and_the_date(
    run, django_capture_on_commit_callbacks
):
    playbooks_install()
    with time_machine.travel(T0, tick=False) as clock:
        ada, bo = shopper("ada@example.com"), shopper("bo@example.com")
        for amount, key in ((Decimal("35"), "w"), (Decimal("4.5"), "later")):
            credit_grant(
                contact=ada,
                amount=amount,
                currency="EUR",
                reason="Welcome",
                key=key,
                expires_at=T0 + timedelta(days=14 if key == "w" else 60),
            )
        ledger_grant(
            contact=bo,
            unit="points",
            amount=300,
            reason="Order",
            key="o",
            expires_at=T0 + timedelta(days=20),
        )
        clock.shift(timedelta(days=7, hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            date_triggers_run()
        run()

    by_address = {m.to[0]: m for m in mail.outbox if "expire" in m.subject}
    credit, points = by_address["ada@example.com"], by_address["bo@example.com"]
    assert credit.subject == "Your credit expires 16 Mar"
    body = " ".join(credit.alternatives[0][0].split())
    assert "35.00 EUR of your store credit expires</strong> on <strong>16 March 2026" in body
    assert "In all you have 39.50 EUR to spend today." in body
    assert points.subject == "Your points expire 22 Mar"
    assert "300 of your points expire</strong> on <strong>22 March 2026" in " ".join(
        points.alternatives[0][0].split()
    )


def test_a_tier_change_triggers_its_campaign(run):
    from crm.models import Order

    EmailTemplate.objects.create(
        name="welcome-vib", subject="Welcome to VIB", html_body="<p>Hi</p>"
    )
    Tier.objects.create(name="Insider", rank=1, basis="spend", threshold=0)
    Tier.objects.create(name="VIB", rank=2, basis="spend", threshold=350)
    campaign(
        "VIB welcome",
        {"type": "tier_changed", "to": "VIB", "direction": "up"},
        [{"id": "mail", "type": "send_email", "config": {"template": "welcome-vib"}}],
        priority=Campaign.Priority.LIFECYCLE,
    )
    with time_machine.travel(T0, tick=False) as clock:
        ada = shopper("ada@example.com")
        run()  # cursors start now
        Order.objects.create(
            external_id="o1", contact=ada, total=400, currency="USD", ordered_at=T0
        )
        tiers_recompute(contact_ids=[ada.pk])
        assert TierChange.objects.get().to_tier.name == "VIB"
        clock.shift(timedelta(seconds=10))
        run()
    assert "Welcome to VIB" in sent_to("ada@example.com")


def test_the_abandoned_cart_discount_is_a_real_unique_coupon(run):
    playbooks_install()
    with time_machine.travel(T0, tick=False) as clock:
        shopper("ada@example.com")
        track(
            "ada@example.com",
            "Checkout Started",
            T0,
            "co-1",
            cart_id="c1",
            products=[{"product_id": "K", "name": "Kettle", "price": 59}],
        )
        for wait in (
            timedelta(seconds=10),
            timedelta(hours=1, minutes=1),
            timedelta(days=1, minutes=1),
            timedelta(days=2, minutes=1),
        ):
            clock.shift(wait)
            run()
    coupon = Coupon.objects.get(source_type="campaign")
    assert coupon.code.startswith("CART") and coupon.kind == "percent" and coupon.value == 10
    discount = [m for m in mail.outbox if m.subject == "10% off what's in your cart"]
    assert len(discount) == 1 and coupon.code in discount[0].alternatives[0][0]
