"""The admin screens for what staff own: subscription topics, surveys (their answers, CSV
and NPS / CSAT summary), webhook deliveries (retry now) and suppressions (add, lift), as
the role that owns each (crm.services.roles)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group

from campaigns.models import Suppression, Survey, SurveyAnswer, WebhookDelivery
from campaigns.selectors import survey_summary
from campaigns.services.delivery import suppression_create
from crm.models import Topic
from tests.campaigns.conftest import shopper

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def staff(client, django_user_model, role: str):
    user = django_user_model.objects.create_user(role, f"{role}@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


@pytest.fixture
def marketer(client, django_user_model):
    return staff(client, django_user_model, "marketer")


@pytest.fixture
def analyst(client, django_user_model):
    return staff(client, django_user_model, "analyst")


@pytest.fixture
def support(client, django_user_model):
    return staff(client, django_user_model, "support")


def answer(survey, contact, score, at, *, category, comment="", ref="broadcast:1"):
    return SurveyAnswer.objects.create(
        survey=survey,
        contact=contact,
        ref=ref,
        score=score,
        category=category,
        comment=comment,
        answered_at=at,
        updated_at=at,
    )


@pytest.fixture
def nps():
    survey = Survey.objects.create(name="NPS", kind="nps", question="Would you recommend us?")
    people = [shopper(f"p{n}@example.com") for n in range(5)]
    march, april = dt.datetime(2026, 3, 10, 9, tzinfo=UTC), dt.datetime(2026, 4, 2, 9, tzinfo=UTC)
    answer(survey, people[0], 10, march, category="promoter")
    answer(survey, people[1], 9, march, category="promoter")
    answer(survey, people[2], 3, march, category="detractor", comment="=HYPERLINK(x)")
    answer(survey, people[3], 8, april, category="passive")
    answer(survey, people[4], 6, april, category="detractor")
    return survey


# ------------------------------------------------------------------------------------------
# Topics


def test_a_marketer_adds_a_topic_with_its_japanese_name_and_orders_the_list(marketer):
    added = marketer.post(
        "/admin/crm/topic/add/",
        {
            "slug": "beans",
            "name": "New beans",
            "name_ja": "新しい豆",
            "description": "",
            "description_ja": "",
            "is_active": "on",
            "order": "5",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    topic = Topic.objects.get(slug="beans")
    assert (topic.name_ja, topic.default_opt_in, topic.order) == ("新しい豆", False, 5)

    page = marketer.get("/admin/crm/topic/", {"q": "豆"}).content.decode()
    assert "New beans" in page
    assert 'name="form-0-order"' in page  # the order is edited on the list
    # the slug names the consent records: fixed once the topic exists
    change = marketer.get(f"/admin/crm/topic/{topic.pk}/change/").content.decode()
    assert 'name="slug"' not in change


def test_an_analyst_reads_topics_and_surveys_and_adds_neither(analyst, nps):
    Topic.objects.create(slug="news", name="News")
    assert analyst.get("/admin/crm/topic/").status_code == 200
    assert analyst.get("/admin/crm/topic/add/").status_code == 403
    assert analyst.get(f"/admin/campaigns/survey/{nps.pk}/change/").status_code == 200
    assert analyst.get("/admin/campaigns/survey/add/").status_code == 403
    assert analyst.get("/admin/campaigns/surveyanswer/export.csv").status_code == 200


def test_support_has_no_topic_or_survey_screens(support):
    assert support.get("/admin/crm/topic/").status_code == 403
    assert support.get("/admin/campaigns/survey/").status_code == 403


# ------------------------------------------------------------------------------------------
# Surveys


def test_a_marketer_creates_a_survey_in_english_and_japanese(marketer):
    created = marketer.post(
        "/admin/campaigns/survey/add/",
        {
            "name": "Delivery CSAT",
            "kind": "csat",
            "active": "on",
            "question": "How was the delivery?",
            "comment_prompt": "What went wrong?",
            "thanks": "Thanks!",
            "question_ja": "配送はいかがでしたか？",
            "comment_prompt_ja": "",
            "thanks_ja": "ありがとうございます",
        },
    )
    assert created.status_code == 302
    survey = Survey.objects.get(name="Delivery CSAT")
    assert survey.text_in("question", "ja") == "配送はいかがでしたか？"
    assert survey.text_in("comment_prompt", "ja") == "What went wrong?"  # not translated


def test_the_survey_page_shows_nps_with_promoters_passives_and_detractors_per_month(
    marketer, nps, settings
):
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"
    page = marketer.get(f"/admin/campaigns/survey/{nps.pk}/change/").content.decode()

    assert "Net Promoter Score" in page
    assert "<strong>0</strong><span>NPS</span>" in page  # 2 promoters − 2 detractors of 5
    assert "40%</strong><span>promoters (9–10) · 2</span>" in page
    assert "April 2026" in page and "March 2026" in page
    assert page.index("April 2026") < page.index("March 2026")
    # the scale is fixed once there are answers, and answers keep the survey from deletion
    assert 'name="kind"' not in page
    assert marketer.get(f"/admin/campaigns/survey/{nps.pk}/delete/").status_code == 403


def test_the_summary_per_period_counts_each_answer_in_the_period_it_was_given(nps, settings):
    settings.KEEPERS_SHOP_TIME_ZONE = "Europe/Paris"
    summary = survey_summary(survey=nps)

    assert summary["total"] == {
        "answers": 5,
        "promoter": 2,
        "passive": 1,
        "detractor": 2,
        "promoter_pct": 40.0,
        "passive_pct": 20.0,
        "detractor_pct": 40.0,
        "nps": 0,
    }
    assert [(p["start"], p["answers"], p["nps"]) for p in summary["periods"]] == [
        (dt.date(2026, 4, 1), 2, -50),
        (dt.date(2026, 3, 1), 3, 33),
    ]
    weeks = survey_summary(survey=nps, period="week")["periods"]
    assert [w["start"] for w in weeks] == [dt.date(2026, 3, 30), dt.date(2026, 3, 9)]


def test_a_csat_survey_shows_the_share_of_four_and_five(marketer):
    survey = Survey.objects.create(name="CSAT", kind="csat", question="Happy?")
    at = dt.datetime(2026, 5, 5, tzinfo=UTC)
    for n, (score, category) in enumerate([(5, "satisfied"), (4, "satisfied"), (2, "unsatisfied")]):
        answer(survey, shopper(f"c{n}@example.com"), score, at, category=category)

    assert survey_summary(survey=survey)["total"]["csat"] == 66.7
    page = marketer.get(f"/admin/campaigns/survey/{survey.pk}/change/").content.decode()
    assert "66.7%</strong><span>CSAT (4–5)</span>" in page


def test_a_survey_without_answers_says_how_answers_arrive(marketer):
    survey = Survey.objects.create(name="Quiet", kind="nps", question="?")

    page = marketer.get(f"/admin/campaigns/survey/{survey.pk}/change/").content.decode()

    assert "No answers yet." in page and 'survey_row "Quiet"' in page
    assert survey_summary(survey=survey)["total"]["nps"] is None


def test_answers_filter_by_score_and_download_as_csv_with_the_formula_guard(marketer, nps):
    listed = marketer.get("/admin/campaigns/surveyanswer/", {"score": "3"}).content.decode()
    assert "p2@example.com" in listed and "p0@example.com" not in listed
    assert "/admin/campaigns/surveyanswer/export.csv?score=3" in listed

    download = marketer.get("/admin/campaigns/surveyanswer/export.csv", {"category": "detractor"})

    assert download["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[0][:5] == ["answered_at", "updated_at", "survey", "score", "category"]
    assert sorted(r[6] for r in rows[1:]) == ["p2@example.com", "p4@example.com"]
    assert "'=HYPERLINK(x)" in [r[7] for r in rows[1:]]


def test_answers_are_read_only(marketer, nps):
    one = nps.answers.first()
    assert marketer.get("/admin/campaigns/surveyanswer/add/").status_code == 403
    assert (
        marketer.post(f"/admin/campaigns/surveyanswer/{one.pk}/change/", {"score": 0}).status_code
        == 403
    )
    assert marketer.get(f"/admin/campaigns/surveyanswer/{one.pk}/change/").status_code == 200


# ------------------------------------------------------------------------------------------
# Webhook deliveries


@pytest.fixture
def integrator():
    """A local HTTP endpoint standing in for the integrator: accepts every POST."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            body = b'{"received":true,"id":"evt_1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def delivery(url, status="failed", **fields):
    return WebhookDelivery.objects.create(
        url=url,
        payload={"contact": {"email": "a@example.com"}, "kind": "vip"},
        idempotency_key=f"k-{url}-{status}-{WebhookDelivery.objects.count()}",
        attempts=8 if status == "failed" else 1,
        status=status,
        last_status_code=503,
        last_error="HTTP 503",
        created_at=dt.datetime(2026, 3, 1, tzinfo=UTC),
        **fields,
    )


