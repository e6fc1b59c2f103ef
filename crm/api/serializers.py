"""Output shapes and documented input shapes. Input is validated by the services (one set
of rules for the API, the tracking endpoints and the importers)."""

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from crm.models import (
    ConsentRecord,
    Contact,
    Event,
    LeadScorecard,
    MarketingSpend,
    Order,
    OrderLine,
    Product,
    Refund,
    Segment,
    SegmentMembership,
)


class ContactSerializer(serializers.ModelSerializer):
    tags = serializers.SerializerMethodField()
    email_consent = serializers.CharField(
        read_only=True, allow_null=True, help_text="granted, withdrawn, or null (never asked)"
    )

    class Meta:
        model = Contact
        fields = [
            "id",
            "email",
            "external_id",
            "first_name",
            "last_name",
            "phone",
            "locale",
            "timezone",
            "birthday",
            "attributes",
            "tags",
            "source",
            "channel",
            "stage",
            "stage_changed_at",
            "email_consent",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_tags(self, contact) -> list[str]:
        return [tag.name for tag in contact.tags.all()]


class ContactWriteSerializer(serializers.Serializer):
    """Documentation of the writable fields; `stage` is computed and cannot be set."""

    email = serializers.EmailField(required=False, allow_null=True)
    external_id = serializers.CharField(required=False, allow_null=True)
    first_name = serializers.CharField(required=False)
    last_name = serializers.CharField(required=False)
    phone = serializers.CharField(required=False)
    locale = serializers.CharField(required=False)
    timezone = serializers.CharField(required=False, help_text="IANA time zone")
    birthday = serializers.DateField(required=False, allow_null=True)
    attributes = serializers.DictField(required=False, help_text="Merged key by key; null removes")
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    source = serializers.CharField(required=False)
    channel = serializers.CharField(required=False)


class ConsentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "channel",
            "topic",
            "status",
            "source",
            "ip",
            "user_agent",
            "wording_version",
            "recorded_at",
        ]
        read_only_fields = ["id", "ip", "user_agent", "recorded_at"]


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = [
            "id",
            "contact",
            "anonymous_id",
            "name",
            "properties",
            "context",
            "occurred_at",
            "received_at",
            "source",
            "message_id",
        ]


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "An event",
            request_only=True,
            value={
                "name": "Product Viewed",
                "email": "ada@example.com",
                "properties": {"product_id": "sku-1"},
                "occurred_at": "2026-03-09T12:00:00Z",
                "message_id": "evt-1",
            },
        )
    ]
)
class EventInSerializer(serializers.Serializer):
    name = serializers.CharField()
    email = serializers.EmailField(required=False)
    external_id = serializers.CharField(required=False)
    anonymous_id = serializers.CharField(required=False)
    properties = serializers.DictField(required=False)
    context = serializers.DictField(required=False)
    occurred_at = serializers.DateTimeField(required=False)
    message_id = serializers.CharField(required=False, help_text="Deduplicates per source")
    source = serializers.CharField(required=False, default="api")


class ItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(["created", "updated", "duplicate", "error"])
    id = serializers.IntegerField(
        required=False, allow_null=True, help_text="null for a product (its id is product_id)"
    )
    code = serializers.CharField(required=False)
    field = serializers.CharField(required=False)
    message = serializers.CharField(required=False)


class BatchResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField(required=False, help_text="Products: updated in place")
    duplicates = serializers.IntegerField()
    errors = serializers.IntegerField()
    results = ItemResultSerializer(many=True)


class MembersChangedSerializer(serializers.Serializer):
    added = serializers.IntegerField(required=False, help_text="POST: contacts added")
    removed = serializers.IntegerField(required=False, help_text="DELETE: contacts removed")
    member_count = serializers.IntegerField()


class OrderLineSerializer(serializers.ModelSerializer):
    product_id = serializers.CharField(source="product_ref")
    price = serializers.DecimalField(source="unit_price", max_digits=14, decimal_places=4)

    class Meta:
        model = OrderLine
        fields = ["product_id", "name", "category", "quantity", "price"]


