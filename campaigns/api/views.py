"""Campaigns API: campaigns with their stats, enrolling a contact (idempotent), and a
contact's enrollments and messages."""

from __future__ import annotations

import copy
import uuid

import django_filters
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.api.serializers import CampaignStatsSerializer
from campaigns.api.templates import KnownFieldsOnly
from campaigns.models import Campaign, CampaignVersion, Enrollment, Message, StepRun
from campaigns.selectors import campaign_stats, campaign_versions, step_stats
from campaigns.services.definitions import (
    campaign_problems,
    campaign_publish,
    campaign_set_status,
    campaign_validate,
)
from campaigns.services.subscriptions import subscribe_limits_take, subscribe_request
from campaigns.services.triggers import enrollment_start
from crm.client_ip import client_ip
from crm.errors import KeepersError, NotFound
from crm.extend import error_responses
from crm.models import Topic
from crm.selectors import contact_referenced
from crm.services.idempotency import idempotent
from crm.services.parsing import check_json, reject_unknown


class CampaignSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    """A campaign and its draft. A draft saves as it is (`validate` lists its problems,
    `publish` refuses them); an active or paused campaign's edits must be valid, as its
    trigger and entry rules apply at once (its steps wait for `publish`)."""

    version = serializers.SerializerMethodField(help_text="The live version's number")
    topic = serializers.SlugRelatedField(
        slug_field="slug", queryset=Topic.objects.all(), required=False, allow_null=True
    )
    trigger = serializers.JSONField(
        required=False, help_text='e.g. {"type": "event", "name": "Checkout Started"}'
    )
    goals = serializers.JSONField(
        required=False, help_text='e.g. [{"event": "Order Completed", "match": "cart"}]'
    )
    exits = serializers.JSONField(
        required=False, help_text='e.g. [{"type": "stage_changed", "to": "lapsed"}]'
    )
    steps = serializers.JSONField(
        required=False,
        help_text="The draft's steps in order, each with id, type, config and branches "
        '(`next`, …); e.g. [{"id": "hello", "type": "send_email", "config": {"template": '
        '"welcome"}}]',
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
            "topic",
            "priority",
            "cap_24h",
            "cap_7d",
            "max_delay_hours",
            "steps",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_version(self, campaign: Campaign) -> int | None:
        version = campaign.published_version
        return version.number if version else None

    def validate(self, attrs: dict) -> dict:
        for field, kind in (("trigger", dict), ("goals", list), ("exits", list), ("steps", list)):
            if field in attrs:
                if not isinstance(attrs[field], kind):
                    raise KeepersError(
                        f"{field} is a JSON {'object' if kind is dict else 'list'}.", field=field
                    )
                check_json(attrs[field], field)
        campaign = self.instance
        if campaign is not None and campaign.status == Campaign.Status.ARCHIVED:
            raise KeepersError(
                "An archived campaign is not edited; publish it to bring it back first.",
                code="conflict",
                status_code=409,
            )
        if campaign is not None and campaign.status != Campaign.Status.DRAFT:
            probe = copy.copy(campaign)
            for name, value in attrs.items():
                setattr(probe, name, value)
            campaign_validate(probe)
        return attrs


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


class ProblemSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Where in the definition, e.g. steps[2].config.hours")
    message = serializers.CharField()
    code = serializers.CharField()


class ValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = ProblemSerializer(many=True, help_text="Every problem of the draft, in order")


class VersionSerializer(serializers.ModelSerializer):
    enrolled = serializers.IntegerField(help_text="Enrolments on this version")

    class Meta:
        model = CampaignVersion
        fields = ["number", "published_at", "steps", "goals", "exits", "enrolled"]


class VersionStatsSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    steps = serializers.DictField(
        child=serializers.DictField(),
        help_text="Per step id of this version: waiting, passed, sent, engagement, converted",
    )


# A move the campaign's definition refuses is a 400 naming the path (code invalid_campaign).
MOVE = {
    "request": None,
    "responses": {
        200: CampaignSerializer,
        **error_responses(400, d400="The draft is not valid: details.path says where"),
    },
}


@extend_schema_view(
    partial_update=extend_schema(
        responses={
            200: CampaignSerializer,
            **error_responses(409, d409="An archived campaign is not edited (code conflict)"),
        }
    )
)
class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Campaigns: a draft is created and edited, validated, published as a version (and
    activated), paused, resumed and archived — the admin's actions, through the same
    services (campaigns.services.definitions)."""

    serializer_class = CampaignSerializer
    queryset = Campaign.objects.select_related("published_version", "topic")
    filterset_fields = ["status"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    @extend_schema(responses={200: ValidationSerializer})
    @action(detail=True, methods=["get"])
    def validate(self, request: Request, pk=None) -> Response:
        """Every problem of the draft, each with its path (`steps[1].config.hours`); an
        empty list when it can be published."""
        problems = campaign_problems(self.get_object())
        errors = [{"path": p.path, "message": p.message, "code": p.code} for p in problems]
        return Response({"valid": not errors, "errors": errors})

    @extend_schema(**MOVE)
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk=None) -> Response:
        """Validate the draft, publish it as a new version (the same version when nothing
        changed) and activate the campaign. Running enrolments stay on their version."""
        campaign_publish(campaign=self.get_object())
        return Response(self.get_serializer(self.get_queryset().get(pk=pk)).data)

    @extend_schema(request=None, responses={200: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk=None) -> Response:
        """Nobody new enrols and enrolments wait where they are until it resumes."""
        campaign_set_status(campaign=self.get_object(), status=Campaign.Status.PAUSED)
        return Response(self.get_serializer(self.get_queryset().get(pk=pk)).data)

    @extend_schema(**MOVE)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk=None) -> Response:
        """Active again, on the draft as it is now (published first, as the admin does)."""
        return self.publish(request, pk)

    @extend_schema(request=None, responses={200: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk=None) -> Response:
        campaign_set_status(campaign=self.get_object(), status=Campaign.Status.ARCHIVED)
        return Response(self.get_serializer(self.get_queryset().get(pk=pk)).data)

    @extend_schema(responses={200: VersionSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None, filterset_fields=[])
    def versions(self, request: Request, pk=None) -> Response:
        """Every published version, newest first, with its enrolment count."""
        versions = campaign_versions(campaign=self.get_object())
        return Response(VersionSerializer(versions, many=True).data)

    @extend_schema(
        responses={
            200: VersionStatsSerializer,
            **error_responses(404, d404="No such campaign, or no such version of it"),
        }
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"versions/(?P<number>[0-9]+)/stats",
    )
    def version_stats(self, request: Request, pk=None, number=None) -> Response:
        """Per step of one version: waiting there now, passed, sent, opened, clicked."""
        campaign = self.get_object()
        number = int(number)
        if not campaign.versions.filter(number=number).exists():
            raise NotFound("This campaign has no such version.", field="number")
        steps = step_stats(campaign=campaign, version_number=number)
        return Response(VersionStatsSerializer({"number": number, "steps": steps}).data)

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
