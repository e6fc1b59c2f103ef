"""Email templates in the API: list, create, update, retrieve, delete (refused while a
campaign or broadcast uses it), a preview for a contact with a sample event, and a test
send. The views parse and answer; campaigns.services.templates does the work, as it does
for the admin's preview page."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.models import SUBJECT_WARNING, EmailTemplate, EmailTemplateVariant
from campaigns.services.quality import rendered_warnings
from campaigns.services.rendering import RenderError, subject_sample
from campaigns.services.templates import (
    SAMPLES,
    VARIANT_FIELDS,
    email_preview,
    email_template_delete,
    email_template_save,
    email_test_send,
    preview_event,
    template_source_problems,
)
from crm.api.auth import AnyApiKey
from crm.errors import KeepersError
from crm.extend import error_responses
from crm.models import Contact, Topic
from crm.selectors import contact_referenced
from crm.services.idempotency import idempotent
from crm.services.parsing import reject_unknown

EDITABLE = [
    "name",
    "category",
    "language",
    "format",
    "subject",
    "preheader",
    "reply_to",
    "mjml_body",
    "html_body",
    "text_body",
    "topic",
]


class KnownFieldsOnly(serializers.Serializer):
    """A key the serializer does not have is refused (code unknown_field), not ignored:
    a typo must not save as an edit that did nothing."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            reject_unknown(data, set(self.fields))
        return super().to_internal_value(data)


class EmailTemplateVariantSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    class Meta:
        model = EmailTemplateVariant
        fields = list(VARIANT_FIELDS)
        extra_kwargs = {
            "html_body": {"help_text": "For an HTML template; compiled from mjml_body for blocks"}
        }


class EmailTemplateSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    topic = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Topic.objects.all(),
        required=False,
        allow_null=True,
        help_text="The topic's slug: marketing mail goes only to its subscribers",
    )
    subject_length = serializers.SerializerMethodField(
        help_text="The subject's length as a sample contact reads it (tags rendered); "
        f"mobile clients show 25–30 characters, over {SUBJECT_WARNING} is long"
    )

    variants = EmailTemplateVariantSerializer(
        many=True,
        required=False,
        help_text="The template in other languages; each contact gets the one in their "
        "language, else the template's own. Given, it replaces them all.",
    )

    class Meta:
        model = EmailTemplate
        fields = ["id", *EDITABLE, "variants", "subject_length", "created_at", "updated_at"]
        extra_kwargs = {
            "html_body": {
                "required": False,
                "help_text": "HTML templates: the body (Django template language), put in "
                "the shop's layout. Blocks: compiled from mjml_body, read-only.",
            },
            "mjml_body": {"help_text": "Blocks templates (format mjml): the MJML source"},
        }

    def get_subject_length(self, template: EmailTemplate) -> int:
        return len(subject_sample(template))

    def validate(self, attrs: dict) -> dict:
        # the admin form's checks, on the template as it will be once saved
        current = {
            name: getattr(self.instance, name) for name in EDITABLE if self.instance is not None
        }
        merged = {**current, **attrs}
        format = merged.get("format") or EmailTemplate.Format.HTML
        for field, problem in template_source_problems(merged, format=format):
            raise KeepersError(problem, field=field)
        for n, variant in enumerate(attrs.get("variants") or []):
            for field, problem in template_source_problems(variant, format=format):
                raise KeepersError(problem, field=f"variants[{n}].{field}")
        return attrs

    def create(self, validated_data: dict) -> EmailTemplate:
        variants = validated_data.pop("variants", None)
        return email_template_save(
            template=EmailTemplate(), fields=validated_data, variants=variants
        )

    def update(self, instance: EmailTemplate, validated_data: dict) -> EmailTemplate:
        variants = validated_data.pop("variants", None)
        return email_template_save(template=instance, fields=validated_data, variants=variants)


class EmailPreviewInSerializer(serializers.Serializer):
    contact_id = serializers.IntegerField(required=False, help_text="The contact to render for")
    email = serializers.EmailField(required=False, help_text="…or the contact's address")
    external_id = serializers.CharField(required=False, help_text="…or the shop's id")
    sample = serializers.ChoiceField(
        choices=list(SAMPLES),
        required=False,
        help_text="A sample event from the contact's history: "
        + "; ".join(f"{key}: {label.lower()}" for key, (label, _) in SAMPLES.items()),
    )
    event_name = serializers.CharField(
        required=False, help_text="The event's name when you type its properties"
    )
    properties = serializers.DictField(
        required=False,
        help_text='Event properties, e.g. {"products": [{"product_id": "sku-1", '
        '"quantity": 2}], "coupon": "WELCOME10"}; over a sample, they replace its own',
    )


class TestSendInSerializer(EmailPreviewInSerializer):
    to = serializers.EmailField(help_text="Where the test goes")


class QualityWarningSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="e.g. image_no_alt, link_not_https, html_clipped")
    level = serializers.ChoiceField(choices=["warning", "info"])
    message = serializers.CharField()
    place = serializers.CharField(help_text="What it concerns: the subject, an image, a link")


