"""The send policy, with time moved: caps, quiet hours, the contact's frequency, priority
and the promotional maximum delay. Held messages go out at the first allowed moment, once."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from campaigns.models import Campaign, Enrollment, Message
from campaigns.services.definitions import campaign_publish
from crm.services.preferences import Where, preferences_update
from tests.campaigns.conftest import shopper, track

pytestmark = [pytest.mark.django_db, pytest.mark.quiet_hours]
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 13:00 in Paris


def campaign(name, template, **fields):
    made = Campaign.objects.create(
        name=name,
        trigger={"type": "event", "name": name},
        steps=[{"id": "m", "type": "send_email", "config": {"template": template}}],
        reentry="always",
        **fields,
    )
    campaign_publish(campaign=made)
    return made


def fire(email, name, at, n):
    track(email, name, at, f"{name}-{n}")


def test_the_cap_holds_the_third_email_until_a_slot_frees_and_sends_it_once(
    templates, run, settings
):
    settings.KEEPERS_CAP_24H = 2
    campaign("Ping", "welcome")
    with time_machine.travel(NOON, tick=False) as clock:
        shopper("cap@example.com")
        for n in range(3):
            fire("cap@example.com", "Ping", NOON, n)
            clock.shift(timedelta(minutes=10))
            run()
        assert len(mail.outbox) == 2
        held = Enrollment.objects.get(status="active")
        first_sent = Message.objects.order_by("created_at").first().created_at
        assert held.next_run_at == first_sent + timedelta(days=1, microseconds=1)
        assert held.state["deferred"]["reason"] == "frequency cap: 2 a day"
        clock.move_to(held.next_run_at - timedelta(minutes=1))
        run()
        assert len(mail.outbox) == 2
        clock.move_to(held.next_run_at + timedelta(seconds=1))
        run()
        run()
    assert len(mail.outbox) == 3
    assert Message.objects.count() == 3 and not Enrollment.objects.filter(status="active").exists()


def test_quiet_hours_hold_until_eight_in_the_contacts_zone(templates, run):
    campaign("Late", "welcome")
    tokyo_night = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo
    with time_machine.travel(tokyo_night, tick=False) as clock:
        shopper("tokyo@example.com", timezone="Asia/Tokyo")
        shopper("paris@example.com", timezone="Europe/Paris")  # 15:00 there: no quiet hours
        fire("tokyo@example.com", "Late", tokyo_night, 1)
        fire("paris@example.com", "Late", tokyo_night, 2)
        clock.shift(timedelta(seconds=10))
        run()
        assert [m.to for m in mail.outbox] == [["paris@example.com"]]
        held = Enrollment.objects.get(contact__email="tokyo@example.com")
        assert held.next_run_at == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
        clock.move_to(held.next_run_at)
        run()
    assert sorted(m.to[0] for m in mail.outbox) == ["paris@example.com", "tokyo@example.com"]


def test_transactional_mail_ignores_caps_and_quiet_hours(templates, run, settings):
    settings.KEEPERS_CAP_24H = 0
    campaign("Receipt", "receipt")
    night = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    with time_machine.travel(night, tick=False) as clock:
        shopper("tx@example.com", timezone="UTC")
        fire("tx@example.com", "Receipt", night, 1)
        clock.shift(timedelta(seconds=10))
        run()
    assert len(mail.outbox) == 1


def test_lifecycle_mail_takes_the_last_slot_before_promotional(templates, run, settings):
    settings.KEEPERS_CAP_24H = 1
    campaign("Promo", "cart-3", priority=Campaign.Priority.PROMOTIONAL, max_delay_hours=2)
    campaign("Life", "welcome", priority=Campaign.Priority.LIFECYCLE)
    with time_machine.travel(NOON, tick=False) as clock:
        shopper("both@example.com")
        fire("both@example.com", "Promo", NOON, 1)
        fire("both@example.com", "Life", NOON, 2)
        clock.shift(timedelta(seconds=10))
        run()
    assert [m.subject for m in mail.outbox] == ["Welcome!"]
    promo = Enrollment.objects.get(campaign__name="Promo")
    # the promotional one would wait a day, more than its 2 hours: skipped, with the reason
    assert promo.status == "completed"
    decision = promo.runs.get().decision
    assert decision.startswith("skipped: frequency cap: 1 a day would hold it 24 h")


def test_the_contacts_own_weekly_frequency(templates, run):
    campaign("Weekly", "welcome")
    with time_machine.travel(NOON, tick=False) as clock:
        contact = shopper("weekly@example.com")
        preferences_update(contact=contact, frequency="weekly", where=Where(source="test"))
        fire("weekly@example.com", "Weekly", NOON, 1)
        fire("weekly@example.com", "Weekly", NOON, 2)
        clock.shift(timedelta(seconds=10))
        run()
        assert len(mail.outbox) == 1
        clock.shift(timedelta(days=7, minutes=1))
        run()
    assert len(mail.outbox) == 2