def test_the_log_filters_by_status_and_shows_payload_and_answer(marketer):
    failed = delivery("https://hooks.example.com/a")
    delivery("https://hooks.example.com/b", status="delivered")

    listed = marketer.get("/admin/campaigns/webhookdelivery/", {"status": "failed"})
    page = listed.content.decode()
    assert "hooks.example.com/a" in page and "hooks.example.com/b" not in page
    five = marketer.get("/admin/campaigns/webhookdelivery/", {"answer": "5xx"}).content.decode()
    assert "hooks.example.com/a" in five

    change = marketer.get(f"/admin/campaigns/webhookdelivery/{failed.pk}/change/").content.decode()
    assert "HTTP 503 — HTTP 503" in change
    assert "&quot;kind&quot;: &quot;vip&quot;" in change  # indented JSON


def test_retry_now_asks_then_sends_through_the_delivery_service_and_logs_it(
    marketer, integrator, django_capture_on_commit_callbacks
):
    url, received = integrator
    failed = delivery(url)
    done = delivery(url, status="delivered")
    post = {"action": "retry_now", "_selected_action": [failed.pk, done.pk]}

    asked = marketer.post("/admin/campaigns/webhookdelivery/", post)
    assert asked.status_code == 200 and "Retry now" in asked.content.decode()
    assert received == []

    with django_capture_on_commit_callbacks(execute=True):
        applied = marketer.post(
            "/admin/campaigns/webhookdelivery/", {**post, "apply": "1", "confirm": "on"}
        )

    assert applied.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_status_code) == ("delivered", 9, 200)
    assert failed.last_response == '{"received":true,"id":"evt_1"}'
    page = marketer.get(f"/admin/campaigns/webhookdelivery/{failed.pk}/change/").content.decode()
    assert "&quot;received&quot;: true" in page  # the answer's JSON, indented
    assert len(received) == 1  # the delivered one is not sent again
    logged = LogEntry.objects.get(object_id=str(failed.pk))
    assert logged.change_message == "Retry now: a new try was queued."
    assert not LogEntry.objects.filter(object_id=str(done.pk)).exists()


