"""{% survey_row "NAME" %} naming no survey is refused when the template is saved, with
the surveys that exist; at send time it renders nothing and logs it
(tests/campaigns/test_surveys.py::test_an_unknown_survey_renders_nothing_and_logs)."""

import pytest

from campaigns.models import EmailTemplate, Survey
from campaigns.services.rendering import template_problems
from tests.campaigns.conftest import template_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def surveys(db):
    Survey.objects.create(name="NPS", kind="nps", question="Recommend us?")
    Survey.objects.create(name="Post-purchase CSAT", kind="csat", question="Happy?", active=False)


def form(html_body: str) -> dict:
    return template_form(name="ask", subject="Hi", html_body=html_body)


def test_an_unknown_survey_is_refused_at_save_naming_the_surveys_that_exist(staff_client, surveys):
    response = staff_client.post(
        "/admin/campaigns/emailtemplate/add/",
        form('{% load keepers %}{% if contact %}{% survey_row "Nsp" %}{% endif %}'),
    )

    page = response.content.decode()
    assert response.status_code == 200 and not EmailTemplate.objects.exists()
    assert "there is no survey named &quot;Nsp&quot;" in page
    assert "(the surveys: &quot;NPS&quot;, &quot;Post-purchase CSAT&quot;;" in page


def test_a_known_survey_saves_switched_off_or_not(staff_client, surveys):
    body = '{% load keepers %}{% survey_row "NPS" %}{% survey_row "Post-purchase CSAT" %}'
    response = staff_client.post("/admin/campaigns/emailtemplate/add/", form(body))
    assert response.status_code == 302
    assert EmailTemplate.objects.get().html_body == body


def test_with_no_survey_at_all_the_message_says_so(db):
    assert template_problems('{% load keepers %}{% survey_row "NPS" ref="x" %}') == [
        '{% survey_row "NPS" %}: there is no survey named "NPS" '
        "(the surveys: none yet; Campaigns › Surveys adds one)."
    ]


def test_a_name_from_a_variable_is_known_only_at_send_time(surveys):
    assert template_problems("{% load keepers %}{% survey_row survey_name %}") == []


def test_a_syntax_error_is_still_reported_first(db):
    assert template_problems("{% if %}")[0].startswith("Template error:")
