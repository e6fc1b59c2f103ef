"""Segments through the API and the admin: validation, members, static lists, preview."""

import json

import pytest

from crm.models import Contact, Segment, SegmentMembership
from crm.services.contacts import contact_create
from crm.services.segment_library import READY_MADE, segments_install_ready_made
from crm.services.segments import segment_save

pytestmark = pytest.mark.django_db
URL = "/api/v1/segments/"


@pytest.fixture
def people():
    return [
        contact_create(email=f"p{n}@example.com", tags=["vip"] if n < 3 else []) for n in range(6)
    ]


def test_create_a_dynamic_segment_and_read_its_members(
    api, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            URL,
            {"name": "VIP", "rules": {"type": "tag", "op": "has", "value": "vip"}},
            format="json",
        )
    assert response.status_code == 201, response.json()
    segment_id = response.json()["id"]
    assert response.json()["depends_on"] == ["tag"]
    members = api.get(f"{URL}{segment_id}/members/").json()
    assert sorted(m["email"] for m in members["results"]) == [
        "p0@example.com",
        "p1@example.com",
        "p2@example.com",
    ]
    assert api.get(f"{URL}{segment_id}/").json()["member_count"] == 3
    check = api.get(f"{URL}{segment_id}/members/{people[0].pk}/").json()
    assert check["member"] is True and check["entered_at"]
    assert api.get(f"{URL}{segment_id}/members/{people[5].pk}/").json() == {
        "member": False,
        "entered_at": None,
    }