def test_an_analyst_cannot_retry(analyst):
    failed = delivery("https://hooks.example.com/a")
    answer_ = analyst.post(
        "/admin/campaigns/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [failed.pk], "apply": "1", "confirm": "on"},
    )
    assert answer_.status_code in (200, 302, 403)
    failed.refresh_from_db()
    assert failed.status == "failed" and not LogEntry.objects.exists()


# ------------------------------------------------------------------------------------------
# Suppressions


def test_support_adds_a_suppression_with_a_reason(support):
    added = support.post(
        "/admin/campaigns/suppression/add/",
        {"email": " Ada@Example.com ", "reason": "manual", "detail": "asked by phone, #4411"},
    )

    assert added.status_code == 302
    row = Suppression.objects.get()
    assert (row.email, row.reason, row.detail, row.source) == (
        "ada@example.com",
        "manual",
        "asked by phone, #4411",
        "staff: support",
    )
    assert LogEntry.objects.get(object_id=str(row.pk)).action_flag == 1  # an addition


def test_an_address_already_suppressed_is_refused_with_its_reason(support):
    suppression_create(email="ada@example.com", reason="hard_bounce")

    again = support.post(
        "/admin/campaigns/suppression/add/",
        {"email": "ada@example.com", "reason": "manual", "detail": "x"},
    )

    assert again.status_code == 200
    assert "already suppressed (Hard bounce" in again.content.decode()
    assert Suppression.objects.count() == 1


def test_a_suppression_needs_a_reason_to_be_added(support):
    page = support.post(
        "/admin/campaigns/suppression/add/", {"email": "a@example.com", "reason": "manual"}
    )
    assert page.status_code == 200 and not Suppression.objects.exists()


def test_support_lifts_a_suppression_with_a_reason(support):
    row, _ = suppression_create(email="ada@example.com", reason="complaint")
    post = {"action": "lift", "_selected_action": [row.pk], "apply": "1"}

    refused = support.post("/admin/campaigns/suppression/", {**post, "note": ""})
    assert refused.status_code == 200
    row.refresh_from_db()
    assert row.lifted_at is None

    support.post("/admin/campaigns/suppression/", {**post, "note": "confirmed by email"})
    row.refresh_from_db()
    assert row.lifted_at is not None and row.lift_note == "confirmed by email"
    assert LogEntry.objects.get(object_id=str(row.pk)).change_message == (
        "Lifted: confirmed by email"
    )


def test_a_marketer_sees_suppressions_but_adds_none(marketer):
    assert marketer.get("/admin/campaigns/suppression/").status_code == 200
    assert marketer.get("/admin/campaigns/suppression/add/").status_code == 403


# ------------------------------------------------------------------------------------------
# Queries: the lists and the summary cost the same for 1 answer or delivery and for 30


def queries(client, url: str, **params) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params).status_code == 200
    return len(captured)


def test_the_lists_and_the_summary_take_as_many_queries_for_thirty_as_for_one(marketer, nps):
    survey_page = f"/admin/campaigns/survey/{nps.pk}/change/"
    pages = [
        "/admin/campaigns/surveyanswer/",
        "/admin/campaigns/surveyanswer/export.csv",
        "/admin/campaigns/survey/",
        survey_page,
        "/admin/campaigns/webhookdelivery/",
    ]
    delivery("https://hooks.example.com/0")
    before = [queries(marketer, url) for url in pages]
    at = dt.datetime(2026, 5, 1, tzinfo=UTC)
    for n in range(30):
        answer(nps, shopper(f"more{n}@example.com"), n % 11, at, category="passive")
        delivery(f"https://hooks.example.com/{n + 1}")
    after = [queries(marketer, url) for url in pages]
    assert after == before
