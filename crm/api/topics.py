"""Subscription topics API: list, read, create and update (a topic's slug names its
consent records, so it is fixed once the topic exists)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from crm.api.schema import error_responses
from crm.models import Topic

SLUG_TAKEN = error_responses(400, d400="Invalid input, or another topic has this slug")


class TopicSerializer(serializers.ModelSerializer):
    class Meta:
        model = Topic
        fields = [
            "id",
            "slug",
            "name",
            "name_ja",
            "description",
            "description_ja",
            "default_opt_in",
            "order",
            "is_active",
        ]
        extra_kwargs = {"order": {"max_value": 32767}}

    def validate_slug(self, value: str) -> str:
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError(
                "A topic's slug names its consent records and cannot change."
            )
        return value


@extend_schema_view(
    create=extend_schema(responses={201: TopicSerializer, **SLUG_TAKEN}),
    partial_update=extend_schema(responses={200: TopicSerializer, **SLUG_TAKEN}),
)
class TopicViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Subscription topics: what the preference centre lists (by `order`, in the
    contact's language: `name_ja` for Japanese, the English `name` where it is blank) and
    what a template or broadcast is about. `default_opt_in` false: only contacts who ticked
    the topic receive its mail."""

    serializer_class = TopicSerializer
    queryset = Topic.objects.all()
    filterset_fields = ["is_active", "default_opt_in"]
    http_method_names = ["get", "post", "patch", "head", "options"]
