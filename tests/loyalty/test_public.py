"""The referral landing page (/r/<code>/) and the referral page (/p/<token>/referral/):
visits and the cookie, signup through the form (and its refusals), CSRF, what the page
shows, bad links, Japanese."""

import datetime as dt
import re
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.test import Client, RequestFactory

from crm.links import preferences_token
from crm.models import Contact, OptInRequest
from crm.selectors import consent_current
from crm.services.contacts import Identity, contact_create
from crm.services.orders import OrderIn, orders_place
from loyalty.models import POINTS, Referral, ReferralRefusal, ReferralVisit, Tier
from loyalty.public import referral_from_cookie
from loyalty.services.ledger import ledger_grant
from loyalty.services.referrals import (
    referral_attach,
    referral_code_for,
    referrals_reward_due,
    reward_parse,
)
from loyalty.services.tiers import tiers_recompute

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def clock(settings):
    settings.KEEPERS_BASE_CURRENCY = "EUR"
    settings.KEEPERS_REFERRAL_MIN_ORDER = Decimal("30")
    settings.KEEPERS_REFERRAL_RETURN_DAYS = 30
    settings.KEEPERS_REFERRAL_REFERRER_REWARD = "credit:10:EUR:90"
    settings.KEEPERS_REFERRAL_FRIEND_REWARD = "credit:10:EUR:30"
    settings.KEEPERS_PUBLIC_URL = "https://keepers.example.com"
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ada():
    return contact_create(email="ada@example.com", first_name="Ada")


@pytest.fixture
def code(ada) -> str:
    return referral_code_for(ada).code


def h1(response) -> str:
    return re.search(r"<h1>(.*?)</h1>", response.content.decode(), re.S).group(1).strip()


def order(email: str, total: str, ref: str, capture) -> None:
    with capture(execute=True):  # tasks are eager: the referral sees the order
        orders_place(
            [
                OrderIn(
                    external_id=ref,
                    identity=Identity(email=email),
                    total=Decimal(total),
                    currency="EUR",
                    ordered_at=dt.datetime.now(dt.UTC),
                    lines=[],
                    attributes={},
                )
            ]
        )


