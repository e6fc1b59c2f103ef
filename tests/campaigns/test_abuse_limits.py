"""Abuse limits on the public forms (the subscribe form, fresh links, survey answers), the
subscribe form's honeypot and cross-site form token, and the client's real address behind
the TLS proxy (consent records, limits)."""

import re
from datetime import timedelta
from urllib.parse import urlparse

import pytest
import time_machine
from django.core import mail
from django.test import Client

from campaigns.models import Survey, SurveyAnswer
from campaigns.services.surveys import survey_link
from crm.links import preferences_token
from crm.models import ConsentRecord, Contact, Event, OptInRequest
from tests.campaigns.conftest import FORM_TOKEN as TOKEN
from tests.campaigns.conftest import T0, form_token, shopper

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"


def subscribe(client: Client, email: str, *, ip: str = "198.51.100.7", **fields):
    data = {"email": email, "form_token": form_token(client, REMOTE_ADDR=ip), **fields}
    return client.post("/subscribe/", data, REMOTE_ADDR=ip)


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """Run the on-commit sends as a real request's end would."""

    def run(call, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


# --- /subscribe/ -------------------------------------------------------------------------


def test_one_ip_cannot_sign_up_dozens_of_addresses(client, send, settings):
    """Reproduced: 35 posts from one IP sent 35 confirmations and made 26+ contacts."""
    assert settings.KEEPERS_RATE_SUBSCRIBE_IP == "10/hour"  # the documented default
    statuses = [send(subscribe, client, f"bot{i}@example.com").status_code for i in range(35)]
    assert statuses == [200] * 10 + [429] * 25
    assert len(mail.outbox) == 10
    assert Contact.objects.count() == 10 and OptInRequest.objects.count() == 10
    # another customer, from another address, is not held back by that one
    assert send(subscribe, client, "real@example.com", ip="198.51.100.8").status_code == 200
    assert len(mail.outbox) == 11


def test_one_inbox_gets_few_confirmations_whoever_asks(client, send, settings):
    """Reproduced: 10 confirmation emails to the same inbox."""
    assert settings.KEEPERS_RATE_SUBSCRIBE_ADDRESS == "3/day"
    statuses = [
        send(subscribe, client, "Victim@Example.com", ip=f"203.0.113.{i}").status_code
        for i in range(10)
    ]
    assert statuses == [200] * 3 + [429] * 7
    assert [m.to for m in mail.outbox] == [["victim@example.com"]] * 3
    with time_machine.travel(timedelta(days=1, minutes=1)):
        assert send(subscribe, client, "victim@example.com", ip="203.0.113.99").status_code == 200
    assert len(mail.outbox) == 4


def test_a_limited_request_gets_a_clear_page_in_the_customers_language(client, send, settings):
    settings.KEEPERS_RATE_SUBSCRIBE_IP = "1/hour"
    with time_machine.travel(T0, tick=False) as clock:
        send(subscribe, client, "first@example.com")
        clock.shift(timedelta(minutes=20))  # the window opened with the first request
        english = send(subscribe, client, "second@example.com")
        japanese = client.post(
            "/subscribe/",
            {"email": "third@example.com", "form_token": form_token(client)},
            REMOTE_ADDR="198.51.100.7",
            HTTP_ACCEPT_LANGUAGE="ja",
        )
    assert english.status_code == 429
    page = english.content.decode()
    assert "Too many requests" in page and "Please try again in 40 minutes." in page
    assert english.headers["Retry-After"] == str(40 * 60)
    assert japanese.status_code == 429
    page = japanese.content.decode()
    assert 'lang="ja"' in page and "リクエストが多すぎます" in page
    assert len(mail.outbox) == 1  # a limited request sends nothing
    assert not Contact.objects.filter(email__in=["second@example.com", "third@example.com"])


def test_the_limits_can_be_turned_off(client, send, settings):
    settings.KEEPERS_RATE_SUBSCRIBE_IP = "off"
    settings.KEEPERS_RATE_SUBSCRIBE_ADDRESS = "off"
    for _ in range(12):
        assert send(subscribe, client, "same@example.com").status_code == 200
    assert len(mail.outbox) == 12


def test_a_filled_honeypot_looks_done_and_does_nothing(client, send):
    response = send(subscribe, client, "bot@example.com", website="https://spam.example")
    assert response.status_code == 200 and "Check your inbox" in response.content.decode()
    assert not Contact.objects.exists() and mail.outbox == []
    # the field is there for bots, hidden from people and assistive technology
    page = client.get("/subscribe/").content.decode()
    field = re.search(r'<div class="hp" aria-hidden="true">.*?</div>', page, re.S).group(0)
    assert 'name="website"' in field and 'tabindex="-1"' in field and 'autocomplete="off"' in field


def test_the_embedded_form_posts_from_another_site_without_a_csrf_cookie(send):
    """Reproduced: the embedded /subscribe/ form failed with a CSRF 403 on another site.
    A browser on the shop's site loads the form in an iframe (no cookie survives there)
    and posts it: the signed form token is the proof, not a cookie."""
    browser = Client(enforce_csrf_checks=True)
    token = form_token(browser, HTTP_SEC_FETCH_DEST="iframe")
    browser.cookies.clear()  # third-party cookies are blocked
    response = send(
        browser.post,
        "/subscribe/",
        {"email": "embedded@example.com", "form_token": token, "source": "shop footer"},
        HTTP_ORIGIN="https://shop.example.net",
        HTTP_REFERER="https://shop.example.net/",
        HTTP_SEC_FETCH_SITE="cross-site",
        REMOTE_ADDR="198.51.100.20",
    )
    assert response.status_code == 200, response.content.decode()[:500]
    assert "Check your inbox" in response.content.decode()
    assert mail.outbox[0].to == ["embedded@example.com"]
    opt_in = OptInRequest.objects.get()
    assert (opt_in.source, opt_in.ip) == ("shop footer", "198.51.100.20")
    assert "X-Frame-Options" not in response.headers  # the form can be framed


@pytest.mark.parametrize(
    "token, why",
    [
        ("", "missing"),
        ("forged:token", "forged"),
        ("1abcdef:1tXyZ0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "forged"),
    ],
)
def test_a_missing_or_forged_form_token_is_refused(client, send, token, why):
    response = send(client.post, "/subscribe/", {"email": "x@example.com", "form_token": token})
    assert response.status_code == 400
    page = response.content.decode()
    assert "This form has expired or could not be checked" in page
    assert TOKEN.search(page)  # with a fresh form to try again
    assert not Contact.objects.exists() and mail.outbox == []


def test_an_expired_or_reused_form_token_is_refused(client, send, settings):
    token = form_token(client)
    with time_machine.travel(timedelta(seconds=settings.KEEPERS_SUBSCRIBE_FORM_MAX_AGE + 60)):
        expired = send(
            client.post, "/subscribe/", {"email": "late@example.com", "form_token": token}
        )
    assert expired.status_code == 400
    assert "This form has expired or could not be checked" in expired.content.decode()

    token = form_token(client)
    first = send(client.post, "/subscribe/", {"email": "one@example.com", "form_token": token})
    again = send(client.post, "/subscribe/", {"email": "two@example.com", "form_token": token})
    assert (first.status_code, again.status_code) == (200, 400)
    assert [m.to for m in mail.outbox] == [["one@example.com"]]


def test_a_bad_address_is_a_400_naming_the_field(client, send):
    response = send(subscribe, client, "not an address")
    assert response.status_code == 400
    page = response.content.decode()
    assert 'aria-invalid="true"' in page and "Please enter a valid email address." in page
    japanese = client.post(
        "/subscribe/",
        {"email": "nope", "form_token": form_token(client)},
        HTTP_ACCEPT_LANGUAGE="ja",
    )
    assert japanese.status_code == 400
    assert "有効なメールアドレスを入力してください。" in japanese.content.decode()
    assert 'value="nope"' in japanese.content.decode()  # what they typed, to correct it
    assert not Contact.objects.exists()


def test_the_api_subscribe_limits_the_address_not_the_shops_server(api, send):
    statuses = [
        send(api.post, "/api/v1/subscribe/", {"email": f"c{i}@example.com"}, format="json")
        for i in range(12)
    ]
    assert {r.status_code for r in statuses} == {202}  # all from the shop's server: no IP limit
    again = [
        send(api.post, "/api/v1/subscribe/", {"email": "c0@example.com"}, format="json")
        for _ in range(3)
    ]
    assert [r.status_code for r in again] == [202, 202, 429]
    assert again[-1].json()["code"] == "rate_limited"
    assert "Retry-After" in again[-1].headers
    assert len(mail.outbox) == 14


# --- fresh links --------------------------------------------------------------------------


def test_fresh_links_are_limited_per_customer_behind_the_proxy(client, send, settings):
    """Reproduced: behind the TLS proxy every request had the proxy's address, so the
    fresh-link limit (3 per IP an hour) was 3 an hour for all customers together."""
    settings.KEEPERS_TRUSTED_PROXIES = [PROXY]
    for i in range(6):
        shopper(f"lost{i}@example.com")
    for i in range(6):
        response = send(
            client.post,
            "/p/renew/",
            {"email": f"lost{i}@example.com"},
            REMOTE_ADDR=PROXY,
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i + 1}",
        )
        assert response.status_code == 200
    assert sorted(m.to[0] for m in mail.outbox) == [f"lost{i}@example.com" for i in range(6)]


def test_fresh_links_from_one_ip_are_limited_with_a_clear_page(client, send, settings):
    assert (settings.KEEPERS_RATE_RENEW_IP, settings.KEEPERS_RATE_RENEW_ADDRESS) == (
        "10/hour",
        "3/hour",
    )
    statuses = [
        send(client.post, "/p/renew/", {"email": f"who{i}@example.com"}).status_code
        for i in range(12)
    ]
    assert statuses == [200] * 10 + [429] * 2
    limited = send(
        client.post, "/p/renew/", {"email": "who@example.com"}, HTTP_ACCEPT_LANGUAGE="ja"
    )
    assert limited.status_code == 429 and "リクエストが多すぎます" in limited.content.decode()


# --- survey answers -----------------------------------------------------------------------


@pytest.fixture
def nps(db):
    return Survey.objects.create(name="NPS", kind="nps", question="Recommend us?")


def test_survey_answers_are_limited_per_contact_and_record_nothing_then(client, nps, settings):
    assert (settings.KEEPERS_RATE_SURVEY_IP, settings.KEEPERS_RATE_SURVEY_CONTACT) == (
        "60/hour",
        "20/hour",
    )
    contact = shopper("answers@example.com")
    contact.locale = "ja"
    contact.save()
    paths = [urlparse(survey_link(nps, contact, i % 11, f"o{i}")).path for i in range(21)]
    statuses = [
        client.get(path, REMOTE_ADDR=f"203.0.113.{i}").status_code for i, path in enumerate(paths)
    ]
    assert statuses == [200] * 20 + [429]
    assert SurveyAnswer.objects.count() == 20
    assert Event.objects.filter(name="Survey Answered").count() == 20
    limited = client.post(paths[0], {"score": "9", "comment": "again"})
    assert limited.status_code == 429
    assert "リクエストが多すぎます" in limited.content.decode()  # the contact's language
    assert SurveyAnswer.objects.get(ref="o0").comment == ""


def test_survey_answers_are_limited_per_ip(client, nps, settings):
    settings.KEEPERS_RATE_SURVEY_IP = "5/hour"
    paths = [
        urlparse(survey_link(nps, shopper(f"s{i}@example.com"), 9, "o1")).path for i in range(6)
    ]
    statuses = [client.get(path).status_code for path in paths]
    assert statuses == [200] * 5 + [429]
    assert SurveyAnswer.objects.count() == 5
    assert client.head(paths[5]).status_code == 200  # a prefetcher's HEAD records nothing anyway


# --- consent records keep the customer's address -------------------------------------------


def test_consent_records_store_the_customers_address_behind_the_proxy(client, settings):
    """Reproduced: consent records stored the proxy's IP."""
    settings.KEEPERS_TRUSTED_PROXIES = [PROXY]
    contact = shopper("consent@example.com")
    client.post(
        f"/p/{preferences_token(contact.pk)}/",
        {"action": "unsubscribe"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="203.0.113.50",
    )
    record = ConsentRecord.objects.filter(contact=contact).latest("id")
    assert (record.status, record.ip) == ("withdrawn", "203.0.113.50")


def test_a_forged_forwarded_header_from_outside_is_not_believed(client, settings):
    settings.KEEPERS_TRUSTED_PROXIES = [PROXY]
    contact = shopper("direct@example.com")
    client.post(
        f"/p/{preferences_token(contact.pk)}/",
        {"action": "unsubscribe"},
        REMOTE_ADDR="198.51.100.66",
        HTTP_X_FORWARDED_FOR="203.0.113.50",
    )
    assert ConsentRecord.objects.filter(contact=contact).latest("id").ip == "198.51.100.66"


def test_double_opt_in_records_the_customers_address_behind_the_proxy(client, send, settings):
    settings.KEEPERS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    via = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.77"}
    token = form_token(client, **via)
    send(client.post, "/subscribe/", {"email": "doi@example.com", "form_token": token}, **via)
    assert OptInRequest.objects.get().ip == "203.0.113.77"
    link = re.search(r"/c/[^/\s]+/", mail.outbox[0].body).group(0)
    client.post(link, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.78")
    granted = ConsentRecord.objects.get(contact__email="doi@example.com", topic="all")
    assert granted.ip == "203.0.113.78"


def test_the_api_consent_record_keeps_the_callers_address(api, settings):
    settings.KEEPERS_TRUSTED_PROXIES = [PROXY]
    contact = shopper("apiconsent@example.com")
    api.post(
        f"/api/v1/contacts/{contact.pk}/consent/",
        {"status": "withdrawn"},
        format="json",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="198.51.100.200",
    )
    assert ConsentRecord.objects.filter(contact=contact).latest("id").ip == "198.51.100.200"
