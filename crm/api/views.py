"""REST API v1. Views parse, call a service, and answer; the rules live in services."""

from __future__ import annotations

from collections.abc import Callable

import django_filters
from django.conf import settings
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm import selectors
from crm.api import serializers as s
from crm.api.schema import error_responses
from crm.client_ip import client_ip
from crm.db import retry_on_conflict
from crm.errors import KeepersError
from crm.models import Contact, Event, LeadScorecard, MarketingSpend, Order, Product, Stage
from crm.services.consent import consent_record
from crm.services.contacts import (
    contact_create,
    contact_fields_clean,
    contact_update,
    contact_upsert,
)
from crm.services.events import event_item_parse, events_ingest
from crm.services.meddic import scorecard_changes_clean, scorecard_update
from crm.services.orders import order_item_parse, order_refund, orders_place
from crm.services.parsing import check_json, parse_datetime, parse_money, parse_str, reject_unknown
from crm.services.privacy import contact_erase, contact_export
from crm.services.products import (
    back_in_stock_request,
    product_event_parse,
    product_event_record,
    product_item_parse,
    products_upsert,
)
from crm.services.spend import spend_item_parse, spend_upsert

READ_ONLY_CONTACT_FIELDS = {
    "id",
    "stage",
    "stage_changed_at",
    "created_at",
    "updated_at",
    "email_consent",
}


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """A date-time in the query string within what Keepers stores (parse_datetime: the
    accepted years, offsets up to ±14:00): year 0079 or an offset of +21:20 is a 400 naming
    the parameter, not a database error."""

    def filter(self, qs, value):
        if value is not None:
            name = next(n for n, f in self.parent.filters.items() if f is self)
            value = parse_datetime(value, name)
        return super().filter(qs, value)


class ContactFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(field_name="email", lookup_expr="iexact")
    external_id = django_filters.CharFilter()
    stage = django_filters.MultipleChoiceFilter(choices=Stage.choices)
    tag = django_filters.CharFilter(field_name="tags__name", distinct=True)
    channel = django_filters.CharFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Contact
        fields = ["email", "external_id", "stage", "tag", "channel"]


def _contact_input(data: object) -> dict:
    if not isinstance(data, dict):
        raise KeepersError("Send a JSON object.", code="invalid")
    for name in READ_ONLY_CONTACT_FIELDS & set(data):
        raise KeepersError(
            f"'{name}' is computed by Keepers and cannot be set.", field=name, code="read_only"
        )
    return contact_fields_clean(data)


TAKEN = error_responses(409, d409="Another contact has this email or external_id")


