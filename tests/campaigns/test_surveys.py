"""CSAT and NPS surveys: signed one-click links in emails, the public survey page, the
"Survey Answered" event, and the follow-up playbooks it triggers."""

import logging
import re
from datetime import timedelta
from urllib.parse import urlparse

import pytest
import time_machine
from django.core import mail, signing
from django.test import Client

from campaigns.models import EmailTemplate, Enrollment, Survey, SurveyAnswer
from campaigns.playbooks import playbooks_install
from campaigns.services.rendering import email_render
from campaigns.services.surveys import (
    SURVEY_SALT,
    survey_answer,
    survey_category,
    survey_link,
    survey_link_read,
)
from crm.errors import KeepersError
from crm.links import preferences_contact, preferences_token
from crm.models import Event
from tests.campaigns.conftest import T0, sent_to, shopper, track

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https?://[^\s\"')]+/s/([^\s\"'/)]+)/")


@pytest.fixture
def nps(db):
    return Survey.objects.create(
        name="NPS",
        kind="nps",
        question="How likely are you to recommend us to a friend?",
        thanks="Thanks, truly.",
    )


@pytest.fixture
def csat(db):
    return Survey.objects.create(
        name="CSAT", kind="csat", question="How satisfied are you with your order?"
    )


def path_of(url: str) -> str:
    return urlparse(url).path


def answered_events(contact) -> list[dict]:
    return list(
        Event.objects.filter(contact=contact, name="Survey Answered")
        .order_by("pk")
        .values_list("properties", flat=True)
    )


@pytest.mark.parametrize(
    "kind, score, category",
    [
        ("csat", 1, "unsatisfied"),
        ("csat", 2, "unsatisfied"),
        ("csat", 3, "neutral"),
        ("csat", 4, "satisfied"),
        ("csat", 5, "satisfied"),
        ("nps", 0, "detractor"),
        ("nps", 6, "detractor"),
        ("nps", 7, "passive"),
        ("nps", 8, "passive"),
        ("nps", 9, "promoter"),
        ("nps", 10, "promoter"),
    ],
)
def test_categories_follow_the_definitions(kind, score, category):
    assert survey_category(kind, score) == category


@pytest.mark.parametrize("kind, score", [("csat", 0), ("csat", 6), ("nps", -1), ("nps", 11)])
def test_a_score_off_the_scale_is_refused(kind, score):
    with pytest.raises(KeepersError, match="Choose a score from"):
        survey_category(kind, score)


def test_links_are_signed_expire_and_are_not_preference_links(nps):
    contact = shopper("sig@example.com")
    with time_machine.travel(T0, tick=False) as clock:
        url = survey_link(nps, contact, 9, "order:o1")
        token = LINK.search(url)[1]
        link = survey_link_read(token)
        assert (link.survey, link.contact, link.ref, link.score) == (nps, contact, "order:o1", 9)

        # tampering: a changed character, or a payload signed with another salt
        assert survey_link_read(token[:-2] + ("aa" if token[-2:] != "aa" else "bb")) is None
        forged = signing.dumps([nps.pk, contact.pk, "order:o1", 10], salt="keepers.preferences")
        assert survey_link_read(forged) is None
        assert survey_link_read(preferences_token(contact.pk)) is None
        assert preferences_contact(token) is None  # nor does a survey link open preferences
        assert signing.loads(token, salt=SURVEY_SALT)[3] == 9

        clock.shift(timedelta(days=59))
        assert survey_link_read(token) is not None
        clock.shift(timedelta(days=2))
        assert survey_link_read(token) is None
    with pytest.raises(KeepersError):
        survey_link(nps, contact, 11, "order:o1")


def test_one_click_records_the_answer_with_its_category_and_asks_for_more(client, nps):
    contact = shopper("click@example.com")

    response = client.get(path_of(survey_link(nps, contact, 3, "order:o1")))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Thanks — anything to add?" in page
    assert "We recorded your answer: 3 out of 10." in page
    assert 'name="comment"' in page and "csrfmiddlewaretoken" in page
    assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
    answer = SurveyAnswer.objects.get()
    assert (answer.contact, answer.ref, answer.score, answer.category) == (
        contact,
        "order:o1",
        3,
        "detractor",
    )


def test_the_answer_is_one_event_and_a_changed_score_updates_it(client, nps):
    contact = shopper("twice@example.com")
    with time_machine.travel(T0, tick=True):
        client.get(path_of(survey_link(nps, contact, 5, "order:o1")))
        client.get(path_of(survey_link(nps, contact, 5, "order:o1")))  # a re-click
        assert answered_events(contact) == [
            {"survey": "NPS", "kind": "nps", "score": 5, "category": "detractor", "ref": "order:o1"}
        ]

        client.get(path_of(survey_link(nps, contact, 10, "order:o1")))  # another score

    answer = SurveyAnswer.objects.get()
    assert (answer.score, answer.category) == (10, "promoter")
    assert answer.updated_at > answer.answered_at
    assert [(e["score"], e["category"]) for e in answered_events(contact)] == [
        (5, "detractor"),
        (10, "promoter"),
    ]
    # the same link in another send is another answer
    client.get(path_of(survey_link(nps, contact, 8, "order:o2")))
    assert SurveyAnswer.objects.count() == 2


