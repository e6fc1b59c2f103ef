"""Segments API: list, read, create and update (rules validated like the admin), members
with cursor pagination, a membership check, static add/remove, and a rule preview."""

from __future__ import annotations

from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from crm.api import serializers as s
from crm.api.pagination import NewestFirstCursorPagination
from crm.api.schema import error_responses
from crm.errors import KeepersError
from crm.models import Contact, Segment, SegmentMembership
from crm.services.parsing import parse_str, reject_unknown
from crm.services.segments import (
    segment_count,
    segment_members_add,
    segment_members_remove,
    segment_save,
)

WRITABLE = {"name", "description", "kind", "rules", "is_active", "is_template"}


NAME_TAKEN = error_responses(409, d409="Another segment has this name")


@extend_schema_view(
    create=extend_schema(responses={201: s.SegmentSerializer, **NAME_TAKEN}),
    update=extend_schema(responses={200: s.SegmentSerializer, **NAME_TAKEN}),
    partial_update=extend_schema(responses={200: s.SegmentSerializer, **NAME_TAKEN}),
)
class SegmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Segments. Rules are a JSON tree of all/any/not groups over conditions (see the
    admin's rule editor or docs/architecture.md); invalid rules answer 400 with the path of
    the offending node in `details.path`."""

    serializer_class = s.SegmentSerializer
    queryset = Segment.objects.all()
    filterset_fields = ["kind", "is_active", "is_template"]

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = self._input(request.data)
        if "name" not in data:
            raise KeepersError("Give the segment a name.", field="name", code="required")
        segment = segment_save(**data)
        return Response(self.get_serializer(segment).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args, **kwargs) -> Response:
        segment = self.get_object()
        data = self._input(request.data)
        current = {f: getattr(segment, f) for f in WRITABLE}
        segment = segment_save(segment=segment, **{**current, **data})
        return Response(self.get_serializer(segment).data)

    def _input(self, data: object) -> dict:
        if not isinstance(data, dict):
            raise KeepersError("Send a JSON object.")
        reject_unknown(data, WRITABLE)
        for flag in ("is_active", "is_template"):
            if flag in data and not isinstance(data[flag], bool):
                raise KeepersError("Expected true or false.", field=flag)
        data = dict(data)
        if "name" in data:
            data["name"] = parse_str(data["name"], "name", max_length=200, required=True)
        if "description" in data:
            data["description"] = parse_str(data["description"], "description", max_length=5000)
        if "kind" in data and not isinstance(data["kind"], str):
            raise KeepersError("kind is static or dynamic.", field="kind")
        return data

    @extend_schema(
        request=s.RulesPreviewSerializer,
        responses={200: OpenApiResponse(description='{"count": n, "sample": [...]}')},
    )
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """Count and sample the contacts a rule tree matches, without saving it."""
        rules = request.data.get("rules") if isinstance(request.data, dict) else None
        count, sample = segment_count(rules=rules)
        return Response(
            {
                "count": count,
                "sample": [
                    {"id": c.pk, "email": c.email, "external_id": c.external_id, "stage": c.stage}
                    for c in sample
                ],
            }
        )

    @extend_schema(methods=["GET"], responses=s.SegmentMemberSerializer(many=True))
    @extend_schema(
        methods=["POST", "DELETE"],
        request=s.MembersChangeSerializer,
        responses={
            200: s.MembersChangedSerializer,
            **error_responses(
                400,
                409,
                d400="No contact_ids, emails or external_ids, or not lists",
                d409="The segment is dynamic: its rules decide",
            ),
        },
    )
    @action(detail=True, methods=["get", "post", "delete"])
    def members(self, request: Request, pk=None) -> Response:
        """GET: current members, newest first (cursor pagination; `?history=1` includes
        past memberships). POST / DELETE on a static segment: add or remove contacts by
        contact_ids, emails or external_ids."""
        segment = self.get_object()
        if request.method == "GET":
            rows = SegmentMembership.objects.filter(segment=segment).select_related("contact")
            if request.query_params.get("history") not in ("1", "true"):
                rows = rows.filter(exited_at__isnull=True)
            paginator = NewestFirstCursorPagination()
            page = paginator.paginate_queryset(rows, request, view=self)
            return paginator.get_paginated_response(s.SegmentMemberSerializer(page, many=True).data)
        ids = _contact_ids(request.data)
        if request.method == "POST":
            changed = segment_members_add(segment=segment, contact_ids=ids)
            return Response({"added": changed, "member_count": _count(segment)})
        changed = segment_members_remove(segment=segment, contact_ids=ids)
        return Response({"removed": changed, "member_count": _count(segment)})

    @extend_schema(responses={200: OpenApiResponse(description='{"member": bool, "entered_at"}')})
    @action(detail=True, methods=["get"], url_path=r"members/(?P<contact_id>[0-9]+)")
    def member(self, request: Request, pk=None, contact_id: str = "") -> Response:
        """Is this contact a member now? With when they entered."""
        segment = self.get_object()
        if not Contact.objects.filter(pk=contact_id).exists():
            raise KeepersError(f"No contact #{contact_id}.", code="not_found", status_code=404)
        row = SegmentMembership.objects.filter(
            segment=segment, contact_id=contact_id, exited_at__isnull=True
        ).first()
        return Response({"member": row is not None, "entered_at": row.entered_at if row else None})


def _count(segment: Segment) -> int:
    segment.refresh_from_db(fields=["member_count"])
    return segment.member_count


def _contact_ids(data: object) -> list[int]:
    if not isinstance(data, dict):
        raise KeepersError("Send a JSON object with contact_ids, emails or external_ids.")
    reject_unknown(data, {"contact_ids", "emails", "external_ids"})
    query = Q()
    for key, lookup in (
        ("contact_ids", "pk__in"),
        ("emails", "email__in"),
        ("external_ids", "external_id__in"),
    ):
        values = data.get(key) or []
        if not isinstance(values, list):
            raise KeepersError(f"{key} must be a list.", field=key)
        if len(values) > 10_000:
            raise KeepersError("At most 10,000 contacts a request.", field=key)
        if key == "contact_ids" and not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise KeepersError("contact_ids are whole numbers.", field=key)
        if key == "emails":
            values = [v.strip().lower() for v in values if isinstance(v, str)]
        if values:
            query |= Q(**{lookup: values})
    if not query:
        raise KeepersError("Give contact_ids, emails or external_ids.", field="contact_ids")
    return list(Contact.objects.filter(query).values_list("pk", flat=True))
