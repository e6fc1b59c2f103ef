"""The OpenAPI schema documents every status an operation answers, each 4xx with the one
error body, and the success codes the server really sends."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_4xx_has_the_error_body(schema):
    for name, operation in operations(schema):
        for code, response in operation["responses"].items():
            if code.startswith("4"):
                assert response["content"]["application/json"]["schema"] == ERROR, (name, code)


def test_every_api_key_operation_documents_401_and_429(schema):
    for name, operation in operations(schema):
        if name == "GET /api/v1/health/":
            assert "401" not in operation["responses"]
            continue
        assert {"401", "429"} <= set(operation["responses"]), name


def test_writes_document_403_and_bodies_400_413_415(schema):
    for name, operation in operations(schema):
        codes = set(operation["responses"])
        # checking a coupon moves nothing: a read-only key may ask
        if name.startswith(("POST", "PUT", "PATCH", "DELETE")) and "validate" not in name:
            assert "403" in codes, name
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= codes, name


def test_operations_on_one_object_document_404(schema):
    for name, operation in operations(schema):
        if "{" in name:
            assert "404" in operation["responses"], name


def test_idempotent_writes_document_422(schema):
    paths = schema["paths"]
    for path in ("/api/v1/loyalty/points/award/", "/api/v1/coupons/redeem/"):
        assert "422" in paths[path]["post"]["responses"], path


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/v1/contacts/{id}/consent/", "post", {"201"}),
        ("/api/v1/events/", "post", {"200", "201"}),
        ("/api/v1/products/", "post", {"200", "201"}),
        ("/api/v1/marketing-spend/", "post", {"200", "201"}),
        ("/api/v1/orders/", "post", {"200", "201"}),
        ("/api/v1/segments/{id}/members/", "delete", {"200"}),
    ],
)
def test_success_codes_are_the_servers(schema, path, method, codes):
    documented = {c for c in schema["paths"][path][method]["responses"] if c.startswith("2")}
    assert documented == codes


def test_consent_post_answers_201(api):
    contact = ContactFactory()
    response = api.post(
        f"/api/v1/contacts/{contact.pk}/consent/", {"status": "granted"}, format="json"
    )
    assert response.status_code == 201, response.content


def test_a_batch_where_every_item_fails_answers_the_error_body(api):
    response = api.post("/api/v1/events/", [{"name": ""}, {"email": "x"}], format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == "invalid_items"
    assert [e["index"] for e in body["details"]["errors"]] == [0, 1]
