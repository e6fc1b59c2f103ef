"""Issue 16's acceptance, in headless Chromium: a staff user with the marketer role builds,
from an empty database plus the demo catalog and without typing JSON, a welcome series
with a survey, a topic-gated newsletter, an abandoned-cart escalation with a random split
and a coupon grant, and a shop-cash programme with earn and redeem windows and a reminder
that shows the amount and the date. Each is built by clicking and typing into the admin's
form fields (templates' HTML typed into the template page), published, and run: the test
plays the customers (services) and moves time (time_machine), the engine does the rest.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from playwright.sync_api import expect

from campaigns.models import (
    Broadcast,
    BroadcastRecipient,
    Campaign,
    EmailTemplate,
    Enrollment,
    Survey,
    SurveyAnswer,
)
from campaigns.services.broadcasts import broadcasts_tick
from campaigns.services.triggers import date_triggers_run
from crm.models import Product, Segment, Topic
from crm.services.consent import consent_record
from crm.services.demo import _demo_products
from crm.services.products import products_upsert
from loyalty.models import Coupon, LedgerEntry
from tests.campaigns.conftest import run, shopper, track  # noqa: F401 - `run` is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Everything happens from tomorrow 09:00 UTC on (the pages are built on the real clock
# just before): nothing the marketer sets is in the past, nothing lands in quiet hours.
_NOW = datetime.now(UTC)
T0 = (_NOW + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)


@pytest.fixture
def mia(marketer_page):
    """The demo catalog, and a marketer signed in to the admin (tests/conftest.py)."""
    # an empty database: no template, survey, topic, segment or campaign to start from
    for model in (EmailTemplate, Survey, Topic, Segment, Campaign, Broadcast):
        assert not model.objects.exists(), model
    products_upsert(_demo_products(random.Random(42)))  # what `manage.py demo` loads first
    assert Product.objects.count() == 17
    return marketer_page


def go(page, path: str) -> None:
    page.goto(f"{page.base}{path}")


def saved(page) -> None:
    expect(page.locator(".messagelist .success").first).to_be_visible()


def template_add(page, name: str, subject: str, html: str, topic: str = "") -> None:
    """The template's add page: its name, subject and body typed in (HTML, not JSON)."""
    go(page, "/admin/campaigns/emailtemplate/add/")
    page.fill("#id_name", name)
    page.fill("#id_subject", subject)
    page.fill("#id_html_body", html)
    if topic:
        page.get_by_label("Topic").select_option(label=topic)
    page.click("input[name=_save]")
    saved(page)


def campaign_start(page, name: str, kind: str):
    """The campaign's add page, its name and trigger kind chosen in the form."""
    go(page, "/admin/campaigns/campaign/add/")
    page.fill("#id_name", name)
    trigger = page.locator('[data-kind-form][data-name="trigger"]')
    trigger.get_by_label("Kind").select_option(label=kind)
    return trigger


def add_step(page, after: str, kind: str) -> None:
    """Click the + on a branch (its label names it), then the kind in the palette."""
    page.get_by_role("button", name=after).click()
    page.locator(f'.kpj-palette .kpj-choice[data-kind="{kind}"]').click()


def first_step(page, kind: str) -> None:
    page.get_by_role("button", name="Add the first step").click()
    page.locator(f'.kpj-palette .kpj-choice[data-kind="{kind}"]').click()


def field(page, name: str):
    return page.locator(f'.kpj-panel [data-field="{name}"]')


def save_and_publish(page, name: str) -> Campaign:
    expect(page.locator("#kp-journey")).to_have_attribute("data-state", "valid")
    # the JSON behind the forms and the builder stayed folded: nothing was typed there
    expect(page.locator("#id_steps")).to_be_hidden()
    expect(page.locator('[data-kind-form][data-name="trigger"] textarea')).to_be_hidden()
    page.click("input[name=_save]")
    saved(page)
    campaign = Campaign.objects.get(name=name)
    go(page, "/admin/campaigns/campaign/")
    page.locator(f'input[name=_selected_action][value="{campaign.pk}"]').check()
    page.select_option("select[name=action]", "publish")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("version 1 is live")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE
    return campaign


def html_of(message) -> str:
    return next(body for body, kind in message.alternatives if kind == "text/html")