def test_a_head_request_answers_nothing(client, nps):
    contact = shopper("scanner@example.com")
    assert client.head(path_of(survey_link(nps, contact, 0, "r"))).status_code == 200
    assert not SurveyAnswer.objects.exists() and not answered_events(contact)


def test_the_comment_form_is_csrf_protected_and_saves_the_comment(nps):
    contact = shopper("comment@example.com")
    browser = Client(enforce_csrf_checks=True)
    url = path_of(survey_link(nps, contact, 6, "order:o1"))
    page = browser.get(url).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]

    assert browser.post(url, {"comment": "Slow delivery", "score": "6"}).status_code == 403
    response = browser.post(
        url, {"csrfmiddlewaretoken": csrf, "comment": "  Slow delivery  ", "score": "6"}
    )

    assert response.status_code == 200
    assert "Thanks, truly." in response.content.decode()  # the survey's own thanks
    answer = SurveyAnswer.objects.get()
    assert (answer.score, answer.comment) == (6, "Slow delivery")
    assert len(answered_events(contact)) == 1  # a comment is not another answer


def test_an_out_of_range_score_gets_a_friendly_400(client, nps, csat):
    contact = shopper("range@example.com")
    url = path_of(survey_link(nps, contact, 8, "r"))
    client.get(url)

    response = client.post(url, {"score": "42", "comment": "hello"})

    assert response.status_code == 400
    page = response.content.decode()
    assert 'role="alert"' in page and "Choose a score from 0 to 10." in page
    assert "hello" in page  # what they wrote is kept
    assert SurveyAnswer.objects.get().score == 8
    token = LINK.search(survey_link(csat, contact, 5, "r"))[1]
    with pytest.raises(KeepersError, match="from 1 to 5"):
        survey_answer(token=token, score=0)
    with pytest.raises(KeepersError, match="from 1 to 5"):
        survey_answer(token=token, score="five")


def test_a_bad_link_gets_the_friendly_page(client, nps):
    contact = shopper("bad@example.com")
    url = path_of(survey_link(nps, contact, 9, "r"))

    response = client.get(url[:-4] + "xx/")

    assert response.status_code == 404
    assert "This link does not work" in response.content.decode()
    assert not SurveyAnswer.objects.exists()


def test_japanese_contacts_get_a_japanese_page(client, nps):
    contact = shopper("jp-survey@example.com")
    contact.locale = "ja-JP"
    contact.save()
    url = path_of(survey_link(nps, contact, 9, "r"))

    page = client.get(url).content.decode()

    assert 'lang="ja"' in page
    assert "ありがとうございます" in page and "コメント" in page
    bad = client.post(url, {"score": "11"}).content.decode()
    assert "0〜10" in bad  # the service's error, in Japanese too


def test_the_row_in_an_email_is_eleven_signed_links(nps):
    contact = shopper("row@example.com")
    template = EmailTemplate.objects.create(
        name="ask",
        subject="One question",
        category="marketing",
        html_body='<h1>Hello</h1>{% load keepers %}{% survey_row "NPS" %}',
    )
    order = Event(name="Order Completed", properties={"order_id": "o-77"}, occurred_at=T0)

    html = email_render(template=template, contact=contact, event=order).html

    tokens = LINK.findall(html)
    assert len(tokens) == 11
    links = [survey_link_read(token) for token in tokens]
    assert [link.score for link in links] == list(range(11))
    assert {(link.contact, link.survey, link.ref) for link in links} == {
        (contact, nps, "order:o-77")
    }
    assert "How likely are you to recommend us to a friend?" in html
    assert "Not at all likely" in html and "Extremely likely" in html
    assert 'role="presentation"' in html and "style=" in html


def test_the_row_names_the_send_and_takes_other_labels(csat):
    contact = shopper("ref@example.com")
    template = EmailTemplate.objects.create(
        name="csat",
        subject="How was it?",
        html_body='{% load keepers %}{% survey_row "CSAT" low="不満" high="満足" %}',
    )
    with time_machine.travel(T0, tick=False):
        html = email_render(template=template, contact=contact).html
        refs = {survey_link_read(token).ref for token in LINK.findall(html)}
    assert refs == {"date:2026-03-02"}  # nothing else in the context: the day of the send
    assert len(LINK.findall(html)) == 5 and "不満" in html and "満足" in html


