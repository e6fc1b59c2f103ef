"""The authoring API (issue 16): email templates (CRUD, in-use refusals, preview with a
sample event, rate-limited test sends) and campaign drafts from creation to archive,
through the services the admin calls."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign, Enrollment
from crm.services.contacts import Identity
from crm.services.events import EventIn, events_ingest
from tests.campaigns.conftest import T0, shopper, track

pytestmark = pytest.mark.django_db

CART_HTML = (
    "<p>Hi {{ first_name }}</p>{% for item in event.properties.items %}"
    "<p>{{ item.name }} × {{ item.quantity }}</p>{% endfor %}"
    "{% if event.properties.coupon %}<p>Code {{ event.properties.coupon }}</p>{% endif %}"
)


@pytest.fixture(autouse=True)
def _limits():
    cache.clear()  # the rate limits count in the cache
    yield
    cache.clear()


def _template(api, **fields):
    body = {"name": "cart", "subject": "Your cart, {{ first_name }}", "html_body": CART_HTML}
    response = api.post("/api/v1/email-templates/", {**body, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_template_crud(api, read_api):
    made = _template(api, subject="{{ first_name }}, your cart")
    # the length is the subject as a contact reads it, not its tags
    assert made["subject_length"] == len("Alex, your cart")
    url = f"/api/v1/email-templates/{made['id']}/"
    assert read_api.get(url).json()["name"] == "cart"
    assert [t["name"] for t in read_api.get("/api/v1/email-templates/").json()["results"]] == [
        "cart"
    ]
    changed = api.patch(url, {"subject": "Still thinking?"}, format="json")
    assert changed.status_code == 200 and changed.json()["subject"] == "Still thinking?"
    broken = api.patch(url, {"html_body": "{% for %}"}, format="json")
    assert broken.status_code == 400 and broken.json()["details"]["field"] == "html_body"
    # the admin form's check: a survey row naming no survey is a typo to fix, here too
    typo = api.patch(url, {"html_body": '{% load keepers %}{% survey_row "Nsp" %}'}, format="json")
    assert typo.status_code == 400 and "no survey named" in typo.json()["message"]
    assert read_api.patch(url, {"subject": "x"}, format="json").status_code == 403
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_a_template_a_campaign_uses_is_not_deleted_nor_renamed(api):
    made = _template(api)
    api.post(
        "/api/v1/campaigns/",
        {
            "name": "Cart",
            "trigger": {"type": "event", "name": "Checkout Started"},
            "steps": [{"id": "send", "type": "send_email", "config": {"template": "cart"}}],
        },
        format="json",
    )
    url = f"/api/v1/email-templates/{made['id']}/"
    refused = api.delete(url)
    assert refused.status_code == 409, refused.json()
    assert refused.json()["code"] == "template_in_use"
    assert refused.json()["details"]["used_by"] == ["campaign 'Cart'"]
    assert api.patch(url, {"name": "other"}, format="json").status_code == 409
    assert api.patch(url, {"subject": "New"}, format="json").status_code == 200


def test_preview_with_the_contacts_last_cart_shows_its_items(api, read_api):
    contact = shopper("cart@example.com", first_name="Cy")
    track(
        "cart@example.com",
        "Checkout Started",
        T0,
        "c1",
        cart_id="k1",
        products=[{"product_id": "p1", "name": "Mug", "quantity": 2}],
    )
    made = _template(api)
    url = f"/api/v1/email-templates/{made['id']}/preview/"
    # a read-only key may preview: it sends nothing
    response = read_api.post(url, {"contact_id": contact.pk, "sample": "cart"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["subject"] == "Your cart, Cy" and body["subject_length"] == 13
    assert "Mug × 2" in body["html"] and "Mug × 2" in body["text"]
    assert body["event"]["name"] == "Checkout Started"
    # typed properties over the sample: a coupon email previews with its code
    typed = read_api.post(
        url,
        {"email": "cart@example.com", "sample": "cart", "properties": {"coupon": "SAVE10"}},
        format="json",
    )
    assert "Code SAVE10" in typed.json()["html"] and "Mug × 2" in typed.json()["html"]
    assert read_api.post(url, {"contact_id": contact.pk}, format="json").json()["event"] is None
    assert mail.outbox == []


def test_a_cart_of_product_added_events_previews_every_item(api):
    contact = shopper("added@example.com")
    track("added@example.com", "Order Completed", T0, "o1", order_id="o1")
    _added("added@example.com", T0.replace(hour=10), "a1", "Old")
    track("added@example.com", "Checkout Started", T0.replace(hour=11), "c1", products=[])
    _added("added@example.com", T0.replace(hour=12), "a2", "Cup")
    _added("added@example.com", T0.replace(hour=13), "a3", "Pot")
    made = _template(api)
    html = api.post(
        f"/api/v1/email-templates/{made['id']}/preview/",
        {"contact_id": contact.pk, "sample": "cart"},
        format="json",
    ).json()["html"]
    assert html.index("Cup") < html.index("Pot") and "Old" not in html


def _added(email: str, at, message_id: str, product: str) -> None:
    events_ingest(
        [
            EventIn(
                name="Product Added",
                identity=Identity(email=email),
                properties={"product_id": product.lower(), "name": product},
                occurred_at=at,
                message_id=message_id,
            )
        ]
    )


def test_preview_errors(api):
    contact = shopper("err@example.com")
    made = _template(api, name="strict", html_body="{{ event.properties.total|floatformat:'x' }}")
    url = f"/api/v1/email-templates/{made['id']}/preview/"
    assert api.post(url, {"contact_id": 999999}, format="json").status_code == 404
    unknown = api.post(url, {"contact_id": contact.pk, "colour": 1}, format="json")
    assert unknown.json()["code"] == "unknown_field"
    bad = api.post(url, {"contact_id": contact.pk, "sample": "basket"}, format="json")
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "sample"
    failing = _template(api, name="failing", subject="{{ contact.missing.x|date:'Y' }}")
    empty = api.post(
        f"/api/v1/email-templates/{failing['id']}/preview/",
        {"contact_id": contact.pk},
        format="json",
    )
    assert empty.status_code == 400 and empty.json()["code"] == "render_failed"


def test_test_send_goes_through_the_esp_once_per_key_and_is_limited(api, read_api):
    contact = shopper("ts@example.com", first_name="Tess")
    track("ts@example.com", "Checkout Started", T0, "c1", products=[{"name": "Mug"}])
    made = _template(api)
    url = f"/api/v1/email-templates/{made['id']}/test-send/"
    body = {"contact_id": contact.pk, "sample": "cart", "to": "staff@example.com"}
    assert read_api.post(url, body, format="json").status_code == 403
    sent = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="t1")
    assert sent.status_code == 200, sent.json()
    assert sent.json() == {"to": "staff@example.com", "subject": "[TEST] Your cart, Tess"}
    assert api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="t1").json() == sent.json()
    assert len(mail.outbox) == 1  # Anymail's test backend
    assert mail.outbox[0].to == ["staff@example.com"] and "Mug" in mail.outbox[0].body
    no_to = api.post(url, {"contact_id": contact.pk}, format="json")
    assert no_to.status_code == 400 and no_to.json()["details"]["field"] == "to"
    with override_settings(KEEPERS_RATE_TEST_SEND="1/hour"):
        cache.clear()
        assert api.post(url, body, format="json").status_code == 200
        limited = api.post(url, body, format="json")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert "Retry-After" in limited.headers
    assert len(mail.outbox) == 2


def test_a_campaign_from_draft_to_archive(api, read_api, django_capture_on_commit_callbacks):
    _template(api, name="welcome", subject="Welcome", html_body="<p>Hi</p>")
    created = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Welcome",
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "wait", "type": "wait", "config": {"hourz": 1}, "next": "hello"},
                {"id": "hello", "type": "send_email", "config": {"template": "nope"}},
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    campaign = created.json()
    assert campaign["status"] == "draft" and campaign["version"] is None
    url = f"/api/v1/campaigns/{campaign['id']}/"

    problems = read_api.get(f"{url}validate/").json()
    assert problems["valid"] is False
    assert [p["path"] for p in problems["errors"]] == [
        "steps[0].config",
        "steps[1].config.template",
    ], problems
    refused = api.post(f"{url}publish/")
    assert refused.status_code == 400 and refused.json()["details"]["path"] == "steps[0].config"

    fixed = api.patch(
        url,
        {
            "steps": [
                {"id": "wait", "type": "wait", "config": {"hours": 1}, "next": "hello"},
                {"id": "hello", "type": "send_email", "config": {"template": "welcome"}},
            ]
        },
        format="json",
    )
    assert fixed.status_code == 200, fixed.json()
    assert read_api.get(f"{url}validate/").json() == {"valid": True, "errors": []}

    published = api.post(f"{url}publish/")
    assert published.status_code == 200
    assert published.json()["status"] == "active" and published.json()["version"] == 1
    contact = shopper("w@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"{url}enroll/", {"contact_id": contact.pk}, format="json")
    # a live campaign's edits must be valid (its trigger applies at once)
    live_edit = api.patch(url, {"trigger": {"type": "event"}}, format="json")
    assert live_edit.status_code == 400 and live_edit.json()["details"]["path"] == "trigger.name"

    assert api.post(f"{url}pause/").json()["status"] == "paused"
    assert read_api.post(f"{url}pause/").status_code == 403
    assert api.post(f"{url}resume/").json()["status"] == "active"
    api.patch(url, {"description": "v2", "steps": [{"id": "bye", "type": "exit"}]}, format="json")
    assert api.post(f"{url}publish/").json()["version"] == 2
    assert api.post(f"{url}archive/").json()["status"] == "archived"
    assert api.patch(url, {"name": "Again"}, format="json").status_code == 409

    versions = read_api.get(f"{url}versions/").json()
    assert [(v["number"], v["enrolled"]) for v in versions] == [(2, 0), (1, 1)]
    stats = read_api.get(f"{url}versions/1/stats/").json()
    assert stats["number"] == 1 and stats["steps"]["wait"] == {"passed": 1}
    assert stats["steps"]["hello"] == {"waiting": 1}
    assert read_api.get(f"{url}versions/7/stats/").status_code == 404
    assert Enrollment.objects.get().version.number == 1
    assert Campaign.objects.get().status == "archived"


def test_campaign_writes_need_the_write_scope_and_json_of_the_right_shape(api, read_api):
    body = {"name": "X", "trigger": {"type": "manual"}, "steps": []}
    assert read_api.post("/api/v1/campaigns/", body, format="json").status_code == 403
    wrong = api.post("/api/v1/campaigns/", {**body, "steps": {"id": 1}}, format="json")
    assert wrong.status_code == 400 and wrong.json()["details"]["field"] == "steps"
    typo = api.post("/api/v1/campaigns/", {**body, "trigerr": {}}, format="json")
    assert typo.status_code == 400 and typo.json()["code"] == "unknown_field"


def test_the_lists_cost_the_same_for_one_row_and_many(api, read_api):
    def cost(url: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert read_api.get(url).status_code == 200
        return len(queries)

    read_api.get("/api/v1/campaigns/")  # the key's last use is written once a minute
    _template(api, name="t0")
    api.post("/api/v1/campaigns/", {"name": "c0", "trigger": {"type": "manual"}}, format="json")
    one = (cost("/api/v1/email-templates/"), cost("/api/v1/campaigns/"))
    for n in range(1, 6):
        _template(api, name=f"t{n}")
        api.post("/api/v1/campaigns/", {"name": f"c{n}"}, format="json")
    assert (cost("/api/v1/email-templates/"), cost("/api/v1/campaigns/")) == one
