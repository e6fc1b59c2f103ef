"""The referral landing page behind the TLS proxy: visits are keyed on the friend's own
address (the fraud rules' input), and its signup form shares the subscribe form's limits."""

import hashlib

import pytest
from django.conf import settings as django_settings
from django.core import mail

from crm.models import Contact
from crm.services.contacts import contact_create
from loyalty.models import Referral, ReferralVisit
from loyalty.services.referrals import referral_code_for

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"


@pytest.fixture
def code(db) -> str:
    return referral_code_for(contact_create(email="ada@example.com", first_name="Ada")).code


def test_a_visit_through_the_proxy_is_keyed_on_the_friends_address(client, code, settings):
    settings.KEEPERS_TRUSTED_PROXIES = [PROXY]
    client.get(f"/r/{code}/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9")
    expected = hashlib.sha256(f"{django_settings.SECRET_KEY}:203.0.113.9".encode()).hexdigest()
    assert ReferralVisit.objects.get().ip_hash == expected


def test_the_landing_signup_shares_the_subscribe_limit(
    client, code, settings, django_capture_on_commit_callbacks
):
    settings.KEEPERS_RATE_SUBSCRIBE_IP = "3/hour"
    statuses = []
    for i in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"/r/{code}/",
                {"email": f"friend{i}@example.com", "first_name": "F", "marketing": "on"},
                REMOTE_ADDR="198.51.100.3",
                HTTP_ACCEPT_LANGUAGE="ja",
            )
        statuses.append(response.status_code)
    assert statuses == [200] * 3 + [429] * 2
    assert "リクエストが多すぎます" in response.content.decode()
    assert Contact.objects.filter(email__startswith="friend").count() == 3
    assert Referral.objects.count() == 3 and len(mail.outbox) == 3
