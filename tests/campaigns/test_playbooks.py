"""The demo's lifecycle playbooks install, validate and run."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from campaigns.models import Campaign, Enrollment
from campaigns.playbooks import CAMPAIGNS, playbooks_install
from crm.models import Contact
from crm.selectors import consent_current
from crm.services.consent import consent_record
from crm.services.contacts import contact_create
from tests.campaigns.conftest import T0, sent_to, track

pytestmark = [pytest.mark.django_db, pytest.mark.quiet_hours]


def test_all_playbooks_install_once_and_are_live():
    assert playbooks_install() == len(CAMPAIGNS)
    assert playbooks_install() == 0
    assert set(Campaign.objects.values_list("status", flat=True)) == {"active"}


def test_welcome_series_stops_at_the_first_order(run):
    playbooks_install()
    with time_machine.travel(T0, tick=False) as clock:
        new = contact_create(email="new@example.com", first_name="Nia")
        consent_record(contact=new, status="granted")
        clock.shift(timedelta(seconds=10))
        run()
        assert sent_to("new@example.com") == ["Welcome, Nia"]
        clock.shift(timedelta(days=2, minutes=1))
        run()
        assert sent_to("new@example.com") == ["Welcome, Nia", "How we choose our beans"]
        track(
            "new@example.com",
            "Order Completed",
            T0 + timedelta(days=3),
            "o1",
            order_id="o1",
            total=20,
        )
        clock.shift(timedelta(days=1))
        run()
        clock.shift(timedelta(days=5))
        run()
    welcome = Enrollment.objects.get(campaign__name="Welcome series")
    assert welcome.status == "exited_goal"
    assert "Your first order, on us*" not in sent_to("new@example.com")
    assert "Thank you for your order" in sent_to("new@example.com")  # post-purchase started


def test_re_engagement_sunsets_those_who_never_open(run):
    playbooks_install()
    with time_machine.travel(T0, tick=False) as clock:
        quiet = contact_create(email="quiet@example.com")
        consent_record(contact=quiet, status="granted")
        clock.shift(timedelta(seconds=10))
        run()
        mail.outbox.clear()
        clock.shift(timedelta(days=91))
        from crm.services.lifecycle import lifecycle_recompute_all

        lifecycle_recompute_all()
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(days=5, minutes=1))
        run()
        clock.shift(timedelta(days=7, minutes=1))
        run()
    reengagement = [
        s
        for s in sent_to("quiet@example.com")
        if s in ("Still want to hear from us?", "Last email from us")
    ]
    assert reengagement == ["Still want to hear from us?", "Last email from us"]
    contact = Contact.objects.get(email="quiet@example.com")
    assert consent_current(contact=contact) == "withdrawn"
    assert [t.name for t in contact.tags.all()] == ["sunset"]
