"""The API for what staff own: topics, surveys (answers, summary), suppressions (add,
lift) and webhook deliveries (retry), with API-key scopes and the common error shape."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.models import Suppression, Survey, WebhookDelivery
from campaigns.services.delivery import suppression_create
from crm.models import Topic
from tests.campaigns.conftest import shopper
from tests.campaigns.test_settings_admin import answer, delivery, integrator  # noqa: F401

pytestmark = pytest.mark.django_db
UTC = dt.UTC


# ------------------------------------------------------------------------------------------
# Topics


def test_topics_are_created_listed_in_order_and_updated(api):
    created = api.post(
        "/api/v1/topics/",
        {"slug": "beans", "name": "New beans", "name_ja": "新しい豆", "order": 2},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["default_opt_in"] is True
    api.post("/api/v1/topics/", {"slug": "news", "name": "News", "order": 1}, format="json")

    listed = api.get("/api/v1/topics/").json()["results"]
    assert {t["slug"] for t in listed} == {"beans", "news"}

    pk = created.json()["id"]
    changed = api.patch(f"/api/v1/topics/{pk}/", {"default_opt_in": False}, format="json")
    assert changed.status_code == 200 and changed.json()["default_opt_in"] is False
    assert Topic.objects.get(pk=pk).default_opt_in is False


def test_a_topics_slug_is_fixed_and_unique(api):
    topic = Topic.objects.create(slug="news", name="News")
    moved = api.patch(f"/api/v1/topics/{topic.pk}/", {"slug": "other"}, format="json")
    assert moved.status_code == 400
    assert moved.json()["details"]["field"] == "slug"
    taken = api.post("/api/v1/topics/", {"slug": "news", "name": "Again"}, format="json")
    assert taken.status_code == 400 and set(taken.json()) == {"code", "message", "details"}


def test_a_read_key_reads_topics_and_writes_none(read_api):
    Topic.objects.create(slug="news", name="News")
    assert read_api.get("/api/v1/topics/").status_code == 200
    refused = read_api.post("/api/v1/topics/", {"slug": "x", "name": "X"}, format="json")
    assert refused.status_code == 403


# ------------------------------------------------------------------------------------------
# Surveys


@pytest.fixture
def nps(db):
    survey = Survey.objects.create(name="NPS", kind="nps", question="Recommend us?")
    at = dt.datetime(2026, 3, 10, 9, tzinfo=UTC)
    for n, (score, category) in enumerate([(10, "promoter"), (9, "promoter"), (4, "detractor")]):
        answer(survey, shopper(f"a{n}@example.com"), score, at, category=category)
    return survey


def test_a_survey_is_created_in_two_languages_and_updated(api):
    created = api.post(
        "/api/v1/surveys/",
        {
            "name": "Delivery",
            "kind": "csat",
            "question": "How was the delivery?",
            "question_ja": "配送はいかがでしたか？",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["answers"] == 0
    pk = created.json()["id"]
    changed = api.patch(f"/api/v1/surveys/{pk}/", {"active": False}, format="json")
    assert changed.status_code == 200 and changed.json()["active"] is False


def test_a_surveys_scale_is_fixed_once_it_has_answers(api, nps):
    refused = api.patch(f"/api/v1/surveys/{nps.pk}/", {"kind": "csat"}, format="json")
    assert refused.status_code == 400 and refused.json()["details"]["field"] == "kind"


def test_answers_are_listed_and_filtered_by_score_and_category(api, nps):
    every = api.get(f"/api/v1/surveys/{nps.pk}/answers/").json()["results"]
    assert sorted(a["score"] for a in every) == [4, 9, 10]
    tens = api.get(f"/api/v1/surveys/{nps.pk}/answers/", {"score": 10}).json()["results"]
    assert [a["email"] for a in tens] == ["a0@example.com"]
    detractors = api.get(f"/api/v1/surveys/{nps.pk}/answers/", {"category": "detractor"})
    assert [a["score"] for a in detractors.json()["results"]] == [4]
    bad = api.get(f"/api/v1/surveys/{nps.pk}/answers/", {"score": "x"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "score"


def test_the_summary_gives_nps_per_period(api, nps):
    summary = api.get(f"/api/v1/surveys/{nps.pk}/summary/").json()

    assert summary["total"]["nps"] == 33 and summary["total"]["promoter"] == 2
    assert summary["periods"][0]["start"] == "2026-03-01"
    assert api.get(f"/api/v1/surveys/{nps.pk}/summary/", {"period": "day"}).status_code == 400


# ------------------------------------------------------------------------------------------
# Suppressions


def test_a_suppression_is_added_once_and_listed(api):
    body = {"email": "Ada@Example.com", "detail": "asked by email"}
    added = api.post("/api/v1/suppressions/", body, format="json")
    assert added.status_code == 201
    assert (added.json()["email"], added.json()["reason"], added.json()["active"]) == (
        "ada@example.com",
        "manual",
        True,
    )
    assert added.json()["source"] == "api: tests"
    again = api.post("/api/v1/suppressions/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == added.json()["id"]
    assert api.get("/api/v1/suppressions/", {"active": "true"}).json()["results"][0]["email"] == (
        "ada@example.com"
    )


def test_a_suppression_needs_why(api):
    refused = api.post("/api/v1/suppressions/", {"email": "a@example.com"}, format="json")
    assert refused.status_code == 400 and refused.json()["details"]["field"] == "detail"


def test_a_suppression_is_lifted_with_a_note_once(api):
    row, _ = suppression_create(email="ada@example.com", reason="complaint")
    url = f"/api/v1/suppressions/{row.pk}/lift/"

    assert api.post(url, {}, format="json").status_code == 400
    lifted = api.post(url, {"note": "confirmed by phone"}, format="json")
    assert lifted.status_code == 200 and lifted.json()["active"] is False
    assert Suppression.objects.get().lift_note == "confirmed by phone (API key tests)"
    again = api.post(url, {"note": "twice"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert api.get("/api/v1/suppressions/", {"active": "false"}).json()["results"]


# ------------------------------------------------------------------------------------------
# Webhook deliveries


def test_deliveries_are_listed_by_status_and_read(api):
    failed = delivery("https://hooks.example.com/a")
    delivery("https://hooks.example.com/b", status="delivered")

    listed = api.get("/api/v1/webhook-deliveries/", {"status": "failed"}).json()["results"]
    assert [d["id"] for d in listed] == [failed.pk]
    one = api.get(f"/api/v1/webhook-deliveries/{failed.pk}/").json()
    assert one["payload"] == {"contact": {"email": "a@example.com"}, "kind": "vip"}
    assert (one["last_status_code"], one["attempts"]) == (503, 8)


def test_retry_sends_a_failed_delivery_again_and_refuses_a_delivered_one(
    api,
    integrator,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    url, received = integrator
    failed, done = delivery(url), delivery(url, status="delivered")

    with django_capture_on_commit_callbacks(execute=True):
        retried = api.post(f"/api/v1/webhook-deliveries/{failed.pk}/retry/")

    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    failed.refresh_from_db()
    assert failed.status == "delivered" and len(received) == 1
    refused = api.post(f"/api/v1/webhook-deliveries/{done.pk}/retry/")
    assert refused.status_code == 409 and refused.json()["code"] == "conflict"
    assert WebhookDelivery.objects.get(pk=done.pk).attempts == 1


def test_a_read_key_cannot_retry(read_api):
    failed = delivery("https://hooks.example.com/a")
    assert read_api.post(f"/api/v1/webhook-deliveries/{failed.pk}/retry/").status_code == 403
    assert read_api.get("/api/v1/webhook-deliveries/").status_code == 200
