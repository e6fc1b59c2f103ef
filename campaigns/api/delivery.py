"""Suppressions (list, add, lift) and outbound webhook deliveries (list, read, retry)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import Suppression, WebhookDelivery
from campaigns.services.delivery import suppression_create, suppression_lift
from campaigns.services.webhooks import webhook_retry
from crm.api.schema import error_responses


class SuppressionSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(max_length=254, help_text="Blank once the contact is erased")
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices, default="manual")
    detail = serializers.CharField(
        max_length=5000, help_text="Why (kept with the record): who asked, a ticket"
    )
    active = serializers.SerializerMethodField()

    class Meta:
        model = Suppression
        fields = [
            "id",
            "email",
            "reason",
            "source",
            "detail",
            "active",
            "created_at",
            "lifted_at",
            "lift_note",
        ]
        read_only_fields = ["source", "created_at", "lifted_at", "lift_note"]

    def get_active(self, obj: Suppression) -> bool:
        return obj.lifted_at is None


class LiftSerializer(serializers.Serializer):
    note = serializers.CharField(
        max_length=5000, help_text="Why this address may receive mail again"
    )


class SuppressionFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(
        field_name="lifted_at", lookup_expr="isnull", help_text="true: suppressed now"
    )

    class Meta:
        model = Suppression
        fields = ["reason"]


@extend_schema_view(
    create=extend_schema(
        responses={
            201: SuppressionSerializer,
            200: OpenApiResponse(
                SuppressionSerializer,
                description="The address was suppressed already: that suppression, unchanged",
            ),
        }
    )
)
class SuppressionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Addresses Keepers does not mail (hard bounces, complaints, ESP unsubscribes,
    repeated soft bounces, and those added by staff or here). Lifting keeps the record
    and needs a note; a later bounce or complaint suppresses the address anew."""

    serializer_class = SuppressionSerializer
    queryset = Suppression.objects.all()
    filterset_class = SuppressionFilter

    def create(self, request: Request, *args, **kwargs) -> Response:
        given = self.get_serializer(data=request.data)
        given.is_valid(raise_exception=True)
        suppression, created = suppression_create(
            email=given.validated_data["email"],
            reason=given.validated_data["reason"],
            source=f"api: {request.auth.name}"[:100],
            detail=given.validated_data["detail"],
        )
        return Response(
            self.get_serializer(suppression).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=LiftSerializer,
        responses={
            200: SuppressionSerializer,
            **error_responses(409, d409="The suppression was lifted already (code conflict)"),
        },
    )
    @action(detail=True, methods=["post"])
    def lift(self, request: Request, pk=None) -> Response:
        """Let the address receive mail again, with why (kept with the record)."""
        given = LiftSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        suppression = suppression_lift(
            suppression=self.get_object(),
            user=None,
            note=f"{given.validated_data['note']} (API key {request.auth.name})",
        )
        return Response(self.get_serializer(suppression).data)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(
        choices=[("pending", "pending"), ("delivered", "delivered"), ("failed", "failed")],
        help_text="pending: will be tried again at next_attempt_at; failed: gave up",
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "url",
            "status",
            "payload",
            "idempotency_key",
            "attempts",
            "last_status_code",
            "last_error",
            "last_response",
            "next_attempt_at",
            "created_at",
            "delivered_at",
            "enrollment",
        ]
        read_only_fields = fields


class WebhookDeliveryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Outbound webhooks (a journey's webhook step): each a signed POST retried with
    backoff until the integrator answers 2xx, or given up after 8 tries."""

    serializer_class = WebhookDeliverySerializer
    queryset = WebhookDelivery.objects.all()
    filterset_fields = ["status"]

    @extend_schema(
        request=None,
        responses={
            202: WebhookDeliverySerializer,
            **error_responses(409, d409="The webhook was delivered already (code conflict)"),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk=None) -> Response:
        """Try again now (a failed delivery gets one more try); the try runs in the
        background: read the delivery again for its outcome."""
        delivery = webhook_retry(delivery=self.get_object())
        return Response(self.get_serializer(delivery).data, status=status.HTTP_202_ACCEPTED)
