"""Broadcasts API: create and edit drafts, preview the audience, schedule, pause, resume,
cancel, and read progress and stats."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import Broadcast, EmailTemplate
from campaigns.services.broadcasts import (
    broadcast_move,
    broadcast_preview,
    broadcast_schedule,
    broadcast_stats,
    broadcast_validate,
)
from crm.errors import KeepersError
from crm.extend import error_responses
from crm.models import Segment, Topic
from crm.services.parsing import check_year

EDITABLE = [
    "name",
    "template",
    "segment",
    "topic",
    "send_date",
    "send_time",
    "timing",
    "repeat",
    "subject_b",
    "ab_percent",
    "ab_metric",
    "ab_wait_hours",
    "cap_24h",
    "cap_7d",
    "max_delay_hours",
    "attribution_days",
]


class BroadcastSerializer(serializers.ModelSerializer):
    template = serializers.SlugRelatedField(
        slug_field="name", queryset=EmailTemplate.objects.all(), help_text="The template's name"
    )
    segment = serializers.PrimaryKeyRelatedField(
        queryset=Segment.objects.all(), required=False, allow_null=True
    )
    topic = serializers.SlugRelatedField(
        slug_field="slug", queryset=Topic.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = Broadcast
        fields = [
            "id",
            *EDITABLE,
            "status",
            "series",
            "audience_size",
            "ab_winner",
            "ab_decided_at",
            "frozen_at",
            "finished_at",
            "cancelled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [f for f in fields if f not in EDITABLE]

    def validate_send_date(self, value):
        try:
            if value is not None:
                check_year(value, "send_date")
        except KeepersError as error:
            raise serializers.ValidationError(error.message) from None
        return value

    def validate(self, attrs: dict) -> dict:
        if self.instance is not None and self.instance.status != Broadcast.Status.DRAFT:
            raise KeepersError(
                "Only a draft can be edited; unschedule it first.",
                code="conflict",
                status_code=409,
            )
        draft = Broadcast(**{**_current(self.instance), **attrs})
        if draft.segment_id or draft.topic_id:  # the audience is checked fully on schedule
            broadcast_validate(draft)
        return attrs


def _current(instance: Broadcast | None) -> dict:
    if instance is None:
        return {}
    return {name: getattr(instance, name) for name in EDITABLE}


# Scheduling checks the broadcast (400 naming the field); a move its status allows not (409).
MOVE_ERRORS = error_responses(
    400, 409, d409="The broadcast's status does not allow this (code conflict)"
)


class PreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.DictField())
    waves = serializers.ListField(child=serializers.DictField())
    starts_at = serializers.DateTimeField()


@extend_schema_view(
    partial_update=extend_schema(
        responses={
            200: BroadcastSerializer,
            **error_responses(409, d409="Only a draft can be edited (code conflict)"),
        }
    )
)
class BroadcastViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """A broadcast is created as a draft, previewed, then scheduled. Its audience is frozen
    when sending starts. `stats` shows progress while it sends and the results after."""

    serializer_class = BroadcastSerializer
    queryset = Broadcast.objects.select_related("template", "topic")
    filterset_fields = ["status", "timing"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    @extend_schema(responses={200: PreviewSerializer})
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk=None) -> Response:
        """Who would get it if it started now: count, a sample, and the local-time waves."""
        return Response(broadcast_preview(self.get_object()))

    @extend_schema(
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="`status` with the progress, engagement, A/B and conversion "
                "figures of campaigns.services.broadcasts.broadcast_stats",
            )
        }
    )
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk=None) -> Response:
        """Progress (sent / remaining / skipped with reasons), engagement, A/B results and
        conversions within the attribution window."""
        broadcast = self.get_object()
        return Response({"status": broadcast.status, **broadcast_stats(broadcast)})

    @extend_schema(request=None, responses={200: BroadcastSerializer, **MOVE_ERRORS})
    @action(detail=True, methods=["post"])
    def schedule(self, request: Request, pk=None) -> Response:
        broadcast = broadcast_schedule(broadcast=self.get_object())
        return Response(self.get_serializer(broadcast).data)

    def _move(self, action_name: str) -> Response:
        broadcast = broadcast_move(broadcast=self.get_object(), action=action_name)
        return Response(self.get_serializer(broadcast).data)

    @extend_schema(request=None, responses={200: BroadcastSerializer, **MOVE_ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk=None) -> Response:
        return self._move("pause")

    @extend_schema(request=None, responses={200: BroadcastSerializer, **MOVE_ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk=None) -> Response:
        return self._move("resume")

    @extend_schema(request=None, responses={200: BroadcastSerializer, **MOVE_ERRORS})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        return self._move("cancel")

    @extend_schema(request=None, responses={200: BroadcastSerializer, **MOVE_ERRORS})
    @action(detail=True, methods=["post"])
    def unschedule(self, request: Request, pk=None) -> Response:
        return self._move("unschedule")