def to(email: str) -> list:
    return [m for m in mail.outbox if m.to == [email]]


def test_a_welcome_series_with_a_survey(mia, run, settings):  # noqa: F811
    page = mia
    settings.KEEPERS_PUBLIC_URL = page.base  # the survey links open in this live server
    go(page, "/admin/campaigns/survey/add/")
    page.fill("#id_name", "NPS")
    page.select_option("#id_kind", "nps")
    page.fill("#id_question", "How likely are you to recommend us to a friend?")
    page.fill("#id_thanks", "Thank you!")
    page.click("input[name=_save]")
    saved(page)
    template_add(page, "welcome", "Welcome, {{ first_name }}", "<h1>Welcome!</h1>")
    template_add(
        page,
        "how are we doing",
        "One quick question",
        '<p>How are we doing?</p>{% load keepers %}{% survey_row "NPS" %}',
    )

    campaign_start(page, "Welcome series", "Subscribes to email")
    first_step(page, "send_email")
    field(page, "template").locator("select").select_option("welcome")
    add_step(page, "Add a step on “Then” after send_email-1", "wait")
    field(page, "duration").locator("input").fill("2")
    field(page, "duration").locator("select").select_option("days")
    add_step(page, "Add a step on “Then” after wait-1", "send_email")
    field(page, "template").locator("select").select_option("how are we doing")
    campaign = save_and_publish(page, "Welcome series")
    assert campaign.trigger == {"type": "subscribed"}

    with time_machine.travel(T0, tick=False) as clock:
        run()
        shopper("new@example.com", first_name="Noa")  # the customer subscribes
        clock.shift(timedelta(minutes=1))
        run()
        assert [m.subject for m in to("new@example.com")] == ["Welcome, Noa"]
        clock.shift(timedelta(days=2, minutes=1))
        run()
    assert [m.subject for m in to("new@example.com")] == ["Welcome, Noa", "One quick question"]
    assert Enrollment.objects.get().status == Enrollment.Status.COMPLETED
    links = re.findall(r'href="([^"]+/s/[^"]+/)"', html_of(to("new@example.com")[1]))
    assert len(links) == 11  # 0 to 10

    page.goto(links[9])  # the customer clicks 9 in the email
    expect(page.get_by_role("status")).to_contain_text("9 out of 10")
    answer = SurveyAnswer.objects.get()
    assert (answer.survey, answer.score, answer.category) == (
        Survey.objects.get(name="NPS"),
        9,
        "promoter",
    )


def test_a_topic_gated_newsletter(mia, django_capture_on_commit_callbacks):
    page = mia
    go(page, "/admin/crm/topic/add/")
    page.fill("#id_slug", "new-beans")
    page.get_by_label("Default opt in").uncheck()
    page.fill("#id_name", "New beans")
    page.click("input[name=_save]")
    saved(page)
    template_add(page, "beans", "This month's beans", "<p>Fresh roasts</p>", topic="New beans")
    keen, quiet = shopper("keen@example.com"), shopper("quiet@example.com")
    consent_record(contact=keen, status="granted", topic="new-beans", source="preferences")

    go(page, "/admin/crm/segment/add/")  # everyone subscribed to email
    page.fill("#id_name", "Subscribers")
    page.locator(".rb-condition").first.get_by_label("Condition", exact=True).select_option(
        "consent"
    )
    page.click("input[name=_save]")
    saved(page)

    go(page, "/admin/campaigns/broadcast/add/")
    page.fill("#id_name", "Beans of the month")
    page.select_option("#id_template", label="beans")
    page.select_option("#id_segment", label="Subscribers")
    page.click("input[name=_continue]")
    saved(page)
    page.get_by_role("link", name="Schedule…").click()
    page.get_by_role("button", name="Confirm and schedule").click()
    expect(page.locator(".messagelist")).to_contain_text("Scheduled")
    broadcast = Broadcast.objects.get()
    assert (broadcast.segment.name, broadcast.status) == ("Subscribers", "scheduled")

    starts = datetime.combine(broadcast.send_date, broadcast.send_time, tzinfo=UTC)
    with time_machine.travel(starts + timedelta(minutes=1), tick=False) as clock:
        for _ in range(3):
            with django_capture_on_commit_callbacks(execute=True):
                broadcasts_tick()
            clock.shift(timedelta(minutes=1))
    assert [m.subject for m in to(keen.email)] == ["This month's beans"]
    assert to(quiet.email) == []
    assert BroadcastRecipient.objects.get(contact=quiet).reason == (
        "not subscribed to the opt-in topic 'new-beans'"
    )
    broadcast.refresh_from_db()
    assert broadcast.status == "sent"