class RefundSerializer(serializers.ModelSerializer):
    class Meta:
        model = Refund
        fields = ["id", "external_id", "amount", "reason", "refunded_at"]


class OrderSerializer(serializers.ModelSerializer):
    lines = OrderLineSerializer(many=True, read_only=True)
    refunds = RefundSerializer(many=True, read_only=True)
    contact_email = serializers.CharField(source="contact.email", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "external_id",
            "contact",
            "contact_email",
            "total",
            "currency",
            "refunded_total",
            "status",
            "ordered_at",
            "source",
            "attributes",
            "lines",
            "refunds",
        ]


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "An order",
            request_only=True,
            value={
                "external_id": "1001",
                "email": "ada@example.com",
                "total": "24.00",
                "currency": "USD",
                "ordered_at": "2026-03-09T12:00:00Z",
                "items": [{"product_id": "sku-1", "name": "Mug", "quantity": 2, "price": "12.00"}],
            },
        )
    ]
)
class OrderInSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    email = serializers.EmailField(required=False)
    contact_external_id = serializers.CharField(required=False)
    total = serializers.DecimalField(max_digits=14, decimal_places=4)
    currency = serializers.CharField(help_text="ISO 4217")
    ordered_at = serializers.DateTimeField(required=False)
    items = OrderLineSerializer(many=True, required=False)
    attributes = serializers.DictField(required=False)


class RefundInSerializer(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        required=False,
        help_text="Defaults to everything not yet refunded",
    )
    reason = serializers.CharField(required=False)
    refund_id = serializers.CharField(required=False, help_text="Makes the refund idempotent")
    refunded_at = serializers.DateTimeField(required=False)


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = [
            "product_id",
            "name",
            "url",
            "image_url",
            "price",
            "currency",
            "category",
            "in_stock",
            "replenishable",
            "updated_at",
        ]


class ScorecardSerializer(serializers.ModelSerializer):
    class Meta:
        model = LeadScorecard
        exclude = ["id", "contact"]
        # a contact without a scorecard yet reads an unsaved, empty one
        extra_kwargs = {"updated_at": {"allow_null": True}}


class SegmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "rules",
            "is_active",
            "is_template",
            "member_count",
            "depends_on",
            "time_based",
            "refreshed_at",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "member_count",
            "depends_on",
            "time_based",
            "refreshed_at",
            "version",
            "created_at",
            "updated_at",
        ]


class SegmentMemberSerializer(serializers.ModelSerializer):
    email = serializers.CharField(source="contact.email", read_only=True)
    external_id = serializers.CharField(source="contact.external_id", read_only=True)

    class Meta:
        model = SegmentMembership
        fields = ["contact", "email", "external_id", "entered_at", "exited_at"]


class MembersChangeSerializer(serializers.Serializer):
    contact_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    emails = serializers.ListField(child=serializers.EmailField(), required=False)
    external_ids = serializers.ListField(child=serializers.CharField(), required=False)


class RulesPreviewSerializer(serializers.Serializer):
    rules = serializers.JSONField()


class ProductEventSerializer(serializers.Serializer):
    """For the schema: the request body of POST /api/v1/products/events/."""

    event = serializers.ChoiceField(choices=["Product Restocked", "Price Dropped"])
    product_id = serializers.CharField()
    message_id = serializers.CharField(required=False, help_text="Repeat-safe: deduplicated")
    timestamp = serializers.DateTimeField(required=False)
    properties = serializers.DictField(
        required=False, help_text="Price Dropped: old_price and new_price"
    )


class ProductEventOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    created = serializers.BooleanField()


class BackInStockSerializer(serializers.Serializer):
    product_id = serializers.CharField()
    email = serializers.EmailField(required=False)
    external_id = serializers.CharField(required=False)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A month's spend",
            request_only=True,
            value={"channel": "ads", "month": "2026-03", "amount": "1500.00", "currency": "USD"},
        )
    ]
)
class MarketingSpendSerializer(serializers.ModelSerializer):
    class Meta:
        model = MarketingSpend
        fields = ["id", "channel", "month", "amount", "currency", "note", "created_at"]
