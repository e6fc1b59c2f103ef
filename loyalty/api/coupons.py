"""Coupons API: create a coupon, read it, ask whether a code works on an order, and redeem
it against the shop's order. Redeeming moves value, so it takes an Idempotency-Key: the
same key and body replay the first result; another body with the same key is a 422.

Refusals answer {"code", "message", "details"}: 404 `coupon_unknown`; 409 when the
coupon's state says no (`coupon_used_up`, `coupon_expired`, `coupon_inactive`,
`coupon_not_started`, `coupon_other_contact`, `coupon_contact_limit`); 400 when the
request does (`coupon_below_minimum`, `coupon_currency_mismatch`, a missing field)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.auth import HasApiKeyScope
from crm.errors import KeepersError
from crm.extend import error_responses
from crm.models import ApiKey, Contact
from crm.selectors import contact_referenced
from crm.services.idempotency import idempotent
from crm.services.parsing import parse_datetime, parse_int, parse_str, reject_unknown
from loyalty.models import Coupon, CouponRedemption
from loyalty.services.coupons import (
    amount_text,
    coupon_create,
    coupon_get,
    coupon_redeem,
    coupon_validate,
)

WHO = {"contact_id", "email", "external_id"}


def _idempotency(required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        required=required,
        description=("Required: " if required else "")
        + "the same key and body replay the first result; another body is a 422",
    )


class CouponSerializer(serializers.ModelSerializer):
    # A plain string here: the request's enum is the one named in the schema (a second
    # component with the same choices would make drf-spectacular's enum name collide).
    kind = serializers.CharField(read_only=True, help_text="percent, fixed or free_shipping")
    value = serializers.SerializerMethodField(method_name="value_text")
    min_order = serializers.SerializerMethodField()
    uses_left = serializers.SerializerMethodField()

    class Meta:
        model = Coupon
        fields = [
            "id",
            "code",
            "kind",
            "value",
            "currency",
            "min_order",
            "contact",
            "max_uses",
            "max_uses_per_contact",
            "uses",
            "uses_left",
            "starts_at",
            "expires_at",
            "release_on_refund",
            "active",
            "source_type",
            "source_id",
            "created_at",
        ]

    def value_text(self, coupon: Coupon) -> str:
        # A percent is a number of percent; a fixed amount has its currency's decimals.
        return (
            amount_text(coupon.value, coupon.currency if coupon.kind == Coupon.Kind.FIXED else "")
            or ""
        )

    def get_min_order(self, coupon: Coupon) -> str:
        return amount_text(coupon.min_order, coupon.currency) or ""

    def get_uses_left(self, coupon: Coupon) -> int:
        return max(coupon.max_uses - coupon.uses, 0)


class CouponCreateSerializer(serializers.Serializer):
    """For the schema; the view parses with the services' field-naming errors."""

    kind = serializers.ChoiceField(choices=Coupon.Kind.choices)
    value = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        required=False,
        help_text="Percent (0–100] for percent; the amount for fixed; 0 for free shipping",
    )
    currency = serializers.CharField(required=False, help_text="ISO 4217; fixed and minimum")
    min_order = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    contact_id = serializers.IntegerField(required=False, help_text="Bind to this contact")
    email = serializers.EmailField(required=False, help_text="Bind to this contact")
    external_id = serializers.CharField(required=False, help_text="Bind to this contact")
    max_uses = serializers.IntegerField(required=False, min_value=1, help_text="1: single use")
    max_uses_per_contact = serializers.IntegerField(required=False, min_value=1)
    starts_at = serializers.DateTimeField(required=False)
    expires_at = serializers.DateTimeField(required=False)
    release_on_refund = serializers.BooleanField(required=False, default=True)
    code = serializers.CharField(required=False, help_text="Choose the code (else generated)")
    prefix = serializers.CharField(required=False, help_text="Before a generated code")
    source_type = serializers.CharField(required=False)
    source_id = serializers.CharField(required=False)


class CouponCheckSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Any case; spaces and dashes are ignored")
    contact_id = serializers.IntegerField(required=False)
    email = serializers.EmailField(required=False)
    external_id = serializers.CharField(required=False)
    order_total = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    currency = serializers.CharField(required=False, help_text="The order's, ISO 4217")


class CouponRedeemSerializer(CouponCheckSerializer):
    order_id = serializers.CharField(help_text="The shop's order id")


class CouponValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    code = serializers.CharField()
    reason = serializers.CharField(allow_null=True, help_text="Why not, for the customer")
    reason_code = serializers.CharField(allow_null=True, help_text="coupon_expired…")
    discount = serializers.CharField(
        allow_null=True, help_text="Off this order total (null when it cannot be known)"
    )
    free_shipping = serializers.BooleanField()
    kind = serializers.CharField(allow_null=True)
    currency = serializers.CharField(allow_blank=True)
    min_order = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class CouponRedemptionSerializer(serializers.ModelSerializer):
    code = serializers.CharField(source="coupon.code")
    order_id = serializers.CharField(source="order_ref")
    discount = serializers.SerializerMethodField()
    free_shipping = serializers.SerializerMethodField()

    class Meta:
        model = CouponRedemption
        fields = [
            "id",
            "code",
            "order_id",
            "order",
            "contact",
            "discount",
            "currency",
            "free_shipping",
            "redeemed_at",
            "released_at",
        ]

    def get_discount(self, redemption: CouponRedemption) -> str:
        return amount_text(redemption.discount, redemption.currency) or ""

    def get_free_shipping(self, redemption: CouponRedemption) -> bool:
        return redemption.coupon.kind == Coupon.Kind.FREE_SHIPPING