def test_an_abandoned_cart_escalation_with_a_random_split_and_a_coupon(mia, run):  # noqa: F811
    page = mia
    template_add(page, "cart reminder", "You left something behind", "<p>Your cart</p>")
    template_add(
        page,
        "cart coupon",
        "15% off your cart: {{ results.coupon }}",
        "<p>{{ results.coupon }}</p>",
    )
    template_add(page, "cart last call", "Your cart is about to expire", "<p>Last call</p>")

    trigger = campaign_start(page, "Abandoned cart escalation", "An event happens")
    trigger.get_by_label("Event", exact=True).fill("Checkout Started")
    goals = page.locator('[data-kind-form][data-name="goals"]')
    goals.get_by_role("button", name="Add a goal").click()
    goals.get_by_label("Event", exact=True).fill("Order Completed")
    goals.get_by_label("Same as the trigger's").fill("cart_id")
    first_step(page, "wait")  # 1 hour by default
    add_step(page, "Add a step on “Then” after wait-1", "send_email")
    field(page, "template").locator("select").select_option("cart reminder")
    add_step(page, "Add a step on “Then” after send_email-1", "wait")
    field(page, "duration").locator("input").fill("1")
    field(page, "duration").locator("select").select_option("days")
    add_step(page, "Add a step on “Then” after wait-2", "random_split")
    expect(field(page, "paths").locator("fieldset")).to_have_count(2)  # A and B, 50/50
    add_step(page, "Add a step on “A” after random_split-1", "grant")
    expect(field(page, "reward").locator("select")).to_have_value("coupon")
    expect(field(page, "coupon_type").locator("select")).to_have_value("percent")
    field(page, "value").locator("input").fill("15")
    field(page, "expires_in_days").locator("input").fill("7")
    field(page, "prefix").locator("input").fill("CART")
    add_step(page, "Add a step on “Then” after grant-1", "send_email")
    field(page, "template").locator("select").select_option("cart coupon")
    add_step(page, "Add a step on “B” after random_split-1", "send_email")
    field(page, "template").locator("select").select_option("cart last call")
    save_and_publish(page, "Abandoned cart escalation")

    emails = [f"cart{n}@example.com" for n in range(24)]  # both paths, but for 1 in 8 million
    with time_machine.travel(T0, tick=False) as clock:
        for n, email in enumerate(emails):
            shopper(email)
            track(email, "Checkout Started", T0, f"co-{n}", cart_id=f"c-{n}")
        clock.shift(timedelta(minutes=2))
        run()
        clock.shift(timedelta(hours=1))
        run()  # the reminders
        clock.shift(timedelta(days=1, minutes=1))
        run()  # the split: a coupon, or the last call
    paths = {"A": [], "B": []}
    for email in emails:
        subjects = [m.subject for m in to(email)]
        assert subjects[0] == "You left something behind"
        assert len(subjects) == 2, subjects
        coupon = Coupon.objects.filter(contact__email=email).first()
        if subjects[1] == "Your cart is about to expire":
            assert coupon is None
            paths["B"].append(email)
        else:
            assert subjects[1] == f"15% off your cart: {coupon.code}"
            assert coupon.code.startswith("CART")
            assert coupon.value == Decimal("15")
            assert coupon.expires_at == T0 + timedelta(days=8, hours=1, minutes=3)
            paths["A"].append(email)
    assert paths["A"] and paths["B"], paths