# ------------------------------------------------------------------------------------------
# The landing page
# ------------------------------------------------------------------------------------------
def test_the_landing_page_records_the_visit_and_sets_the_cookie(client, code):
    response = client.get(f"/r/{code}/", HTTP_USER_AGENT="Phone/1.0", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 200
    assert h1(response) == "Ada invited you to Keepers Demo Shop"
    body = response.content.decode()
    assert reward_parse("credit:10:EUR:30").describe() == "10.00 EUR store credit"
    assert "<strong>10.00 EUR store credit</strong>" in body
    assert 'name="csrfmiddlewaretoken"' in body and 'type="email"' in body
    ref = response.cookies["keepers_ref"]
    assert ref.value == code
    assert ref["httponly"] and ref["samesite"] == "Lax" and not ref["secure"]
    assert int(ref["max-age"]) == 30 * 86400
    visit = ReferralVisit.objects.get()
    assert visit.code.code == code
    assert visit.visitor == response.cookies["keepers_visitor"].value
    assert visit.user_agent == "Phone/1.0" and visit.ip_hash and "203.0.113.9" not in visit.ip_hash

    # the same browser again (and a code typed in lower case): one visitor, two visits
    again = client.get(f"/r/{code.lower()}/")
    assert again.status_code == 200
    assert list(ReferralVisit.objects.values_list("visitor", flat=True).distinct()) == [
        visit.visitor
    ]
    assert ReferralVisit.objects.count() == 2


def test_the_cookie_is_secure_over_https(client, code):
    response = client.get(f"/r/{code}/", secure=True)
    assert response.cookies["keepers_ref"]["secure"]
    assert response.cookies["keepers_visitor"]["secure"]


def test_an_unknown_code_gets_a_friendly_page(client, code):
    response = client.get("/r/NOPE2345/")

    assert response.status_code == 404
    assert h1(response) == "This invitation link does not work"
    assert "https://shop.example.com" in response.content.decode()
    assert "keepers_ref" not in response.cookies
    assert not ReferralVisit.objects.exists()


def test_signing_up_attaches_the_friend_without_marketing_consent(client, code, ada):
    response = client.post(f"/r/{code}/", {"email": " Bo@Example.com ", "first_name": "Bo"})

    assert response.status_code == 200
    assert h1(response) == "Welcome, Bo!"
    assert 'href="https://shop.example.com"' in response.content.decode()
    bo = Contact.objects.get(email="bo@example.com")
    assert (bo.first_name, bo.source, bo.locale) == ("Bo", "referral", "en")
    referral = Referral.objects.get()
    assert (referral.referrer, referral.friend, referral.channel, referral.status) == (
        ada,
        bo,
        "form",
        "signed_up",
    )
    assert not OptInRequest.objects.exists()
    assert consent_current(contact=bo) != "granted"
    assert not ReferralVisit.objects.exists()  # a POST is not a visit


def test_the_marketing_box_asks_for_consent_by_double_opt_in(
    client, code, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/r/{code}/", {"email": "bo@example.com", "first_name": "Bo", "marketing": "1"}
        )

    assert response.status_code == 200
    assert "confirmation link" in response.content.decode()
    bo = Contact.objects.get(email="bo@example.com")
    assert OptInRequest.objects.get().contact == bo
    assert consent_current(contact=bo) != "granted"  # not before they confirm
    assert [m.to for m in mail.outbox] == [["bo@example.com"]]
    assert Referral.objects.get().friend == bo


def test_a_bad_address_gets_an_inline_error(client, code):
    response = client.post(f"/r/{code}/", {"email": "not-an-address", "first_name": "Bo"})

    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body
    assert 'aria-invalid="true" aria-describedby="email-error"' in body
    assert re.search(r'id="email-error">[^<]*valid email', body)
    assert 'value="not-an-address"' in body and 'value="Bo"' in body  # kept for the fix
    assert Contact.objects.count() == 1 and not Referral.objects.exists()


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("ada@example.com", "self-referral: the same contact"),
        ("ADA+friend@example.com", "self-referral: the same email address"),
    ],
)
def test_a_self_referral_is_refused_quietly(client, code, ada, email, reason):
    response = client.post(f"/r/{code}/", {"email": email})

    assert response.status_code == 200  # the same page either way: no 500, no leak
    assert h1(response) == "Welcome!"
    assert not Referral.objects.exists()
    assert ReferralRefusal.objects.get().reason == reason
    ada.refresh_from_db()
    assert ada.first_name == "Ada"


def test_a_known_contact_is_attached_but_not_renamed(client, code):
    bo = contact_create(email="bo@example.com", first_name="Bo", locale="ja")
    client.post(f"/r/{code}/", {"email": "bo@example.com", "first_name": "Mallory"})
    bo.refresh_from_db()
    assert (bo.first_name, bo.locale) == ("Bo", "ja")
    assert Referral.objects.get().friend == bo


