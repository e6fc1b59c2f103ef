"""The starter library: every starter compiles, installs as a block template with a
Japanese variant, and renders through the engine's renderer for a demo contact in English
and in Japanese with nothing left unresolved and the demo catalog in its product grid."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from campaigns.email_blocks import FOOTER_CLASS
from campaigns.mjml import mjml_problems
from campaigns.models import EmailTemplate, Survey
from campaigns.playbooks import SURVEYS
from campaigns.services.quality import rendered_warnings
from campaigns.services.rendering import email_render
from campaigns.starters import JA_NAME, starter_install, starter_sample, starters
from crm.errors import KeepersError
from crm.models import Contact, Event, Product
from crm.services.demo import demo_seed
from crm.services.recommendations import Recommender, recommendations_refresh

pytestmark = pytest.mark.django_db

UNRESOLVED = re.compile(r"\{\{|\{%|\{#|%\}|\}\}")
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@pytest.fixture
def demo_shop(db):
    """The demo shop (catalog, orders, bestsellers) with its surveys; an English and a
    Japanese demo customer."""
    demo_seed(contacts=40)
    recommendations_refresh()  # the nightly bestsellers and co-purchases
    for spec in SURVEYS:
        Survey.objects.get_or_create(
            name=spec["name"], defaults={k: v for k, v in spec.items() if k != "name"}
        )
    english, japanese = Contact.objects.filter(source="demo").order_by("pk")[:2]
    english.locale = "en-US"
    english.save(update_fields=["locale"])
    japanese.locale = "ja-JP"
    japanese.last_name = "佐藤"
    japanese.save(update_fields=["locale", "last_name"])
    return english, japanese


def render(template: EmailTemplate, key: str, contact: Contact):
    """The email as a send step renders it, with the starter's sample event and context."""
    sample = starter_sample(key)
    event = None
    if sample["event"]:
        name, properties = sample["event"]
        event = Event(contact=contact, name=name, properties=properties, occurred_at=timezone.now())
    extra = {k: v for k, v in sample.items() if k != "event"}
    return email_render(
        template=template,
        contact=contact,
        event=event,
        extra={**extra, "recommender": Recommender([contact]), "step_id": "starter"},
    )


def test_the_library_has_every_playbook_email():
    keys = [s.key for s in starters()]
    assert len(keys) == len(set(keys))
    for key in (
        "welcome",
        "browse-abandonment",
        "cart-reminder",
        "cart-discount",
        "order-thanks",
        "review-request",
        "win-back",
        "birthday",
        "back-in-stock",
        "price-drop",
        "credit-reminder",
        "referral-reward",
        "nps",
        "survey-detractor",
        "survey-promoter",
        "re-engagement",
        "re-engagement-last",
        "newsletter",
    ):
        assert key in keys
    for starter in starters():
        for source in (starter.mjml, starter.mjml_ja):
            assert mjml_problems(source) == [], starter.key
        assert FOOTER_CLASS in starter.mjml and FOOTER_CLASS in starter.mjml_ja
        for field in ("subject_ja", "preheader_ja", "mjml_ja", "text_body_ja"):
            assert JAPANESE.search(getattr(starter, field)), (starter.key, field)
        assert 'lang="ja"' in starter.mjml_ja and 'lang="en"' in starter.mjml


def test_every_starter_renders_for_a_demo_contact_in_english_and_japanese(demo_shop):
    english, japanese = demo_shop
    assert Product.objects.exists()
    for starter in starters():
        template = starter_install(key=starter.key)
        assert template.format == EmailTemplate.Format.MJML and template.html_body
        assert template.variants.get().language == "ja"
        for contact, language in ((english, "en"), (japanese, "ja")):
            where = f"{starter.key} ({language})"
            email = render(template, starter.key, contact)
            for part in (email.subject, email.html, email.text):
                assert not UNRESOLVED.search(part), (where, UNRESOLVED.search(part))
            assert f'lang="{language}"' in email.html, where
            assert bool(JAPANESE.search(email.subject)) == (language == "ja"), where
            if "keepers-products" in starter.mjml:
                grid = email.html.split('class="keepers-products"', 1)[1]
                assert "https://shop.example.com/p/SKU-" in grid, where
            if "keepers-items" in starter.mjml:
                assert "Morning Blend beans 1kg" in email.html, where
            if "survey_row" in starter.mjml:
                assert 'class="survey-row"' in email.html, where
            if starter.category == EmailTemplate.Category.MARKETING:
                assert "/u/" in email.html and "/u/" in email.text, where
        if JA_NAME in starter.mjml_ja:  # the surname and 様, as a Japanese shop writes
            assert "佐藤様" in render(template, starter.key, japanese).html, starter.key


def test_a_starter_shows_its_sample_data(demo_shop):
    english, japanese = demo_shop
    template = starter_install(key="cart-discount")
    assert "CART-7QX2M" in render(template, "cart-discount", english).html
    template = starter_install(key="credit-reminder")
    assert "16 March 2026" in render(template, "credit-reminder", english).html
    assert "2026年3月16日" in render(template, "credit-reminder", japanese).html


def test_installing_a_starter_twice_makes_a_second_template():
    first = starter_install(key="birthday")
    second = starter_install(key="birthday")
    named = starter_install(key="birthday", name="Birthday 2027")
    assert (first.name, second.name, named.name) == ("Birthday", "Birthday 2", "Birthday 2027")
    with pytest.raises(KeepersError) as taken:
        starter_install(key="birthday", name="Birthday")
    assert taken.value.field == "name"
    with pytest.raises(KeepersError) as unknown:
        starter_install(key="no-such-starter")
    assert unknown.value.field == "key"


@override_settings(KEEPERS_PUBLIC_URL="https://keep.example")  # links are https in production
def test_every_starter_passes_the_quality_checks_in_both_languages(demo_shop):
    english, japanese = demo_shop
    for starter in starters():
        template = starter_install(key=starter.key)
        for contact in (english, japanese):
            # the clock held: a signed link carries the second it was signed in, and the
            # check signs the unsubscribe address again to look for it
            with time_machine.travel(timezone.now(), tick=False):
                email = render(template, starter.key, contact)
                found = [(w.code, w.place) for w in rendered_warnings(template, contact, email)]
            assert found == [], (starter.key, contact.locale, found)
