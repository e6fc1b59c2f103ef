"""Subscription topics: their names in the contact's language, their order, and a topic
that is not opt-in by default (only contacts who ticked it get it)."""

import datetime as dt

import pytest

from campaigns.models import Broadcast, EmailTemplate
from campaigns.services.broadcasts import broadcast_preview
from campaigns.services.sending import Addressee, skip_reasons
from crm.links import preferences_token
from crm.models import Contact, Topic
from crm.services.consent import consent_record
from crm.services.preferences import preferences_of
from tests.campaigns.conftest import shopper

pytestmark = pytest.mark.django_db


@pytest.fixture
def topics(db):
    return [
        Topic.objects.create(slug="offers", name="Offers", name_ja="セール情報", order=2),
        Topic.objects.create(
            slug="beans",
            name="New beans",
            name_ja="新しい豆",
            description="When a roast arrives",
            description_ja="新しい焙煎が届いたとき",
            default_opt_in=False,
            order=1,
        ),
    ]


def test_the_preference_centre_lists_topics_in_order_in_the_contacts_language(client, topics):
    given = shopper("hana@example.com")
    Contact.objects.filter(pk=given.pk).update(locale="ja-JP")

    page = client.get(f"/p/{preferences_token(given.pk)}/").content.decode()

    assert page.index("新しい豆") < page.index("セール情報")
    assert "新しい焙煎が届いたとき" in page and "New beans" not in page


def test_english_is_shown_where_a_topic_has_no_translation(client, topics):
    Topic.objects.filter(slug="offers").update(name_ja="")
    given = shopper("ken@example.com")
    Contact.objects.filter(pk=given.pk).update(locale="ja")

    page = client.get(f"/p/{preferences_token(given.pk)}/").content.decode()

    assert "Offers" in page


def test_a_topic_not_opt_in_by_default_is_unticked_until_the_contact_ticks_it(topics):
    contact = shopper("ada@example.com")

    rows = {row["topic"].slug: row["subscribed"] for row in preferences_of(contact)["topics"]}
    assert rows == {"offers": True, "beans": False}

    consent_record(contact=contact, status="granted", topic="beans", source="test")
    rows = {row["topic"].slug: row["subscribed"] for row in preferences_of(contact)["topics"]}
    assert rows == {"offers": True, "beans": True}


def test_mail_of_an_opt_in_topic_goes_only_to_those_who_ticked_it(topics):
    ticked, silent, refused = (
        shopper("t@example.com"),
        shopper("s@example.com"),
        shopper("r@example.com"),
    )
    consent_record(contact=ticked, status="granted", topic="beans", source="test")
    consent_record(contact=refused, status="withdrawn", topic="beans", source="test")
    messages = [
        Addressee(contact_id=c.pk, to_email=c.email, category="marketing", topic=topic)
        for c in (ticked, silent, refused)
        for topic in ("beans", "offers")
    ]

    reasons = skip_reasons(messages, key=lambda m: (m.contact_id, m.topic))

    assert reasons == {
        (silent.pk, "beans"): "not subscribed to the opt-in topic 'beans'",
        (refused.pk, "beans"): "unsubscribed from the topic 'beans'",
    }


def test_a_broadcast_to_an_opt_in_topic_reaches_only_those_who_ticked_it(topics):
    ticked, _silent = shopper("t@example.com"), shopper("s@example.com")
    consent_record(contact=ticked, status="granted", topic="beans", source="test")
    template = EmailTemplate.objects.create(
        name="beans", subject="New beans", html_body="<p>Hi</p>", topic=topics[1]
    )
    broadcast = Broadcast(
        name="Beans",
        template=template,
        topic=topics[1],
        send_date=dt.date(2030, 1, 1),
        send_time=dt.time(9),
    )

    assert [s["email"] for s in broadcast_preview(broadcast)["sample"]] == [ticked.email]


def test_a_japanese_contact_reads_the_survey_in_japanese_in_the_email_and_on_the_page(client):
    from campaigns.models import Survey
    from campaigns.services.rendering import email_render
    from campaigns.services.surveys import survey_link
    from tests.campaigns.test_surveys import path_of

    survey = Survey.objects.create(
        name="NPS",
        kind="nps",
        question="Would you recommend us?",
        question_ja="当店を薦めますか？",
        thanks="Thanks!",
        thanks_ja="ありがとうございます！",
    )
    hana = shopper("hana@example.com")
    Contact.objects.filter(pk=hana.pk).update(locale="ja")
    hana.refresh_from_db()
    template = EmailTemplate.objects.create(
        name="ask", subject="?", html_body='{% load keepers %}{% survey_row "NPS" %}'
    )

    assert "当店を薦めますか？" in email_render(template=template, contact=hana).html
    url = path_of(survey_link(survey, hana, 9, "order:1"))
    assert "当店を薦めますか？" in client.get(url).content.decode()
    thanks = client.post(url, {"score": "9", "comment": ""}).content.decode()
    assert "ありがとうございます！" in thanks
    english = shopper("sam@example.com")
    assert "Would you recommend us?" in email_render(template=template, contact=english).html
