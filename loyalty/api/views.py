"""Loyalty API: a contact's summary and ledger; award and redeem points; grant and
redeem store credit. Every write that moves value needs an Idempotency-Key header: the
same key with the same body returns the first result; with a different body, 422."""

from __future__ import annotations

import datetime as dt
import json

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from crm import clock
from crm.errors import KeepersError
from crm.extend import error_responses
from crm.models import Contact
from crm.selectors import contact_referenced
from crm.services.idempotency import idempotent
from crm.services.parsing import parse_datetime, parse_int, parse_money, parse_str, reject_unknown
from loyalty.models import POINTS, LedgerEntry, Referral
from loyalty.services.credit import credit_grant, credit_redeem
from loyalty.services.ledger import (
    EXPIRES_IN_DAYS_MAX,
    grant_window,
    ledger_balances,
    ledger_debit,
    ledger_grant,
)
from loyalty.services.points import points_redeem_for_coupon, points_redeem_for_credit
from loyalty.services.referrals import reward_parse
from loyalty.services.tiers import tier_progress

IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200},
    OpenApiParameter.HEADER,
    required=True,
    description="Required: the same key and body replay the first result; another body is a 422",
)
WHO = {"contact_id", "email", "external_id"}
NO_CONTACT = "No contact with that contact_id, email or external_id"


class ContactNamedSerializer(serializers.Serializer):
    """The contact, by one of contact_id, email or external_id (404 if Keepers has none)."""

    contact_id = serializers.IntegerField(required=False)
    email = serializers.EmailField(required=False)
    external_id = serializers.CharField(required=False)


class PointsAwardSerializer(ContactNamedSerializer):
    points = serializers.IntegerField(min_value=1)
    reason = serializers.CharField(max_length=300)
    expires_at = serializers.DateTimeField(required=False)


class PointsRedeemSerializer(ContactNamedSerializer):
    points = serializers.IntegerField(min_value=1)
    into = serializers.ChoiceField(["credit", "coupon", "points"], required=False)
    currency = serializers.CharField(required=False, help_text="ISO 4217; credit and coupon")
    reason = serializers.CharField(max_length=300, required=False)


class CreditGrantSerializer(ContactNamedSerializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=4)
    currency = serializers.CharField(help_text="ISO 4217")
    reason = serializers.CharField(max_length=300)
    expires_at = serializers.DateTimeField(required=False)
    expires_in_days = serializers.IntegerField(min_value=1, max_value=36_500, required=False)
    redeemable_from = serializers.DateTimeField(required=False)


class CreditRedeemSerializer(ContactNamedSerializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=4)
    currency = serializers.CharField(help_text="ISO 4217")
    order_id = serializers.CharField(required=False)


def _written(body, *, d409: str | None = None) -> dict:
    """The responses of a write that moves value: 201, or 200 when the service finds the
    same key already applied; 404 for an unknown contact, and 409 where a balance limits."""
    return {
        201: body,
        200: OpenApiResponse(body, description="Already applied under this key"),
        **error_responses(404, d404=NO_CONTACT),
        **(error_responses(409, d409=d409) if d409 else {}),
    }


class EntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "unit",
            "type",
            "amount",
            "remaining",
            "shortfall",
            "expires_at",
            "redeemable_from",
            "reason",
            "source_type",
            "source_id",
            "created_at",
        ]


def loyalty_summary(contact: Contact, now: dt.datetime | None = None) -> dict:
    now = now or clock.now()
    held = ledger_balances(contact, now=now)
    points = held.pop(POINTS, None)
    summary = {
        "contact_id": contact.pk,
        "points": points.as_dict()
        if points
        else {"unit": POINTS, "available": 0, "pending": 0, "expiring": []},
        "store_credit": [b.as_dict() for _, b in sorted(held.items())],
    }
    summary["tier"] = tier_progress(contact, now=now)
    reward = reward_parse(settings.KEEPERS_REFERRAL_REFERRER_REWARD).describe()
    summary["pending_referral_rewards"] = [
        {
            "referral_id": r.pk,
            "friend": r.friend.first_name,
            "reward": reward,
            "due_at": r.reward_at,
        }
        for r in Referral.objects.filter(referrer=contact, status=Referral.Status.PENDING)
        .select_related("friend")
        .order_by("reward_at")
    ]
    return summary


