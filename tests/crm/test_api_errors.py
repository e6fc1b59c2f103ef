"""Bad input gets a clear 4xx in one format ({"code", "message", "details"}), never a 500."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str | None = None, mentions: str | None = None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    if code:
        assert body["code"] == code
    if mentions:
        assert mentions in body["message"] or mentions in str(body["details"])
    return body


def test_malformed_json(api):
    response = api.generic(
        "POST", "/api/v1/events/", '{"name": "x",', content_type="application/json"
    )
    assert_error(response, 400, "malformed_json", "Malformed JSON")


def test_wrong_content_type(api):
    response = api.generic(
        "POST", "/api/v1/events/", "name=x", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "unsupported_media_type")


def test_wrong_type_for_a_field(api):
    response = api.post(
        "/api/v1/events/",
        {"name": "x", "email": "a@example.com", "properties": "big"},
        format="json",
    )
    assert_error(response, 400, mentions="properties")


def test_unknown_field(api):
    response = api.post(
        "/api/v1/contacts/", {"email": "a@example.com", "favourite": "blue"}, format="json"
    )
    assert_error(response, 400, "unknown_field", "favourite")


def test_invalid_timezone(api):
    response = api.post(
        "/api/v1/contacts/", {"email": "a@example.com", "timezone": "Mars/Olympus"}, format="json"
    )
    body = assert_error(response, 400, mentions="Mars/Olympus")
    assert body["details"]["field"] == "timezone"


def test_invalid_email(api):
    response = api.post("/api/v1/contacts/", {"email": "nobody@"}, format="json")
    body = assert_error(response, 400)
    assert body["details"]["field"] == "email"


def test_invalid_currency(api):
    response = api.post(
        "/api/v1/orders/",
        {"external_id": "o1", "email": "a@example.com", "total": "10", "currency": "DOLLARS"},
        format="json",
    )
    body = assert_error(response, 400, mentions="ISO 4217")
    assert body["details"]["field"] == "currency"


def test_missing_api_key():
    assert_error(APIClient().get("/api/v1/contacts/"), 401, "not_authenticated")


def test_wrong_api_key():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer kp_not-a-real-key")
    assert_error(client.get("/api/v1/contacts/"), 401, "authentication_failed")


def test_garbage_authorization_header():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic !!!not-base64")
    assert_error(client.get("/api/v1/contacts/"), 401)


def test_read_key_cannot_write(read_api):
    assert_error(
        read_api.post("/api/v1/contacts/", {"email": "a@example.com"}, format="json"),
        403,
        "permission_denied",
    )


def test_revoked_key_is_refused(api, write_key):
    from crm.models import ApiKey
    from crm.services.api_keys import api_key_revoke

    api_key_revoke(key=ApiKey.objects.get(name="tests"))
    assert_error(api.get("/api/v1/contacts/"), 401, "authentication_failed")


def test_oversize_body(api, settings):
    settings.KEEPERS_MAX_BODY_BYTES = 10_000
    payload = [{"name": "x", "email": "a@example.com", "properties": {"pad": "x" * 200}}] * 100
    assert_error(api.post("/api/v1/events/", payload, format="json"), 413, "payload_too_large")


def test_not_found_is_in_the_same_format(api):
    assert_error(api.get("/api/v1/contacts/999999/"), 404, "not_found")


def test_refund_of_an_unknown_order(api):
    assert_error(api.post("/api/v1/orders/nope/refunds/", {}, format="json"), 404, "not_found")


def test_a_json_array_where_an_object_is_needed(api):
    assert_error(api.post("/api/v1/contacts/", [1, 2], format="json"), 400)


def test_keys_are_stored_hashed(write_key):
    from crm.models import ApiKey

    stored = ApiKey.objects.get(name="tests")
    assert write_key not in (stored.key_hash, stored.prefix)
    assert len(stored.key_hash) == 64
