"""The engine in-process (eager tasks): triggers, waits, conditions, goals, holdout,
versions, failures — with time moved by time-machine."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from campaigns.models import EmailTemplate, Enrollment, Message, StepRun
from tests.campaigns.conftest import T0, sent_to, shopper, track

pytestmark = pytest.mark.django_db


def test_abandoned_cart_escalates_only_for_those_who_do_not_buy(abandoned_cart, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("buyer@example.com")
        shopper("waiter@example.com")
        shopper("nobuy@example.com")
        for email in ("buyer@example.com", "waiter@example.com", "nobuy@example.com"):
            track(
                email,
                "Checkout Started",
                T0,
                f"co-{email}",
                cart_id=f"cart-{email}",
                products=[{"product_id": "SKU-1", "name": "Kettle", "price": 59}],
            )
        clock.shift(timedelta(seconds=10))
        run()
        assert Enrollment.objects.count() == 3
        assert mail.outbox == []
        clock.shift(timedelta(hours=1, minutes=1))
        run()
        assert len(mail.outbox) == 3
        assert "Kettle" in mail.outbox[0].alternatives[0][0]
        # the buyer buys this cart after the first reminder: the goal ends the sequence
        track(
            "buyer@example.com",
            "Order Completed",
            T0 + timedelta(hours=2),
            "buy-1",
            order_id="o-1",
            cart_id="cart-buyer@example.com",
            total=59,
        )
        # the waiter buys another cart: this cart's sequence goes on
        track(
            "waiter@example.com",
            "Order Completed",
            T0 + timedelta(hours=3),
            "buy-2",
            order_id="o-2",
            cart_id="other-cart",
            total=20,
        )
        clock.shift(timedelta(days=1, hours=1))
        run()
        clock.shift(timedelta(days=2, hours=1))
        run()
    assert sent_to("buyer@example.com") == ["You left something behind, Sam"]
    assert sent_to("waiter@example.com") == [
        "You left something behind, Sam",
        "Free shipping on your cart",
        "10% off your cart",
    ]
    assert sent_to("nobuy@example.com") == [
        "You left something behind, Sam",
        "Free shipping on your cart",
        "10% off your cart",
    ]
    statuses = dict(Enrollment.objects.values_list("contact__email", "status"))
    assert statuses == {
        "buyer@example.com": "exited_goal",
        "waiter@example.com": "completed",
        "nobuy@example.com": "completed",
    }
    history = list(
        StepRun.objects.filter(enrollment__contact__email="nobuy@example.com").values_list(
            "step_id", "decision"
        )
    )
    assert [s for s, _ in history] == [
        "wait-1h",
        "reminder",
        "wait-1d",
        "bought-1",
        "free-shipping",
        "wait-2d",
        "bought-2",
        "discount",
    ]


def test_running_the_same_cycle_twice_sends_nothing_twice(abandoned_cart, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("twice@example.com")
        track("twice@example.com", "Checkout Started", T0, "co-1", cart_id="c1")
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=2))
        run()
        run()
        from campaigns.services.engine import enrollments_advance

        enrollments_advance(ids=list(Enrollment.objects.values_list("pk", flat=True)))
    assert len(mail.outbox) == 1
    assert Message.objects.count() == 1


def test_cart_a_keeps_going_after_cart_b_is_bought_and_stops_when_a_is(abandoned_cart, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("two@example.com")
        track("two@example.com", "Checkout Started", T0, "co-a", cart_id="A")
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=1, minutes=5))
        run()  # reminder for A
        track(
            "two@example.com",
            "Order Completed",
            T0 + timedelta(hours=2),
            "buy-b",
            order_id="ob",
            cart_id="B",
        )
        clock.shift(timedelta(days=1, hours=1))
        run()  # still going: free shipping for A
        assert sent_to("two@example.com") == [
            "You left something behind, Sam",
            "Free shipping on your cart",
        ]
        track(
            "two@example.com",
            "Order Completed",
            T0 + timedelta(days=1, hours=3),
            "buy-a",
            order_id="oa",
            cart_id="A",
        )
        clock.shift(timedelta(seconds=10))
        run()  # the goal is reached between two steps
        clock.shift(timedelta(days=3))
        run()
    assert sent_to("two@example.com") == [
        "You left something behind, Sam",
        "Free shipping on your cart",
    ]
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.exit_reason) == ("exited_goal", "goal: Order Completed")


def test_holdout_receives_nothing_and_stats_show_the_lift(templates, run):
    from campaigns.models import Campaign
    from campaigns.selectors import campaign_stats
    from campaigns.services.definitions import campaign_publish

    campaign = Campaign.objects.create(
        name="Welcome",
        trigger={"type": "event", "name": "Signed Up"},
        holdout_percent=10,
        goals=[{"event": "Order Completed"}],
        steps=[
            {
                "id": "hello",
                "type": "send_email",
                "config": {"template": "welcome"},
                "next": "wait",
            },
            {"id": "wait", "type": "wait", "config": {"days": 7}},
        ],
    )
    campaign_publish(campaign=campaign)
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(400):
            shopper(f"w{n}@example.com")
            track(f"w{n}@example.com", "Signed Up", T0, f"su-{n}")
        clock.shift(timedelta(seconds=10))
        run()
        held = Enrollment.objects.filter(holdout=True).count()
        assert 20 <= held <= 60  # about 10% of 400
        assert len(mail.outbox) == 400 - held
        held_emails = set(
            Enrollment.objects.filter(holdout=True).values_list("contact__email", flat=True)
        )
        assert not held_emails & {m.to[0] for m in mail.outbox}
        # a quarter of each group buys
        buyers = [e for e in Enrollment.objects.select_related("contact").order_by("pk")][::4]
        for n, enrollment in enumerate(buyers):
            track(
                enrollment.contact.email,
                "Order Completed",
                T0 + timedelta(days=1),
                f"o-{n}",
                order_id=f"o-{n}",
                total=50,
            )
        clock.shift(timedelta(days=1, minutes=1))
        run()
    stats = campaign_stats(campaign=campaign)
    assert stats["treatment"]["enrolled"] + stats["holdout"]["enrolled"] == 400
    assert stats["treatment"]["conversions"] + stats["holdout"]["conversions"] == len(buyers)
    assert stats["treatment"]["conversion_rate"] > 0 and stats["holdout"]["enrolled"] == held
    assert "lift" in stats


def test_editing_an_active_campaign_does_not_change_running_enrollments(templates, run):
    from campaigns.models import Campaign
    from campaigns.services.definitions import campaign_publish

    campaign = Campaign.objects.create(
        name="Versioned",
        trigger={"type": "event", "name": "Signed Up"},
        steps=[
            {"id": "w", "type": "wait", "config": {"days": 1}, "next": "mail"},
            {"id": "mail", "type": "send_email", "config": {"template": "welcome"}},
        ],
    )
    v1 = campaign_publish(campaign=campaign)
    with time_machine.travel(T0, tick=False) as clock:
        shopper("old@example.com")
        track("old@example.com", "Signed Up", T0, "su-old")
        clock.shift(timedelta(seconds=10))
        run()
        campaign.steps = [
            {"id": "w", "type": "wait", "config": {"days": 1}, "next": "mail"},
            {"id": "mail", "type": "send_email", "config": {"template": "receipt"}},
        ]
        campaign.save()
        v2 = campaign_publish(campaign=campaign)
        shopper("new@example.com")
        track("new@example.com", "Signed Up", T0 + timedelta(seconds=20), "su-new")
        clock.shift(timedelta(seconds=30))
        run()
        clock.shift(timedelta(days=1, minutes=1))
        run()
    assert (v1.number, v2.number) == (1, 2)
    assert dict(Enrollment.objects.values_list("contact__email", "version__number")) == {
        "old@example.com": 1,
        "new@example.com": 2,
    }
    assert sent_to("old@example.com") == ["Welcome!"]
    assert sent_to("new@example.com") == ["Your receipt"]


def test_a_template_that_fails_for_one_contact_fails_only_that_enrollment(templates, run):
    from campaigns.models import Campaign, EmailTemplate
    from campaigns.services.definitions import campaign_publish

    EmailTemplate.objects.create(
        name="fragile",
        subject="Hi {{ first_name }}",
        html_body="{% for x in attributes.items %}{{ x.0|divisibleby:attributes.zero }}{% endfor %}ok",
    )
    campaign = Campaign.objects.create(
        name="Fragile",
        trigger={"type": "event", "name": "Go"},
        steps=[{"id": "mail", "type": "send_email", "config": {"template": "fragile"}}],
    )
    campaign_publish(campaign=campaign)
    with time_machine.travel(T0, tick=False) as clock:
        from crm.services.contacts import contact_update

        good = shopper("good@example.com")
        bad = shopper("bad@example.com")
        contact_update(contact=bad, attributes={"zero": 0, "a": 1})
        del good
        for email in ("good@example.com", "bad@example.com"):
            track(email, "Go", T0, f"go-{email}")
        clock.shift(timedelta(seconds=10))
        run()
    assert sent_to("good@example.com") == ["Hi Sam"]
    failed = Enrollment.objects.get(contact__email="bad@example.com")
    assert failed.status == "failed" and "failed to render" in failed.exit_reason
    assert "failed to render" in StepRun.objects.get(enrollment=failed).error


@pytest.mark.parametrize(
    ("zone", "local_start", "expected_local"),
    [
        ("Europe/Paris", "2026-03-02 11:30", "2026-03-03 10:00"),
        ("Asia/Tokyo", "2026-03-02 08:00", "2026-03-02 10:00"),
        ("America/New_York", "2026-03-02 09:59", "2026-03-02 10:00"),
        # DST: New York springs forward on 2026-03-08; 10:00 EDT is 14:00 UTC, not 15:00
        ("America/New_York", "2026-03-07 12:00", "2026-03-08 10:00"),
        # DST in Europe on 2026-03-29
        ("Europe/Paris", "2026-03-28 23:00", "2026-03-29 10:00"),
    ],
)
def test_wait_until_10_is_10_in_the_contacts_own_zone(
    templates, run, zone, local_start, expected_local
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from campaigns.models import Campaign
    from campaigns.services.definitions import campaign_publish

    campaign = Campaign.objects.create(
        name="At ten",
        trigger={"type": "event", "name": "Go"},
        steps=[
            {"id": "ten", "type": "wait_until", "config": {"time": "10:00"}, "next": "mail"},
            {"id": "mail", "type": "send_email", "config": {"template": "welcome"}},
        ],
    )
    campaign_publish(campaign=campaign)
    start = datetime.fromisoformat(local_start).replace(tzinfo=ZoneInfo(zone))
    expected = datetime.fromisoformat(expected_local).replace(tzinfo=ZoneInfo(zone))
    with time_machine.travel(start, tick=False) as clock:
        shopper("tz@example.com", timezone=zone)
        track("tz@example.com", "Go", start, "go")
        clock.shift(timedelta(seconds=10))
        run()
        enrollment = Enrollment.objects.get()
        assert enrollment.next_run_at == expected
        clock.move_to(expected - timedelta(minutes=1))
        run()
        assert mail.outbox == []
        clock.move_to(expected)
        run()
    assert sent_to("tz@example.com") == ["Welcome!"]
    sent = Message.objects.get()
    assert sent.sent_at.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "10:00"


def test_unsubscribed_contacts_get_transactional_mail_but_never_marketing(templates, run):
    from campaigns.models import Campaign
    from campaigns.services.definitions import campaign_publish
    from crm.services.consent import consent_record

    campaign = Campaign.objects.create(
        name="Both",
        trigger={"type": "event", "name": "Go"},
        steps=[
            {"id": "m", "type": "send_email", "config": {"template": "welcome"}, "next": "t"},
            {"id": "t", "type": "send_email", "config": {"template": "receipt"}},
        ],
    )
    campaign_publish(campaign=campaign)
    with time_machine.travel(T0, tick=False) as clock:
        contact = shopper("out@example.com")
        consent_record(contact=contact, status="withdrawn", source="test")
        track("out@example.com", "Go", T0, "go")
        clock.shift(timedelta(seconds=10))
        run()
    assert sent_to("out@example.com") == ["Your receipt"]
    skipped = Message.objects.get(step_id="m")
    assert (skipped.status, skipped.error) == ("skipped", "no marketing consent")


def test_marketing_mail_carries_one_click_unsubscribe_and_anymail_metadata(abandoned_cart, run):
    with time_machine.travel(T0, tick=False) as clock:
        shopper("meta@example.com")
        track("meta@example.com", "Checkout Started", T0, "co", cart_id="c")
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=1, minutes=2))
        run()
        run()
    email = mail.outbox[0]
    assert email.anymail_test_params["tags"] and email.anymail_test_params["metadata"]
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.extra_headers["List-Unsubscribe"].startswith("<http")
    enrollment = Enrollment.objects.get()
    assert email.metadata["enrollment_id"] == str(enrollment.pk)
    assert email.metadata["step_id"] == "reminder" and email.metadata["version"] == "1"
    assert f"campaign-{enrollment.campaign_id}" in email.tags
    assert email.body.strip() and "Unsubscribe" in email.body
    assert 'style="' in email.alternatives[0][0]  # CSS inlined
    assert Message.objects.get().esp_message_id == "0"  # the test backend id: its outbox index


def test_replies_go_where_the_template_or_the_setting_says(abandoned_cart, run, settings):
    # the first reminder's template names a support mailbox; without one, the shop-wide
    # REPLY_TO_EMAIL applies; with neither, no Reply-To (replies reach the sender)
    EmailTemplate.objects.filter(name="cart-1").update(reply_to="Support <help@shop.example>")
    settings.KEEPERS_REPLY_TO = ""
    with time_machine.travel(T0, tick=False) as clock:
        shopper("reply@example.com")
        track("reply@example.com", "Checkout Started", T0, "co", cart_id="c")
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=1, minutes=2))
        run()
        run()
        assert [m.reply_to for m in mail.outbox] == [["Support <help@shop.example>"]]
        settings.KEEPERS_REPLY_TO = "care@shop.example"
        clock.shift(timedelta(days=1))
        run()
        run()
    assert [m.reply_to for m in mail.outbox][1:] == [["care@shop.example"]]
    assert Message.objects.order_by("pk").first().reply_to == "Support <help@shop.example>"


def test_a_queued_message_keeps_the_reply_to_it_was_rendered_with(templates, settings):
    from campaigns.services.sending import email_build

    settings.KEEPERS_REPLY_TO = ""
    template = templates["welcome"]
    template.reply_to = "help@shop.example"
    template.save()
    message = Message.objects.create(
        contact=shopper("kept@example.com"),
        template=template,
        category=template.category,
        reply_to=template.reply_to,
        idempotency_key="kept",
        to_email="kept@example.com",
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi",
        created_at=T0,
    )
    EmailTemplate.objects.filter(pk=template.pk).update(reply_to="new@shop.example")
    assert email_build(Message.objects.get(pk=message.pk)).reply_to == ["help@shop.example"]


@pytest.mark.parametrize(
    "value, ok",
    [
        ("help@shop.example", True),
        ("Shop support <help@shop.example>", True),
        ("not an address", False),
        ("Support <help@shop.example", False),
        ("help@shop.example\nBcc: all@example.com", False),
        ("help@shop.example, evil@example.com", False),  # a second recipient of replies
        ("help@shop.example <evil@example.com>", False),
    ],
)
def test_a_reply_to_address_is_checked(value, ok):
    from django.core.exceptions import ValidationError

    template = EmailTemplate(name="r", subject="s", html_body="<p>x</p>", reply_to=value)
    if ok:
        template.full_clean()
    else:
        with pytest.raises(ValidationError) as error:
            template.full_clean()
        assert "reply_to" in error.value.message_dict


def test_a_bad_reply_to_setting_is_a_system_check_error(settings):
    from django.core.checks import run_checks

    settings.KEEPERS_REPLY_TO = "help@shop.example, other@example.com"
    assert [e.id for e in run_checks()] == ["campaigns.E001"]
    settings.KEEPERS_REPLY_TO = "Shop support <help@shop.example>"
    assert run_checks() == []