def test_an_unknown_survey_renders_nothing_and_logs(caplog, nps):
    contact = shopper("unknown@example.com")
    template = EmailTemplate.objects.create(
        name="oops", subject="Hi", html_body='<p>Hi</p>{% load keepers %}{% survey_row "Nope" %}'
    )
    with caplog.at_level(logging.WARNING, logger="campaigns.templatetags.keepers"):
        html = email_render(template=template, contact=contact).html
    assert "<p>Hi</p>" in html and "/s/" not in html
    assert "no active survey named 'Nope'" in caplog.text


def test_detractors_get_the_support_follow_up_and_promoters_the_referral_invitation(client, run):
    playbooks_install()
    nps = Survey.objects.get(name="NPS")
    with time_machine.travel(T0, tick=False) as clock:
        sad = shopper("sad@example.com", first_name="Sid")
        happy = shopper("happy@example.com", first_name="Pat")
        fickle = shopper("fickle@example.com", first_name="Fay")
        clock.shift(timedelta(minutes=1))
        client.get(path_of(survey_link(nps, sad, 2, "order:1")))
        client.get(path_of(survey_link(nps, happy, 10, "order:2")))
        client.get(path_of(survey_link(nps, fickle, 3, "order:3")))
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(minutes=5))
        client.get(path_of(survey_link(nps, fickle, 9, "order:3")))  # a misclick corrected
        clock.shift(timedelta(seconds=10))
        run()
        mail.outbox.clear()
        clock.shift(timedelta(hours=1, minutes=1))
        run()
        clock.shift(timedelta(minutes=10))
        run()

    assert sent_to("sad@example.com") == ["Sorry — can we help?"]
    assert sent_to("happy@example.com") == ["Thank you, Pat — share the love?"]
    assert sent_to("fickle@example.com") == ["Thank you, Fay — share the love?"]
    invitation = next(m for m in mail.outbox if m.to == ["happy@example.com"])
    assert re.search(r"/p/[^/\s]+/referral/", invitation.alternatives[0][0])
    sorry = next(m for m in mail.outbox if m.to == ["sad@example.com"])
    assert "reply to this email" in sorry.body and "2 out of 10" in sorry.body
    enrolled = set(Enrollment.objects.values_list("campaign__name", "contact__email"))
    assert {
        ("Detractor follow-up", "sad@example.com"),
        ("Promoter referral invitation", "happy@example.com"),
        ("Detractor follow-up", "fickle@example.com"),  # stepped aside for the newer answer
        ("Promoter referral invitation", "fickle@example.com"),
    } <= enrolled
    assert ("Promoter referral invitation", "sad@example.com") not in enrolled
    assert ("Detractor follow-up", "happy@example.com") not in enrolled


def test_an_nps_email_after_an_order_is_answered_in_one_click_and_followed_up(client, run):
    """The acceptance path: order → review email (CSAT) after 10 days and NPS email after
    14 → one click on a score in each → the answers count in CSAT and NPS, and the
    detractor follow-up goes out."""
    from django.core.cache import cache

    from crm.services.metrics import metrics_summary

    playbooks_install()
    with time_machine.travel(T0, tick=False) as clock:
        shopper("buyer@example.com", first_name="Bo")
        track("buyer@example.com", "Order Completed", T0, "o-1", order_id="o-1", total=30)
        clock.shift(timedelta(seconds=10))
        run()
        for _ in range(15):
            clock.shift(timedelta(days=1))
            run()
        review = next(m for m in mail.outbox if m.subject == "How was it?")
        csat_tokens = LINK.findall(review.alternatives[0][0])
        assert [survey_link_read(t).score for t in csat_tokens] == [1, 2, 3, 4, 5]
        ask = [m for m in mail.outbox if m.subject == "One quick question, Bo"]
        assert len(ask) == 1
        tokens = LINK.findall(ask[0].alternatives[0][0])
        assert len(tokens) == 11
        two = next(t for t in tokens if survey_link_read(t).score == 2)
        nps = Enrollment.objects.get(campaign__name="NPS survey")
        assert survey_link_read(two).ref == f"enrollment:{nps.pk}:ask"  # this send, exactly

        assert client.get(f"/s/{csat_tokens[4]}/").status_code == 200  # CSAT: 5
        assert client.get(f"/s/{two}/").status_code == 200  # NPS: 2
        clock.shift(timedelta(seconds=10))
        run()
        clock.shift(timedelta(hours=1, minutes=1))
        run()

    answer = SurveyAnswer.objects.get(survey__name="NPS")
    assert (answer.score, answer.category, answer.ref) == (
        2,
        "detractor",
        f"enrollment:{nps.pk}:ask",
    )
    assert "Sorry — can we help?" in sent_to("buyer@example.com")
    cache.clear()  # metrics are cached per period; start from a clean slate
    surveys = metrics_summary(T0.date(), (T0 + timedelta(days=30)).date())["surveys"]
    assert (surveys["csat"]["score"], surveys["csat"]["answers"]) == (100.0, 1)
    assert (surveys["nps"]["score"], surveys["nps"]["detractors"]) == (-100.0, 1)
