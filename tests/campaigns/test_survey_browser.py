"""The survey page in headless Chromium, opened from a score in a rendered email."""

import os
import re

import pytest
from django.test import override_settings

from campaigns.models import EmailTemplate, Survey, SurveyAnswer
from campaigns.services.rendering import email_render
from crm.models import Event
from tests.campaigns.conftest import shopper

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_score_clicked_in_an_email_then_a_comment(live_server, browser_page, tmp_path):
    Survey.objects.create(
        name="NPS",
        kind="nps",
        question="How likely are you to recommend us to a friend?",
        comment_prompt="What is the main reason for your score? (optional)",
        thanks="Thank you! Your answer helps us roast better coffee.",
    )
    template = EmailTemplate.objects.create(
        name="nps-ask",
        subject="One quick question",
        html_body='<h1>How are we doing?</h1>{% load keepers %}{% survey_row "NPS" %}',
    )
    contact = shopper("chromium@example.com")
    with override_settings(KEEPERS_PUBLIC_URL=live_server.url):
        html = email_render(template=template, contact=contact).html
    links = re.findall(r'href="([^"]+/s/[^"]+/)"', html)
    assert len(links) == 11
    page = browser_page

    # the reader clicks "7" in the email
    page.goto(links[7])

    assert page.locator("h1").inner_text() == "Thanks — anything to add?"
    assert "We recorded your answer: 7 out of 10." in page.get_by_role("status").inner_text()
    assert page.get_by_label("7 out of 10").is_checked()
    answer = SurveyAnswer.objects.get()
    assert (answer.score, answer.category) == (7, "passive")

    # a second thought: 8, and a comment, keyboard-friendly form
    page.get_by_label("8 out of 10").check()
    page.get_by_label("What is the main reason for your score? (optional)").fill(
        "Great beans, slow shipping."
    )
    shots = os.environ.get("KEEPERS_SCREENSHOT_DIR", str(tmp_path))
    page.screenshot(path=f"{shots}/survey.png", full_page=True)
    page.get_by_role("button", name="Send").click()

    assert page.locator("h1").inner_text() == "Thank you!"
    assert "Your answer helps us roast better coffee." in page.get_by_role("status").inner_text()
    answer.refresh_from_db()
    assert (answer.score, answer.comment) == (8, "Great beans, slow shipping.")
    assert [
        e["score"]
        for e in Event.objects.filter(name="Survey Answered")
        .order_by("pk")
        .values_list("properties", flat=True)
    ] == [7, 8]