def test_the_signup_form_needs_its_csrf_token(code):
    browser = Client(enforce_csrf_checks=True)
    forged = browser.post(f"/r/{code}/", {"email": "bo@example.com"})
    assert forged.status_code == 403
    assert not Contact.objects.filter(email="bo@example.com").exists()

    page = browser.get(f"/r/{code}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = browser.post(
        f"/r/{code}/", {"email": "bo@example.com", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200
    assert Referral.objects.get().friend.email == "bo@example.com"


def test_the_cookie_attaches_a_signup_elsewhere(code, ada):
    bo = contact_create(email="bo@example.com")
    factory = RequestFactory()
    assert referral_from_cookie(factory.get("/subscribe/"), bo) is None
    request = factory.get("/subscribe/", HTTP_COOKIE=f"keepers_ref={code}")
    referral = referral_from_cookie(request, bo)
    assert (referral.referrer, referral.channel) == (ada, "cookie")


def test_the_landing_page_speaks_japanese(client, code):
    response = client.get(f"/r/{code}/", HTTP_ACCEPT_LANGUAGE="ja")
    body = response.content.decode()
    assert '<html lang="ja">' in body
    assert h1(response) == "AdaさんからKeepers Demo Shopへの招待が届いています"
    assert response.headers["Content-Language"] == "ja"


# ------------------------------------------------------------------------------------------
# The referral page
# ------------------------------------------------------------------------------------------
@pytest.fixture
def referred(ada, code, clock, django_capture_on_commit_callbacks):
    """Ada referred four friends: Bo is rewarded, Carol (no first name) is pending after
    her order, Dan's order was below the minimum, Erin has not ordered."""
    friends = {
        "bo": contact_create(email="bo@example.com", first_name="Bo"),
        "carol": contact_create(email="carol.long@example.com"),
        "dan": contact_create(email="dan@example.com", first_name="Dan"),
        "erin": contact_create(email="erin@example.com", first_name="Erin"),
    }
    for friend in friends.values():
        assert referral_attach(friend=friend, code=code, channel="form")
    order("bo@example.com", "45", "o-bo", django_capture_on_commit_callbacks)
    order("dan@example.com", "5", "o-dan", django_capture_on_commit_callbacks)
    clock.shift(30 * DAY)
    with django_capture_on_commit_callbacks(execute=True):
        assert referrals_reward_due() == 1
    order("carol.long@example.com", "60", "o-carol", django_capture_on_commit_callbacks)
    ledger_grant(contact=ada, unit=POINTS, amount=300, reason="Welcome", key="welcome")
    Tier.objects.create(name="Insider", rank=1, basis="points", threshold=100)
    Tier.objects.create(name="VIB", rank=2, basis="points", threshold=1000)
    tiers_recompute(contact_ids=[ada.pk])
    return friends


def page_url(contact) -> str:
    return f"/p/{preferences_token(contact.pk)}/referral/"


def test_the_referral_page_shows_link_friends_and_balances(
    client, ada, code, referred, django_assert_max_num_queries
):
    with django_assert_max_num_queries(11):  # however many friends
        response = client.get(page_url(ada))

    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("max-age=0")
    body = response.content.decode()
    link = f"https://keepers.example.com/r/{code}/"
    assert f'value="{link}"' in body and f'value="{code}"' in body
    assert 'data-copy="share-link"' in body and "loyalty/referral.js" in body
    assert "mailto:?subject=" in body and "https://wa.me/?text=" in body
    assert "https://twitter.com/intent/tweet?text=" in body
    friends = re.findall(r'<li data-status="(\w+)"><span>([^<]+)</span>', body)
    assert sorted(friends) == [
        ("pending", "Erin"),
        ("pending", "c•••@example.com"),
        ("refused", "Dan"),
        ("rewarded", "Bo"),
    ]
    assert "carol.long@example.com" not in body
    carol_reward_day = (T0 + 60 * DAY).strftime("%Y-%m-%d")
    assert f"on {carol_reward_day}" in body
    # store credit: Ada's reward, granted at T0 + 30 days, for 90 days
    expiry = (T0 + 120 * DAY).strftime("%Y-%m-%d")
    credit = body.split('id="store-credit"')[1]
    assert "<strong>10.00 EUR</strong>" in credit and f"to use by {expiry}" in credit
    earned = body.split('id="rewards-earned"')[1]
    assert "10.00 EUR store credit" in earned and "1 reward pending" in earned
    assert "300 points" in body.split('id="points-balance"')[1]
    tier = body.split('id="tier"')[1]
    assert "<strong>Insider</strong>" in tier and "700 more points to reach VIB" in tier
    assert 'value="30"' in tier


def test_a_tampered_or_foreign_token_gets_the_friendly_page(client, ada):
    token = preferences_token(ada.pk)
    for url in (f"/p/{token[:-2]}xx/referral/", "/p/nonsense/referral/"):
        response = client.get(url)
        assert response.status_code == 404
        assert h1(response) == "This link does not work"
        assert 'action="/p/renew/"' in response.content.decode()


def test_the_referral_page_speaks_the_contacts_language(client, code):
    kenji = contact_create(email="kenji@example.jp", first_name="Kenji", locale="ja-JP")
    response = client.get(page_url(kenji), HTTP_ACCEPT_LANGUAGE="en")

    body = response.content.decode()
    assert '<html lang="ja">' in body
    assert h1(response) == "友だちを招待"
    assert "まだいません" in body  # no friends yet
    assert "10.00 EUR のストアクレジット" in body