class EmailPreviewSerializer(serializers.Serializer):
    subject = serializers.CharField()
    subject_length = serializers.IntegerField()
    long_subject = serializers.BooleanField(
        help_text=f"The rendered subject is over {SUBJECT_WARNING} characters"
    )
    html = serializers.CharField(help_text="The HTML part, in the layout, CSS inlined")
    text = serializers.CharField()
    event = serializers.DictField(
        allow_null=True, help_text="The event rendered with (name, properties), null for none"
    )
    warnings = QualityWarningSerializer(
        many=True,
        help_text="The quality checks on this email: text part, unsubscribe link, images "
        "without alt text, links that are not https, size (Gmail clips over 102 KB), "
        "subject length",
    )


class TestSentSerializer(serializers.Serializer):
    to = serializers.EmailField()
    subject = serializers.CharField()


def _rendering_for(
    request: Request, shape: type[serializers.Serializer]
) -> tuple[dict, Contact, object]:
    """The body (checked against `shape`, unknown fields refused), its contact and the
    event to render with."""
    body = request.data if isinstance(request.data, dict) else {}
    reject_unknown(body, set(shape().fields))
    given = shape(data=body)
    given.is_valid(raise_exception=True)
    data = given.validated_data
    contact = contact_referenced(data)
    event = preview_event(
        contact=contact,
        sample=data.get("sample", ""),
        name=data.get("event_name", ""),
        properties=data.get("properties"),
    )
    return data, contact, event


def _event_data(event) -> dict | None:
    if event is None:
        return None
    return {"name": event.name, "properties": event.properties}


RENDER_400 = error_responses(
    400,
    404,
    d400="Bad input, or the template fails for this contact (code render_failed)",
    d404="No such template, or no contact with that contact_id, email or external_id",
)


class EmailTemplateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Email templates in Django's template language: the contact, their links, the
    shop, and `event.properties` (cart items as `event.properties.items`) in context."""

    serializer_class = EmailTemplateSerializer
    queryset = (
        EmailTemplate.objects.select_related("topic").prefetch_related("variants").order_by("name")
    )
    filterset_fields = ["category"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted"),
            **error_responses(
                409, d409="A campaign or broadcast uses it (code template_in_use, details.used_by)"
            ),
        }
    )
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        email_template_delete(template=self.get_object())
        return Response(status=204)

    @extend_schema(
        responses={
            200: EmailTemplateSerializer,
            **error_responses(
                409, d409="Renaming a template a campaign or broadcast uses (template_in_use)"
            ),
        }
    )
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        return super().partial_update(request, *args, **kwargs)

    @extend_schema(
        request=EmailPreviewInSerializer, responses={200: EmailPreviewSerializer, **RENDER_400}
    )
    @action(detail=True, methods=["post"], permission_classes=[AnyApiKey])
    def preview(self, request: Request, pk=None) -> Response:
        """Render for a contact, as a send step would after the sample event (their last
        cart, order or viewed product) or the properties given. Sends nothing; a read-only
        key may ask."""
        template = self.get_object()
        _, contact, event = _rendering_for(request, EmailPreviewInSerializer)
        try:
            rendered = email_preview(template=template, contact=contact, event=event)
        except RenderError as error:
            raise KeepersError(str(error), code="render_failed") from None
        return Response(
            EmailPreviewSerializer(
                {
                    "subject": rendered.subject,
                    "subject_length": len(rendered.subject),
                    "long_subject": len(rendered.subject) > SUBJECT_WARNING,
                    "html": rendered.html,
                    "text": rendered.text,
                    "event": _event_data(event),
                    "warnings": [asdict(w) for w in rendered_warnings(template, contact, rendered)],
                }
            ).data
        )

    @extend_schema(
        request=TestSendInSerializer,
        responses={
            200: TestSentSerializer,
            **RENDER_400,
            **error_responses(
                429, d429="Too many test sends by this key or to this address (rate_limited)"
            ),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat-safe: the same key replays the first answer, sends once",
            )
        ],
    )
    @action(detail=True, methods=["post"], url_path="test-send")
    def test_send(self, request: Request, pk=None) -> Response:
        """Render as `preview` and send it now, subject marked [TEST], to `to`. Needs the
        write scope; KEEPERS_RATE_TEST_SEND per key and KEEPERS_RATE_TEST_SEND_ADDRESS per
        address (429 past them). Nothing is recorded against the contact."""
        template = self.get_object()

        def produce() -> tuple[dict, int]:
            data, contact, event = _rendering_for(request, TestSendInSerializer)
            to = data["to"]
            try:
                sent = email_test_send(
                    template=template,
                    contact=contact,
                    to_email=to,
                    sender=f"api-key:{request.auth.pk}",
                    event=event,
                )
            except RenderError as error:
                raise KeepersError(str(error), code="render_failed") from None
            return {"to": sent.to_email, "subject": sent.subject}, 200

        body = request.data if isinstance(request.data, dict) else {}
        data, status = idempotent(
            scope=f"test-send:{template.pk}",
            key=request.headers.get("Idempotency-Key"),
            body=body,
            produce=produce,
        )
        return Response(data, status=status)
