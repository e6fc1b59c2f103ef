"""Campaigns API: campaigns with their stats, enrolling a contact (idempotent), and a
contact's enrollments and messages."""

from __future__ import annotations

import uuid

import django_filters
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import generics, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.api.serializers import CampaignStatsSerializer
from campaigns.models import Campaign, Enrollment, Message, StepRun
from campaigns.selectors import campaign_stats, step_stats
from campaigns.services.subscriptions import subscribe_limits_take, subscribe_request
from campaigns.services.triggers import enrollment_start
from crm.client_ip import client_ip
from crm.errors import KeepersError
from crm.extend import error_responses
from crm.selectors import contact_referenced
from crm.services.idempotency import idempotent
from crm.services.parsing import reject_unknown


class CampaignSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(
        source="published_version.number", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "status",
            "trigger",
            "entry_segment",
            "reentry",
            "reentry_days",
            "starts_at",
            "ends_at",
            "goals",
            "exits",
            "attribution_days",
            "holdout_percent",
            "version",
            "created_at",
            "updated_at",
        ]


class StepRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepRun
        fields = [
            "step_id",
            "step_type",
            "visit",
            "decision",
            "next_step",
            "error",
            "message",
            "ran_at",
        ]


class EnrollmentSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")
    history = StepRunSerializer(source="runs", many=True, read_only=True)

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "campaign",
            "version",
            "contact",
            "status",
            "current_step",
            "next_run_at",
            "entered_at",
            "finished_at",
            "holdout",
            "exit_reason",
            "history",
        ]


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id",
            "contact",
            "campaign",
            "enrollment",
            "step_id",
            "category",
            "to_email",
            "subject",
            "status",
            "esp_message_id",
            "error",
            "created_at",
            "sent_at",
            "opened_at",
            "clicked_at",
        ]


class EnrollInSerializer(serializers.Serializer):
    contact_id = serializers.IntegerField(required=False)
    email = serializers.EmailField(required=False)
    external_id = serializers.CharField(required=False)


class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = CampaignSerializer
    queryset = Campaign.objects.select_related("published_version")
    filterset_fields = ["status"]

    @extend_schema(responses={200: CampaignStatsSerializer})
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk=None) -> Response:
        """Enrolments, messages, conversions and revenue: treatment vs holdout, the lift
        intent-to-treat and sent-only (rate and revenue per contact differences with 95%
        intervals, p-values and a note when too small to call), and per step."""
        campaign = self.get_object()
        stats = {**campaign_stats(campaign=campaign), "steps": step_stats(campaign=campaign)}
        return Response(CampaignStatsSerializer(stats).data)

    @extend_schema(
        request=EnrollInSerializer,
        responses={
            201: EnrollmentSerializer,
            200: OpenApiResponse(EnrollmentSerializer, description="Already enrolled"),
            **error_responses(
                404,
                409,
                d404="No such campaign, or no contact with that contact_id, email or external_id",
                d409="The entry rules keep the contact out (code not_eligible)",
            ),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat-safe: the same key replays the first result",
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def enroll(self, request: Request, pk=None) -> Response:
        """Enroll a contact (by contact_id, email or external_id). With an Idempotency-Key
        the same request never enrolls twice."""
        campaign = self.get_object()
        body = request.data if isinstance(request.data, dict) else {}
        reject_unknown(body, {"contact_id", "email", "external_id"})
        key = request.headers.get("Idempotency-Key")

        def produce() -> tuple[dict, int]:
            contact = contact_referenced(body)
            enrollment, created = enrollment_start(
                campaign=campaign, contact=contact, key=key or str(uuid.uuid4())
            )
            if enrollment is None:
                raise KeepersError(
                    "The campaign's entry rules (re-entry policy or entry segment) "
                    "keep this contact out.",
                    code="not_eligible",
                    status_code=409,
                )
            return EnrollmentSerializer(enrollment).data, 201 if created else 200

        data, status = idempotent(
            scope=f"enroll:{campaign.pk}", key=key, body=body, produce=produce
        )
        return Response(data, status=status)


class SubscribeInSerializer(serializers.Serializer):
    email = serializers.EmailField()
    topics = serializers.ListField(child=serializers.CharField(), required=False)
    source = serializers.CharField(required=False)
    wording_version = serializers.CharField(required=False)
    first_name = serializers.CharField(required=False)
    locale = serializers.CharField(required=False)


class Subscribe(generics.GenericAPIView):
    """Double opt-in: sends a confirmation email; marketing consent is granted only when
    the contact clicks its single-use link. An address gets at most
    KEEPERS_RATE_SUBSCRIBE_ADDRESS requests (3 a day), from the API and the subscribe form
    together; past that, 429 with Retry-After and nothing is sent."""

    serializer_class = SubscribeInSerializer

    @extend_schema(
        responses={
            202: OpenApiResponse(
                inline_serializer("SubscribeAccepted", {"status": serializers.CharField()}),
                description="The confirmation email is on its way",
            ),
            **error_responses(429, d429="Too many requests for this address (code rate_limited)"),
        }
    )
    def post(self, request: Request) -> Response:

        body = request.data if isinstance(request.data, dict) else {}
        reject_unknown(
            body, {"email", "topics", "source", "wording_version", "first_name", "locale"}
        )
        topics = body.get("topics") or []
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise KeepersError("topics is a list of topic slugs.", field="topics")
        # the calls come from the shop's server: the address is limited, not the caller's IP
        subscribe_limits_take(ip=None, email=body.get("email", ""), by_ip=False)
        subscribe_request(
            email=body.get("email", ""),
            topics=topics,
            source=str(body.get("source") or "api")[:100],
            wording_version=str(body.get("wording_version") or "")[:50],
            ip=client_ip(request),
            first_name=str(body.get("first_name") or ""),
            locale=str(body.get("locale") or ""),
        )
        return Response({"status": "confirmation sent"}, status=202)


class ByContact(django_filters.FilterSet):
    contact = django_filters.NumberFilter(field_name="contact_id")
    campaign = django_filters.NumberFilter(field_name="campaign_id")
    status = django_filters.CharFilter()


class EnrollmentList(generics.ListAPIView):
    """Enrolments with their step history; filter by contact, campaign, status."""

    serializer_class = EnrollmentSerializer
    filterset_class = ByContact
    queryset = Enrollment.objects.select_related("version").prefetch_related("runs")


class MessageList(generics.ListAPIView):
    """Messages sent (or skipped, with the reason); filter by contact, campaign, status."""

    serializer_class = MessageSerializer
    filterset_class = ByContact
    queryset = Message.objects.all()
