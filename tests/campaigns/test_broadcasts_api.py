"""The broadcasts API: drafts, preview, schedule, pause/resume/cancel, stats; bad input
answered with a 400 naming the field."""

import datetime as dt

import pytest
import time_machine

from campaigns.models import Broadcast, EmailTemplate
from campaigns.services.broadcasts import broadcasts_tick
from crm.models import Topic
from tests.campaigns.test_broadcasts import audience

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 9, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def newsletter(db):
    Topic.objects.create(slug="newsletter", name="Newsletter")
    return EmailTemplate.objects.create(
        name="newsletter", subject="News", html_body="<p>Hi {{ first_name }}</p>"
    )


def body(segment, **extra):
    return {
        "name": "March news",
        "template": "newsletter",
        "segment": segment.pk,
        "send_date": "2026-03-10",
        "send_time": "09:00",
        "timing": "local",
        **extra,
    }


def test_a_broadcast_is_drafted_previewed_scheduled_and_read(api, newsletter):
    segment = audience(30, ["Europe/Paris", "America/New_York", "Asia/Tokyo"])

    created = api.post("/api/v1/broadcasts/", body(segment), format="json")
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert created.json()["status"] == "draft"

    preview = api.get(f"/api/v1/broadcasts/{pk}/preview/").json()
    assert preview["count"] == 30
    assert [w["contacts"] for w in preview["waves"]] == [10, 10, 10]

    edited = api.patch(f"/api/v1/broadcasts/{pk}/", {"send_time": "10:00"}, format="json")
    assert edited.json()["send_time"] == "10:00:00"
    scheduled = api.post(f"/api/v1/broadcasts/{pk}/schedule/")
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    refused = api.patch(f"/api/v1/broadcasts/{pk}/", {"name": "x"}, format="json")
    assert refused.status_code == 409

    with time_machine.travel(dt.datetime(2026, 3, 10, 1, 30, tzinfo=dt.UTC), tick=False):
        broadcasts_tick()  # Tokyo's 10:00
    stats = api.get(f"/api/v1/broadcasts/{pk}/stats/").json()
    assert stats["status"] == "sending"
    assert stats["progress"]["remaining"] == 20
    assert stats["progress"]["queued"] == 10

    assert api.post(f"/api/v1/broadcasts/{pk}/pause/").json()["status"] == "paused"
    assert api.post(f"/api/v1/broadcasts/{pk}/resume/").json()["status"] == "sending"
    assert api.post(f"/api/v1/broadcasts/{pk}/cancel/").json()["status"] == "cancelled"
    again = api.post(f"/api/v1/broadcasts/{pk}/cancel/")
    assert again.status_code == 409
    assert again.json()["message"] == "A cancelled broadcast cannot be cancelled."
    listed = api.get("/api/v1/broadcasts/?status=cancelled").json()
    assert [b["id"] for b in listed["results"]] == [pk]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"template": "nope"}, "template"),
        ({"send_time": "25:00"}, "send_time"),
        ({"timing": "whenever"}, "timing"),
        ({"topic": "newsletter"}, "segment"),  # both a segment and a topic
        ({"ab_percent": 10}, "subject_b"),
        ({"subject_b": "B", "ab_percent": 1}, "ab_percent"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, newsletter, change, field):
    segment = audience(1, ["Europe/Paris"])

    response = api.post("/api/v1/broadcasts/", body(segment, **change), format="json")

    assert response.status_code == 400, response.json()
    assert response.json()["details"]["field"] == field


def test_scheduling_without_an_audience_names_it(api, newsletter):
    created = api.post(
        "/api/v1/broadcasts/",
        {"name": "x", "template": "newsletter", "send_date": "2026-03-10", "send_time": "09:00"},
        format="json",
    ).json()

    response = api.post(f"/api/v1/broadcasts/{created['id']}/schedule/")

    assert response.status_code == 400
    assert response.json()["details"] == {"field": "segment"}


def test_a_read_only_key_reads_but_cannot_schedule(read_api, newsletter):
    segment = audience(1, ["Europe/Paris"])
    broadcast = Broadcast.objects.create(
        name="x", template=newsletter, segment=segment, send_date=NOW.date(), send_time=dt.time(9)
    )

    assert read_api.get(f"/api/v1/broadcasts/{broadcast.pk}/").status_code == 200
    assert read_api.post(f"/api/v1/broadcasts/{broadcast.pk}/schedule/").status_code == 403