class Summary(APIView):
    """Points (available, pending, expiring), store credit per currency with expiry
    dates, and the tier with the progress to the next one."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request, contact_id: int) -> Response:
        contact = get_object_or_404(Contact, pk=contact_id)
        return Response(_jsonable(loyalty_summary(contact)))


class Ledger(generics.ListAPIView):
    """Every entry of a contact's ledger, newest first."""

    serializer_class = EntrySerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no contact
            return LedgerEntry.objects.none()
        return LedgerEntry.objects.filter(contact_id=self.kwargs["contact_id"])


class ReferralSerializer(serializers.ModelSerializer):
    friend_email = serializers.CharField(source="friend.email")

    class Meta:
        model = Referral
        fields = [
            "id",
            "referrer",
            "friend",
            "friend_email",
            "status",
            "reason",
            "channel",
            "order",
            "reward_at",
            "rewarded_at",
            "created_at",
        ]


class Referrals(generics.ListAPIView):
    """The referrals a contact made (as referrer), newest first, with their status:
    signed_up, pending (rewards wait for the return window), rewarded, refused, cancelled."""

    serializer_class = ReferralSerializer
    filterset_fields = ["status"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Referral.objects.none()
        return Referral.objects.filter(referrer_id=self.kwargs["contact_id"]).select_related(
            "friend"
        )


def _write(request: Request, scope: str, allowed: set[str], produce) -> Response:
    body = request.data if isinstance(request.data, dict) else {}
    reject_unknown(body, allowed | WHO)
    key = request.headers.get("Idempotency-Key")
    if not key:
        raise KeepersError(
            "Writes that move value need an Idempotency-Key header.", field="Idempotency-Key"
        )

    def run() -> tuple[dict, int]:
        contact = contact_referenced(body)
        return produce(contact, body, f"api:{key}")

    data, status = idempotent(scope=scope, key=key, body=body, produce=run)
    return Response(data, status=status)


def _when(body: dict, name: str) -> dt.datetime | None:
    return parse_datetime(body[name], name) if body.get(name) else None


def _entry(entry: LedgerEntry, created: bool) -> tuple[dict, int]:
    return _jsonable(EntrySerializer(entry).data), 201 if created else 200


class PointsAward(APIView):
    """Award points (a bonus, a goodwill gesture): {contact, points, reason, expires_at?}."""

    @extend_schema(
        parameters=[IDEMPOTENCY],
        request=PointsAwardSerializer,
        responses=_written(EntrySerializer),
    )
    def post(self, request: Request) -> Response:
        def produce(contact, body, key):
            entry, created = ledger_grant(
                contact=contact,
                unit=POINTS,
                amount=parse_int(body.get("points"), "points", minimum=1),
                reason=parse_str(body.get("reason"), "reason", max_length=300, required=True),
                key=key,
                expires_at=_when(body, "expires_at"),
                source_type="api",
            )
            return _entry(entry, created)

        return _write(request, "points-award", {"points", "reason", "expires_at"}, produce)


class PointsRedeem(APIView):
    """Redeem points: into store credit ({"into": "credit", "currency"}), into a coupon for
    the same value ({"into": "coupon", "currency"}), or spent as they are ({"into":
    "points"}, e.g. for a reward the shop gives). 409 beyond the balance."""

    @extend_schema(
        parameters=[IDEMPOTENCY],
        request=PointsRedeemSerializer,
        responses=_written(dict, d409="More points than the contact has available"),
    )
    def post(self, request: Request) -> Response:
        def produce(contact, body, key):
            points = parse_int(body.get("points"), "points", minimum=1)
            into = body.get("into", "credit")
            if into == "credit":
                spent, credit, created = points_redeem_for_credit(
                    contact=contact,
                    points=points,
                    currency=parse_str(body.get("currency"), "currency", required=True),
                    key=key,
                )
                return _jsonable(
                    {
                        "points": EntrySerializer(spent).data,
                        "store_credit": EntrySerializer(credit).data,
                    }
                ), 201 if created else 200
            if into == "coupon":
                spent, coupon, created = points_redeem_for_coupon(
                    contact=contact,
                    points=points,
                    currency=parse_str(body.get("currency"), "currency", required=True),
                    key=key,
                )
                return _jsonable(
                    {
                        "points": EntrySerializer(spent).data,
                        "coupon": {
                            "code": coupon.code,
                            "value": str(coupon.value),
                            "currency": coupon.currency,
                        },
                    }
                ), 201 if created else 200
            if into != "points":
                raise KeepersError('into is "credit", "coupon" or "points".', field="into")
            entry, created = ledger_debit(
                contact=contact,
                unit=POINTS,
                amount=points,
                reason=parse_str(body.get("reason"), "reason", max_length=300) or "Redeemed",
                key=key,
                source_type="api",
            )
            return _jsonable({"points": EntrySerializer(entry).data}), 201 if created else 200

        return _write(request, "points-redeem", {"points", "into", "currency", "reason"}, produce)


class CreditGrant(APIView):
    """Grant store credit: {contact, amount, currency, reason, expires_at? | expires_in_days?,
    redeemable_from?} — a welcome credit for 14 days, or shop cash redeemable later."""

    @extend_schema(
        parameters=[IDEMPOTENCY],
        request=CreditGrantSerializer,
        responses=_written(EntrySerializer),
    )
    def post(self, request: Request) -> Response:
        def produce(contact, body, key):
            now = clock.now()
            days = body.get("expires_in_days")
            expires_at, redeemable_from = grant_window(
                expires_at=_when(body, "expires_at"),
                expires_in_days=None
                if days is None
                else parse_int(days, "expires_in_days", minimum=1, maximum=EXPIRES_IN_DAYS_MAX),
                redeemable_from=_when(body, "redeemable_from"),
                now=now,
            )
            entry, created = credit_grant(
                contact=contact,
                amount=parse_money(body.get("amount"), "amount", allow_zero=False),
                currency=parse_str(body.get("currency"), "currency", required=True),
                reason=parse_str(body.get("reason"), "reason", max_length=300, required=True),
                key=key,
                expires_at=expires_at,
                redeemable_from=redeemable_from,
                now=now,
            )
            return _entry(entry, created)

        allowed = {
            "amount",
            "currency",
            "reason",
            "expires_at",
            "expires_in_days",
            "redeemable_from",
        }
        return _write(request, "credit-grant", allowed, produce)


class CreditRedeem(APIView):
    """Redeem store credit against an order: {contact, amount, currency, order_id}; oldest
    expiry first, never more than the balance in that currency (409)."""

    @extend_schema(
        parameters=[IDEMPOTENCY],
        request=CreditRedeemSerializer,
        responses=_written(EntrySerializer, d409="More than the balance in that currency"),
    )
    def post(self, request: Request) -> Response:
        def produce(contact, body, key):
            entry, created = credit_redeem(
                contact=contact,
                amount=parse_money(body.get("amount"), "amount", allow_zero=False),
                currency=parse_str(body.get("currency"), "currency", required=True),
                key=key,
                order_ref=parse_str(body.get("order_id"), "order_id"),
            )
            return _entry(entry, created)

        return _write(request, "credit-redeem", {"amount", "currency", "order_id"}, produce)


def _jsonable(value):
    """Decimals and datetimes as JSON strings, as DRF renders them (stored for replays)."""

    return json.loads(json.dumps(value, cls=JSONEncoder))