def test_a_shop_cash_programme_with_earn_and_redeem_windows_and_a_reminder(
    mia,
    run,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    page = mia
    redeem_from, expires = T0 + timedelta(days=10), T0 + timedelta(days=40)
    template_add(
        page,
        "shop cash earned",
        "You earned {{ results.credit_amount }} {{ results.credit_currency }} of shop cash",
        "<p>Spend it from {{ results.credit_redeemable_from }}</p>",
    )
    # the loyalty reminder's email, as the "balance-expiring" playbook template reads
    template_add(
        page,
        "balance-expiring",
        "Your credit expires {{ expiring.expires_at|date:'j M' }}",
        "<p><strong>{{ expiring.amount }} {{ expiring.unit }} of your store credit expires"
        "</strong> on <strong>{{ expiring.expires_at|date:'j F Y' }}</strong>.</p>",
    )

    # earn: orders placed while the programme runs (three days)
    trigger = campaign_start(page, "Shop cash", "An event happens")
    trigger.get_by_label("Event", exact=True).fill("Order Completed")
    page.fill("#id_starts_at_0", f"{T0:%Y-%m-%d}")
    page.fill("#id_starts_at_1", "00:00:00")
    page.fill("#id_ends_at_0", f"{T0 + timedelta(days=3):%Y-%m-%d}")
    page.fill("#id_ends_at_1", "00:00:00")
    page.select_option("#id_reentry", "always")
    first_step(page, "grant")
    field(page, "reward").locator("select").select_option("credit")
    field(page, "amount").locator("input").fill("12.5")
    field(page, "currency").locator("input").fill("USD")
    # redeem: from the 10th day to the 40th
    field(page, "redeemable_from").locator("input").fill(f"{redeem_from:%Y-%m-%dT%H:%M}")
    field(page, "expires_at").locator("input").fill(f"{expires:%Y-%m-%dT%H:%M}")
    field(page, "reason").locator("input").fill("Shop cash")
    add_step(page, "Add a step on “Then” after grant-1", "send_email")
    field(page, "template").locator("select").select_option("shop cash earned")
    shop_cash = save_and_publish(page, "Shop cash")
    config = shop_cash.steps[0]["config"]
    # the coupon's defaults went with the coupon once "Store credit" was chosen
    assert (
        {k: config.get(k) for k in REDEEM_KEYS}
        == config
        == {
            "reward": "credit",
            "amount": 12.5,
            "currency": "USD",
            "redeemable_from": f"{redeem_from:%Y-%m-%dT%H:%M}",
            "expires_at": f"{expires:%Y-%m-%dT%H:%M}",
            "reason": "Shop cash",
        }
    )

    trigger = campaign_start(page, "Store credit reminder", "Store credit about to expire")
    expect(trigger.get_by_label("Days before it expires")).to_have_value("7")
    first_step(page, "send_email")
    field(page, "template").locator("select").select_option("balance-expiring")
    save_and_publish(page, "Store credit reminder")

    with time_machine.travel(T0 + timedelta(hours=1), tick=False) as clock:
        run()
        shopper("cash@example.com")
        shopper("late@example.com")
        track("cash@example.com", "Order Completed", clock_now(), "o-1", order_id="o-1")
        clock.shift(timedelta(minutes=1))
        run()
        clock.shift(timedelta(days=4))  # after the earn window
        track("late@example.com", "Order Completed", clock_now(), "o-2", order_id="o-2")
        clock.shift(timedelta(minutes=1))
        run()
        grant = LedgerEntry.objects.get(contact__email="cash@example.com")
        assert (grant.amount, grant.unit, grant.reason) == (Decimal("12.5"), "USD", "Shop cash")
        assert (grant.redeemable_from, grant.expires_at) == (redeem_from, expires)
        assert not LedgerEntry.objects.spendable(clock_now()).exists()  # not yet
        assert LedgerEntry.objects.spendable(redeem_from + timedelta(minutes=1)).exists()
        assert not LedgerEntry.objects.filter(contact__email="late@example.com").exists()
        clock.move_to(expires - timedelta(days=6, hours=23))  # a week before it expires
        with django_capture_on_commit_callbacks(execute=True):
            date_triggers_run()  # beat's hourly pass: the expiring balances
        run()
    assert [m.subject for m in to("late@example.com")] == []
    earned, reminder = to("cash@example.com")
    assert earned.subject == "You earned 12.50 USD of shop cash"
    assert reminder.subject == f"Your credit expires {expires.day} {expires:%b}"
    assert (
        f"12.50 USD of your store credit expires</strong> on <strong>"
        f"{expires.day} {expires:%B %Y}</strong>" in html_of(reminder)
    )


REDEEM_KEYS = ("reward", "amount", "currency", "redeemable_from", "expires_at", "reason")


def clock_now() -> datetime:
    return datetime.now(UTC)
