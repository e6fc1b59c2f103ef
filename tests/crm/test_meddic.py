"""MEDDIC entered per criterion (confirmed / partly / unknown for each of the six), the
0–100 score and the number confirmed derived from them: the service, the API (the old
numeric shape still works), the contact's admin page, and segments on "N of 6 confirmed"."""

from __future__ import annotations

import pytest

from crm.errors import KeepersError
from crm.models import MEDDIC_CRITERIA, Contact, LeadScorecard
from crm.rules import compile_rules
from crm.services.meddic import (
    scorecard_changes_clean,
    scorecard_confirmed,
    scorecard_criteria,
    scorecard_update,
)
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
CRITERIA = [name for name, _label in MEDDIC_CRITERIA]


def qualify(contact: Contact, *confirmed: str, partly: tuple[str, ...] = ()) -> LeadScorecard:
    changes = {f"{c}_status": "confirmed" for c in confirmed} | {
        f"{c}_status": "partly" for c in partly
    }
    return scorecard_update(contact=contact, changes=scorecard_changes_clean(changes), via="test")


def test_each_criterion_takes_a_word_and_the_score_follows():
    assert scorecard_changes_clean(
        {"criteria": {"metrics": "confirmed", "champion": "Partly"}, "metrics_note": " ROI "}
    ) == {"metrics_status": 2, "champion_status": 1, "metrics_note": "ROI"}
    assert scorecard_changes_clean(
        {"decision_process_status": "unknown", "identified_pain_status": "PARTIAL"}
    ) == {"decision_process_status": 0, "identified_pain_status": 1}
    card = qualify(
        ContactFactory(), "metrics", "economic_buyer", "champion", partly=("identified_pain",)
    )
    assert scorecard_confirmed(card) == 3
    assert card.score == round(100 * 7 / 12)
    assert scorecard_criteria(card) == {
        "metrics": "confirmed",
        "economic_buyer": "confirmed",
        "decision_criteria": "unknown",
        "decision_process": "unknown",
        "identified_pain": "partly",
        "champion": "confirmed",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"criteria": {"budget": "confirmed"}}, "criteria.budget"),
        ({"criteria": {"metrics": "maybe"}}, "criteria.metrics"),
        ({"criteria": ["metrics"]}, "criteria"),
        ({"champion_status": True}, "champion_status"),
        ({"score": 90}, "score"),
    ],
)
def test_a_status_that_is_not_one_of_the_three_is_refused_with_its_field(changes, field):
    with pytest.raises(KeepersError) as error:
        scorecard_changes_clean(changes)
    assert error.value.field == field


def test_the_api_takes_criteria_in_words_and_still_reads_the_score(api):
    contact = ContactFactory()
    url = f"/api/v1/contacts/{contact.pk}/meddic/"
    empty = api.get(url).json()
    assert (empty["score"], empty["confirmed"]) == (0, 0)
    assert set(empty["criteria"].values()) == {"unknown"}
    response = api.patch(
        url,
        {
            "criteria": {c: "confirmed" for c in CRITERIA[:4]} | {"champion": "partly"},
            "champion_note": "Head of ops",
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["confirmed"] == 4 and body["score"] == round(100 * 9 / 12)
    assert body["criteria"]["champion"] == "partly" and body["champion_status"] == 1
    assert body["metrics_status"] == 2 and body["champion_note"] == "Head of ops"
    old_style = api.patch(url, {"identified_pain_status": 2}, format="json").json()
    assert old_style["confirmed"] == 5 and old_style["criteria"]["identified_pain"] == "confirmed"
    bad = api.patch(url, {"criteria": {"metrics": "sure"}}, format="json")
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "criteria.metrics"


def test_the_contact_page_enters_each_criterion_and_shows_how_many_are_confirmed(staff_client):
    contact = ContactFactory(email="lead@example.com")
    page = staff_client.get(f"/admin/crm/contact/{contact.pk}/change/").content.decode()
    for name in CRITERIA:
        assert f'name="scorecard-0-{name}_status" value="2"' in page  # confirmed, a radio
    assert "Partly" in page
    data = {
        "email": "lead@example.com",
        "external_id": "",
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "phone": "",
        "locale": "",
        "timezone": contact.timezone,
        "birthday": "",
        "attributes": "{}",
        "source": "",
        "channel": "",
        "scorecard-TOTAL_FORMS": "1",
        "scorecard-INITIAL_FORMS": "0",
        "scorecard-MIN_NUM_FORMS": "0",
        "scorecard-MAX_NUM_FORMS": "1",
        "scorecard-0-contact": str(contact.pk),
    }
    for k, name in enumerate(CRITERIA):
        data[f"scorecard-0-{name}_status"] = "2" if k < 4 else "1"
        data[f"scorecard-0-{name}_note"] = ""
    response = staff_client.post(f"/admin/crm/contact/{contact.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    card = LeadScorecard.objects.get(contact=contact)
    assert scorecard_confirmed(card) == 4 and card.score == round(100 * 10 / 12)
    page = staff_client.get(f"/admin/crm/contact/{contact.pk}/change/").content.decode()
    assert "4 of 6" in page


def test_a_segment_on_at_least_four_of_six_confirmed():
    four = ContactFactory(email="four@example.com")
    three = ContactFactory(email="three@example.com")
    ContactFactory(email="none@example.com")  # no scorecard: none confirmed
    qualify(four, *CRITERIA[:4])
    qualify(three, *CRITERIA[:3], partly=tuple(CRITERIA[3:]))  # a higher score, fewer confirmed

    def who(rule):
        q = compile_rules(rule).q
        return sorted(Contact.objects.filter(q).values_list("email", flat=True))

    assert who({"type": "meddic", "measure": "confirmed", "op": "gte", "value": 4}) == [
        "four@example.com"
    ]
    assert who({"type": "meddic", "measure": "confirmed", "op": "lt", "value": 4}) == [
        "none@example.com",
        "three@example.com",
    ]
    assert who({"type": "meddic", "measure": "confirmed", "op": "eq", "value": 0}) == [
        "none@example.com"
    ]
    assert who({"type": "meddic", "op": "gte", "value": 70}) == ["three@example.com"]  # the score
    with pytest.raises(KeepersError):
        compile_rules({"type": "meddic", "measure": "confirmed", "op": "gte", "value": 7})
