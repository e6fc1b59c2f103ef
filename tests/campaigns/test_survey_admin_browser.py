"""The survey's page in the admin, in headless Chromium: the NPS summary over real
answers, laid out without overlaps and with the numbers right-aligned in their columns
(under the page's Content-Security-Policy). With KEEPERS_SCREENSHOT_DIR set, it saves the
screenshot docs/survey-screen.png is made from (1280×800)."""

import datetime as dt
import itertools
import os
import random
from pathlib import Path

import pytest

from campaigns.models import Survey, SurveyAnswer
from campaigns.services.surveys import survey_category
from crm.services.contacts import contact_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COMMENTS = [
    "Great beans, fast delivery",
    "The grinder arrived broken",
    "",
    "Love the Ethiopian roast",
    "",
    "Too expensive for me",
]


def answers_over_six_months(survey: Survey) -> None:
    """About 40 answers a month, a shop improving month by month (fixed seed)."""
    rng = random.Random(16)
    n = 0
    for month in range(6):
        start = dt.datetime(2026, 6 + month, 1, 9, tzinfo=dt.UTC)
        for _ in range(30 + rng.randrange(20)):
            n += 1
            contact = contact_create(email=f"customer{n}@example.com", first_name=f"C{n}")
            weights = [1] * 7 + [2, 2] + [2 + month, 2 + month]  # more promoters later
            score = rng.choices(range(11), weights=weights)[0]
            at = start + dt.timedelta(days=rng.randrange(28), hours=rng.randrange(10))
            SurveyAnswer.objects.create(
                survey=survey,
                contact=contact,
                ref=f"order:{n}",
                score=score,
                category=survey_category(survey.kind, score),
                comment=rng.choice(COMMENTS),
                answered_at=at,
                updated_at=at,
            )


def test_the_nps_summary_reads_clearly(live_server, browser_page, django_user_model, settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    survey = Survey.objects.create(
        name="NPS",
        kind="nps",
        question="How likely are you to recommend us to a friend?",
        question_ja="友人に当店を薦める可能性はどのくらいありますか？",
        comment_prompt="What is the main reason for your score? (optional)",
        thanks="Thank you! Your answer helps us roast better coffee.",
    )
    answers_over_six_months(survey)
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/campaigns/survey/{survey.pk}/change/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-tests")
    page.click("input[type=submit]")
    page.wait_for_selector("#kp-survey-summary")

    figures = [figure.bounding_box() for figure in page.locator(".kp-figures li").all()]
    assert len(figures) == 5
    for a, b in itertools.pairwise(figures):  # side by side, not on each other
        assert a["x"] + a["width"] <= b["x"] or a["y"] + a["height"] <= b["y"]
    rows = page.locator("#kp-survey-summary tbody tr")
    assert rows.count() == 6
    for column in range(2, 7):  # each figure's column: right edges aligned
        cells = page.locator(f"#kp-survey-summary tr > :nth-child({column}).kp-num").all()
        rights = {round(c.bounding_box()["x"] + c.bounding_box()["width"]) for c in cells}
        assert len(rights) == 1, (column, rights)
        assert {c.evaluate("e => getComputedStyle(e).textAlign") for c in cells} == {"right"}
    assert page.locator("#kp-survey-summary").get_by_text("Download answers (CSV)").is_visible()

    folder = os.environ.get("KEEPERS_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / "survey-screen.png"))