def test_invalid_rules_answer_400_with_the_node_path(api):
    response = api.post(
        URL,
        {"name": "Bad", "rules": {"all": [{"type": "event", "name": "X", "op": "often"}]}},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_rule"
    assert body["details"]["path"] == "rules.all[0].op"
    assert not Segment.objects.exists()


def test_a_cycle_is_refused_through_the_api(api):
    a = segment_save(name="A", rules={"type": "tag", "op": "has", "value": "x"})
    b = segment_save(name="B", rules={"type": "segment", "op": "member", "segment": a.pk})
    response = api.patch(
        f"{URL}{a.pk}/",
        {"rules": {"type": "segment", "op": "member", "segment": b.pk}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "segment_cycle"


def test_static_members_added_and_removed(api, people):
    static = api.post(URL, {"name": "Imported", "kind": "static"}, format="json").json()
    added = api.post(
        f"{URL}{static['id']}/members/",
        {"emails": ["P1@example.com"], "contact_ids": [people[4].pk]},
        format="json",
    )
    assert added.json() == {"added": 2, "member_count": 2}
    removed = api.delete(
        f"{URL}{static['id']}/members/", {"contact_ids": [people[4].pk]}, format="json"
    )
    assert removed.json() == {"removed": 1, "member_count": 1}
    history = api.get(f"{URL}{static['id']}/members/?history=1").json()["results"]
    assert len(history) == 2


def test_members_of_a_dynamic_segment_cannot_be_added_by_hand(api, people):
    dynamic = segment_save(name="VIP", rules={"type": "tag", "op": "has", "value": "vip"})
    response = api.post(
        f"{URL}{dynamic.pk}/members/", {"contact_ids": [people[5].pk]}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "not_static"


def test_preview_counts_without_saving(api, people):
    body = api.post(
        f"{URL}preview/", {"rules": {"type": "tag", "op": "has_not", "value": "vip"}}, format="json"
    ).json()
    assert body["count"] == 3 and len(body["sample"]) == 3
    assert not Segment.objects.exists()


def test_member_list_query_count_is_pinned(api, people, django_assert_max_num_queries):
    static = segment_save(name="All", kind="static")
    from crm.services.segments import segment_members_add

    segment_members_add(segment=static, contact_ids=[p.pk for p in people])
    with django_assert_max_num_queries(4):
        assert len(api.get(f"{URL}{static.pk}/members/").json()["results"]) == 6


def test_ready_made_library_installs_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert segments_install_ready_made(active=True) == 2 * len(READY_MADE)
        assert segments_install_ready_made(active=True) == 0
    names = set(Segment.objects.values_list("name", flat=True))
    assert {
        "VIPs",
        "Cart abandoners",
        "Birthdays this month",
        "RFM: Champions",
        "VIPs (template)",
    } <= names


# --- admin ------------------------------------------------------------------------------
def test_admin_preview_gives_count_and_sample_or_the_error(staff_client, people):
    ok = staff_client.post(
        "/admin/crm/segment/preview/",
        {"rules": json.dumps({"type": "tag", "op": "has", "value": "vip"})},
    )
    assert ok.status_code == 200 and ok.json()["count"] == 3
    bad = staff_client.post(
        "/admin/crm/segment/preview/", {"rules": json.dumps({"type": "colour"})}
    )
    assert bad.status_code == 400 and bad.json()["path"] == "rules.type"


def test_admin_saves_through_the_service_and_refuses_bad_rules(
    staff_client, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/crm/segment/add/",
            {
                "name": "VIP",
                "description": "",
                "kind": "dynamic",
                "is_active": "on",
                "rules": json.dumps({"type": "tag", "op": "has", "value": "vip"}),
            },
        )
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert segment.depends_on == ["tag"] and segment.member_count == 3
    bad = staff_client.post(
        "/admin/crm/segment/add/",
        {"name": "Bad", "kind": "dynamic", "rules": json.dumps({"any": []})},
    )
    assert bad.status_code == 200 and b"rules.any" in bad.content
    page = staff_client.get(f"/admin/crm/segment/{segment.pk}/change/").content.decode()
    assert "rule_builder.js" in page and "3 members, with entry dates" in page
    members = staff_client.get(
        "/admin/crm/segmentmembership/", {"segment__id__exact": segment.pk, "current": "yes"}
    )
    assert members.status_code == 200 and b"p0@example.com" in members.content


def test_admin_says_in_plain_words_that_a_dynamic_segment_needs_a_condition(staff_client):
    empty = staff_client.post(
        "/admin/crm/segment/add/", {"name": "Nothing", "kind": "dynamic", "rules": ""}
    )
    page = empty.content.decode()
    assert empty.status_code == 200 and "Add at least one condition" in page
    assert "JSON object" not in page
    assert not Segment.objects.exists()


def test_admin_embeds_every_condition_description_for_the_builder(staff_client):
    page = staff_client.get("/admin/crm/segment/add/").content.decode()
    document = json.loads(page.split('id="rb-kinds" type="application/json">')[1].split("<")[0])
    assert {k["name"] for k in document["segment_condition"]} >= {"field", "tier", "meddic"}
    assert document["text"]["advanced"] == "Advanced: the rule as JSON"
    assert "stages" in document["sources"]


def test_admin_adds_selected_contacts_to_a_static_segment(staff_client, people):
    static = segment_save(name="Hand-picked", kind="static")
    ids = [str(p.pk) for p in people[:2]]
    response = staff_client.post(
        "/admin/crm/contact/",
        {
            "action": "add_to_static_segment",
            "_selected_action": ids,
            "apply": "1",
            "segment": static.pk,
        },
    )
    assert response.status_code == 302
    assert SegmentMembership.objects.filter(segment=static).count() == 2


def test_admin_static_members_from_csv(staff_client, people):
    from django.core.files.uploadedfile import SimpleUploadedFile

    static = segment_save(name="From CSV", kind="static")
    upload = SimpleUploadedFile("m.csv", b"email\np3@example.com\nnobody@example.com\n")
    staff_client.post(f"/admin/crm/segment/{static.pk}/import-members/", {"file": upload})
    assert list(
        SegmentMembership.objects.filter(segment=static).values_list("contact__email", flat=True)
    ) == ["p3@example.com"]


def test_size_chart_renders_as_svg(staff_client, people):
    from datetime import date, timedelta

    from crm.models import SegmentSnapshot

    segment = segment_save(name="Sized", rules={"type": "tag", "op": "has", "value": "vip"})
    for day in range(5):
        SegmentSnapshot.objects.create(
            segment=segment, day=date(2026, 1, 1) + timedelta(days=day), size=day * 10
        )
    page = staff_client.get(f"/admin/crm/segment/{segment.pk}/change/").content.decode()
    assert "<svg" in page and "polyline" in page
    assert Contact.objects.count() == 6