class AnyApiKey(HasApiKeyScope):
    """Checking a code moves nothing: a read-only key may ask too."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key: 'Authorization: Bearer <key>'.")
        return True


def _body(request: Request, allowed: set[str]) -> dict:
    if not isinstance(request.data, dict):
        raise KeepersError("Send a JSON object.")
    reject_unknown(request.data, allowed)
    return request.data


def _who(body: dict) -> Contact | None:
    """The contact the body names, if it names one (404 for one Keepers does not know)."""
    return contact_referenced(body) if any(body.get(k) is not None for k in WHO) else None


def _when(body: dict, name: str):
    return parse_datetime(body[name], name) if body.get(name) else None


class CouponCreate(APIView):
    """Create a coupon: percent, fixed amount or free shipping; single use (max_uses 1) or
    more; optionally bound to one contact, with a minimum order and a validity window. The
    code is generated (`7HQK-9X2M`, after `prefix` if given) unless `code` chooses it."""

    @extend_schema(
        request=CouponCreateSerializer,
        responses={
            201: CouponSerializer,
            **error_responses(
                404,
                409,
                d404="No contact with that contact_id, email or external_id",
                d409="That code is taken",
            ),
        },
        parameters=[_idempotency(required=False)],
    )
    def post(self, request: Request) -> Response:
        allowed = set(CouponCreateSerializer().fields)
        body = _body(request, allowed)

        def produce() -> tuple[dict, int]:
            release = body.get("release_on_refund", True)
            if not isinstance(release, bool):
                raise KeepersError("Expected true or false.", field="release_on_refund")
            per_contact = body.get("max_uses_per_contact")
            coupon = coupon_create(
                kind=parse_str(body.get("kind"), "kind", required=True),
                value=body.get("value"),
                currency=parse_str(body.get("currency"), "currency", max_length=3),
                min_order=body.get("min_order"),
                contact=_who(body),
                max_uses=parse_int(body.get("max_uses", 1), "max_uses", minimum=1),
                max_uses_per_contact=None
                if per_contact is None
                else parse_int(per_contact, "max_uses_per_contact", minimum=1),
                starts_at=_when(body, "starts_at"),
                expires_at=_when(body, "expires_at"),
                release_on_refund=release,
                code=parse_str(body["code"], "code", max_length=60) if "code" in body else None,
                prefix=parse_str(body.get("prefix"), "prefix", max_length=60),
                source_type=parse_str(body.get("source_type"), "source_type", max_length=20)
                or "api",
                source_id=parse_str(body.get("source_id"), "source_id", max_length=100),
            )
            return CouponSerializer(coupon).data, 201

        data, status = idempotent(
            scope="coupons:create",
            key=request.headers.get("Idempotency-Key"),
            body=body,
            produce=produce,
        )
        return Response(data, status=status)


class CouponDetail(APIView):
    """A coupon by its code (any case; spaces and dashes ignored): uses and uses left."""

    @extend_schema(responses={200: CouponSerializer})
    def get(self, request: Request, code: str) -> Response:
        return Response(CouponSerializer(coupon_get(code)).data)


class CouponValidate(APIView):
    """Would this code work on this order? Always 200 for a well-formed request: `valid`,
    the `discount` it gives on `order_total`, or the `reason` it does not. Moves nothing;
    a read-only key may ask."""

    permission_classes = [AnyApiKey]

    @extend_schema(
        request=CouponCheckSerializer,
        responses={
            200: CouponValidationSerializer,
            **error_responses(404, d404="coupon_unknown, or no such contact"),
        },
    )
    def post(self, request: Request) -> Response:
        body = _body(request, set(CouponCheckSerializer().fields))
        result = coupon_validate(
            code=parse_str(body.get("code"), "code", max_length=60, required=True),
            contact=_who(body),
            order_total=body.get("order_total"),
            currency=parse_str(body.get("currency"), "currency", max_length=3),
        )
        return Response(CouponValidationSerializer(result).data)


class CouponRedeem(APIView):
    """Redeem a code on the shop's order (`order_id`): 201 with the discount; the same code
    on the same order again returns the first redemption (200). 409 `coupon_used_up` when
    it has been used the most times it may be — under any concurrency, a single-use
    coupon is redeemed once."""

    @extend_schema(
        request=CouponRedeemSerializer,
        responses={
            201: CouponRedemptionSerializer,
            200: CouponRedemptionSerializer,
            **error_responses(
                404,
                409,
                d404="coupon_unknown, or no such contact",
                d409="coupon_used_up, coupon_expired, coupon_inactive, coupon_not_started, "
                "coupon_other_contact or coupon_contact_limit",
            ),
        },
        parameters=[_idempotency(required=True)],
    )
    def post(self, request: Request) -> Response:
        body = _body(request, set(CouponRedeemSerializer().fields))
        key = request.headers.get("Idempotency-Key")
        if not key:
            raise KeepersError(
                "Writes that move value need an Idempotency-Key header.", field="Idempotency-Key"
            )

        def produce() -> tuple[dict, int]:
            redemption, created = coupon_redeem(
                code=parse_str(body.get("code"), "code", max_length=60, required=True),
                order_ref=parse_str(body.get("order_id"), "order_id", required=True),
                contact=_who(body),
                order_total=body.get("order_total"),
                currency=parse_str(body.get("currency"), "currency", max_length=3),
            )
            return CouponRedemptionSerializer(redemption).data, 201 if created else 200

        data, status = idempotent(scope="coupons:redeem", key=key, body=body, produce=produce)
        return Response(data, status=status)


urlpatterns = [
    path("coupons/", CouponCreate.as_view(), name="coupon-create"),
    # before coupons/<code>/, which would otherwise take these two
    path("coupons/validate/", CouponValidate.as_view(), name="coupon-validate"),
    path("coupons/redeem/", CouponRedeem.as_view(), name="coupon-redeem"),
    path("coupons/<str:code>/", CouponDetail.as_view(), name="coupon-detail"),
]