@extend_schema_view(
    create=extend_schema(
        request=s.ContactWriteSerializer, responses={201: s.ContactSerializer, **TAKEN}
    ),
    update=extend_schema(
        request=s.ContactWriteSerializer, responses={200: s.ContactSerializer, **TAKEN}
    ),
    partial_update=extend_schema(
        request=s.ContactWriteSerializer, responses={200: s.ContactSerializer, **TAKEN}
    ),
)
class ContactViewSet(viewsets.ModelViewSet):
    """Contacts. `stage` is computed from orders and engagement, never set by hand."""

    serializer_class = s.ContactSerializer
    filterset_class = ContactFilter

    def get_queryset(self):
        return selectors.contact_list()

    def create(self, request: Request, *args, **kwargs) -> Response:
        fields = _contact_input(request.data)
        contact = contact_create(**fields)
        return Response(self._out(contact), status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args, **kwargs) -> Response:
        contact = self.get_object()
        contact = contact_update(contact=contact, **_contact_input(request.data))
        return Response(self._out(contact))

    @extend_schema(
        summary="Erase the contact (right to erasure)",
        description="Removes or replaces the person's identifying data everywhere "
        "(profile, aliases, events, messages, delivery events, logs); orders, refunds, the "
        "ledger and the metrics keep their anonymised rows, and the address stays "
        "suppressed by its hash. Safe to repeat. Needs a write key.",
        responses={204: OpenApiResponse(description="Erased")},
    )
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        contact_erase(contact=self.get_object(), by=f"api key {request.auth}")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Export everything Keepers holds about the contact",
        description="One JSON document: profile, aliases, consent history, events, orders "
        "(lines, refunds), stage history, segments, and each app's part (campaigns: "
        "messages with bodies, delivery events, suppressions, enrolments, survey answers; "
        "loyalty: ledger, tier, coupons, referrals on both sides). Needs a write key: it "
        "is everything about a person.",
        responses={
            200: OpenApiResponse(description="The export document (JSON)"),
            **error_responses(403, d403="The key is read-only: an export needs the write scope"),
        },
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk=None) -> Response:
        if getattr(request.auth, "scope", None) != "write":
            raise KeepersError(
                "A contact's export needs a key with the write scope.",
                code="permission_denied",
                status_code=403,
            )
        contact = self.get_object()
        response = Response(contact_export(contact=contact))
        response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        request=s.ContactWriteSerializer,
        responses={200: s.ContactSerializer, 201: s.ContactSerializer, **TAKEN},
    )
    @action(detail=False, methods=["post"])
    def upsert(self, request: Request) -> Response:
        """Create or update the contact with this `external_id` or `email`."""
        contact, created = contact_upsert(**_contact_input(request.data))
        return Response(self._out(contact), status=201 if created else 200)

    @extend_schema(methods=["GET"], responses=s.ConsentSerializer(many=True))
    @extend_schema(
        methods=["POST"], request=s.ConsentSerializer, responses={201: s.ConsentSerializer}
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def consent(self, request: Request, pk=None) -> Response:
        """The consent log (newest first); POST appends a record."""
        contact = self.get_object()
        if request.method == "POST":
            data = request.data if isinstance(request.data, dict) else {}
            reject_unknown(data, {"status", "channel", "topic", "source", "wording_version"})
            record = consent_record(
                contact=contact,
                status=data.get("status", ""),
                channel=data.get("channel", "email"),
                topic=parse_str(data.get("topic"), "topic", max_length=100) or "all",
                source=parse_str(data.get("source"), "source", max_length=100) or "api",
                wording_version=parse_str(
                    data.get("wording_version"), "wording_version", max_length=50
                ),
                ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
            return Response(s.ConsentSerializer(record).data, status=201)
        return Response(s.ConsentSerializer(contact.consents.all(), many=True).data)

    @extend_schema(request=s.ScorecardSerializer, responses=s.ScorecardSerializer)
    @action(detail=True, methods=["get", "patch"])
    def meddic(self, request: Request, pk=None) -> Response:
        """The contact's MEDDIC scorecard; PATCH changes statuses (0–2) and notes."""
        contact = self.get_object()
        if request.method == "PATCH":
            changes = scorecard_changes_clean(
                request.data if isinstance(request.data, dict) else {}
            )
            card = scorecard_update(
                contact=contact, changes=changes, via=f"api:{request.auth.name}"
            )
        else:
            card = LeadScorecard.objects.filter(contact=contact).first() or LeadScorecard(
                contact=contact
            )
        return Response(s.ScorecardSerializer(card).data)

    def _out(self, contact: Contact) -> dict:
        return self.get_serializer(selectors.contact_list().get(pk=contact.pk)).data


# What batch_response answers, for the schema of each batch endpoint.
BATCH_RESPONSES = {
    201: OpenApiResponse(s.ItemResultSerializer, description="One object, stored"),
    200: OpenApiResponse(
        PolymorphicProxySerializer(
            component_name="ItemOrBatchResult",
            serializers=[s.ItemResultSerializer, s.BatchResultSerializer],
            resource_type_field_name=None,
        ),
        description="One object already stored (a duplicate, or updated), or a list: a "
        "result per item, the good ones stored beside the bad",
    ),
    **error_responses(
        400, d400="One object, or every item of a list, refused (code invalid_items)"
    ),
}


def batch_response(
    data: object, parse: Callable[[object, str], object], store: Callable[[list], list]
) -> Response:
    """One object → one result (201, 200 for a duplicate, 400 for an error). A list → a
    result per item: bad items are reported by index and field, the good ones stored; 400
    in the error body (code invalid_items, each item's error in details.errors) when none
    is good."""
    single = not isinstance(data, list)
    items = [data] if single else data
    if len(items) > settings.KEEPERS_BATCH_MAX_ITEMS:
        raise KeepersError(
            f"A batch takes at most {settings.KEEPERS_BATCH_MAX_ITEMS} items; this one has {len(items)}.",
            code="batch_too_large",
        )
    if not items:
        raise KeepersError("The batch is empty.", code="empty_batch")
    results: list[dict] = [{}] * len(items)
    parsed, positions = [], []
    for index, raw in enumerate(items):
        try:
            prefix = "" if single else f"[{index}]."
            check_json(raw, prefix.rstrip("."))
            parsed.append(parse(raw, prefix))
            positions.append(index)
        except KeepersError as error:
            results[index] = {
                "index": index,
                "status": "error",
                "code": error.code,
                "field": error.field,
                "message": error.message,
            }
    stored = retry_on_conflict(lambda: store(parsed))
    for index, (state, pk) in zip(positions, stored, strict=True):
        results[index] = {"index": index, "status": state, "id": pk}
    if single:
        result = results[0]
        if result["status"] == "error":
            raise KeepersError(result["message"], code=result["code"], field=result["field"])
        return Response(result, status=201 if result["status"] == "created" else 200)
    counts = {
        k: sum(r["status"] == k for r in results)
        for k in ("created", "updated", "duplicate", "error")
    }
    body = {
        "created": counts["created"],
        "duplicates": counts["duplicate"],
        "errors": counts["error"],
        "results": results,
    }
    if counts["updated"]:
        body["updated"] = counts["updated"]
    if counts["error"] == len(items):
        first = results[0]
        raise KeepersError(
            f"All {len(items)} items were refused. First: item 0, {first['field']}: "
            f"{first['message']}",
            code="invalid_items",
            details={"errors": results},
        )
    return Response(body)


class EventFilter(django_filters.FilterSet):
    name = django_filters.CharFilter()
    contact = django_filters.NumberFilter(field_name="contact_id")
    since = DateTimeFilter(field_name="occurred_at", lookup_expr="gte")

    class Meta:
        model = Event
        fields = ["name", "contact"]


class EventListCreate(generics.ListAPIView):
    """Events. POST one event or a list of up to 1,000; each is validated on its own and
    stored once per (source, message_id). Unknown contacts are created from the email or
    external_id given."""

    serializer_class = s.EventSerializer
    filterset_class = EventFilter
    queryset = Event.objects.all()

    @extend_schema(request=s.EventInSerializer(many=True), responses=BATCH_RESPONSES)
    def post(self, request: Request) -> Response:
        return batch_response(
            request.data,
            lambda raw, prefix: event_item_parse(raw, prefix=prefix),
            lambda items: events_ingest(items),
        )


class OrderFilter(django_filters.FilterSet):
    contact = django_filters.NumberFilter(field_name="contact_id")
    status = django_filters.CharFilter()
    since = DateTimeFilter(field_name="ordered_at", lookup_expr="gte")

    class Meta:
        model = Order
        fields = ["contact", "status"]


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Orders, idempotent on `external_id`. POST one order or a list of up to 1,000;
    refunds are recorded with POST /orders/{external_id}/refunds/."""

    serializer_class = s.OrderSerializer
    filterset_class = OrderFilter
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return Order.objects.select_related("contact").prefetch_related("lines", "refunds")

    @extend_schema(request=s.OrderInSerializer(many=True), responses=BATCH_RESPONSES)
    def create(self, request: Request) -> Response:
        return batch_response(
            request.data,
            lambda raw, prefix: order_item_parse(raw, prefix=prefix),
            orders_place,
        )

    @extend_schema(
        request=s.RefundInSerializer,
        responses={
            201: s.RefundSerializer,
            200: OpenApiResponse(s.RefundSerializer, description="This refund_id again"),
            **error_responses(409, d409="More than the order's amount left to refund"),
        },
    )
    @action(detail=True, methods=["post"])
    def refunds(self, request: Request, external_id: str | None = None) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        reject_unknown(data, {"amount", "reason", "refund_id", "refunded_at"})
        amount = data.get("amount")
        refund, created = order_refund(
            order_external_id=external_id or "",
            amount=None
            if amount in (None, "")
            else parse_money(amount, "amount", allow_zero=False),
            reason=parse_str(data.get("reason"), "reason", max_length=500),
            refund_id=parse_str(data.get("refund_id"), "refund_id"),
            at=parse_datetime(data.get("refunded_at"), "refunded_at", default=None)
            if data.get("refunded_at")
            else None,
        )
        return Response(s.RefundSerializer(refund).data, status=201 if created else 200)


class ProductListUpsert(generics.ListAPIView):
    """The catalog. POST one product or a list of up to 1,000 to create or update by
    `product_id` (the catalog feed)."""

    serializer_class = s.ProductSerializer
    queryset = Product.objects.all()
    filterset_fields = ["category", "in_stock"]

    @extend_schema(request=s.ProductSerializer(many=True), responses=BATCH_RESPONSES)
    def post(self, request: Request) -> Response:
        def store(items: list[dict]) -> list[tuple[str, int | None]]:
            known = set(
                Product.objects.filter(product_id__in=[i["product_id"] for i in items]).values_list(
                    "product_id", flat=True
                )
            )
            products_upsert(items)
            return [("updated" if i["product_id"] in known else "created", None) for i in items]

        return batch_response(
            request.data, lambda raw, prefix: product_item_parse(raw, prefix), store
        )


class ProductEventCreate(APIView):
    """An event about a product, not a person: `Product Restocked` or `Price Dropped`
    (properties.old_price and new_price). It updates the catalog and reaches, through
    campaigns with a product_event trigger, the contacts who asked for the product or
    viewed it lately. The same message_id twice changes nothing (200 instead of 201)."""

    @extend_schema(
        request=s.ProductEventSerializer,
        responses={
            201: s.ProductEventOutSerializer,
            200: OpenApiResponse(s.ProductEventOutSerializer, description="This message_id again"),
            **error_responses(404, d404="No product with this product_id"),
        },
    )
    def post(self, request: Request) -> Response:
        parsed = product_event_parse(request.data)
        event, created = product_event_record(**parsed)
        return Response(
            {"id": event.pk, "event": event.name, "created": created},
            status=201 if created else 200,
        )


class BackInStockCreate(APIView):
    """Ask to be told when a product is back in stock, for a contact by email or
    external_id (created from the email when new). Once per contact, product and day."""

    @extend_schema(
        request=s.BackInStockSerializer,
        responses={
            201: s.ProductEventOutSerializer,
            200: OpenApiResponse(s.ProductEventOutSerializer, description="Already asked today"),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        reject_unknown(data, {"product_id", "email", "external_id"})
        event_id, created = back_in_stock_request(
            product_id=parse_str(data.get("product_id"), "product_id", required=True),
            email=parse_str(data.get("email"), "email", max_length=254),
            external_id=parse_str(data.get("external_id"), "external_id"),
        )
        return Response(
            {"id": event_id, "event": "Back In Stock Requested", "created": created},
            status=201 if created else 200,
        )


class MarketingSpendListUpsert(generics.ListAPIView):
    """Marketing and sales spend per channel and month (for CAC). POST one entry or a list
    of up to 1,000: {"channel", "month": "2026-03", "amount", "currency", "note"?}; the same
    channel, month and currency again replaces the amount."""

    serializer_class = s.MarketingSpendSerializer
    queryset = MarketingSpend.objects.all()
    filterset_fields = ["channel", "currency"]

    @extend_schema(request=s.MarketingSpendSerializer(many=True), responses=BATCH_RESPONSES)
    def post(self, request: Request) -> Response:
        return batch_response(request.data, spend_item_parse, spend_upsert)


class Health(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses={200: OpenApiResponse(description="ok")})
    def get(self, request: Request) -> Response:
        Contact.objects.exists()
        return Response({"status": "ok"})
