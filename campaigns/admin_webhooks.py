"""Staff screen for outbound webhook deliveries: the log with its status, the payload and
the last answer shown readably, and "retry now" (campaigns.services.webhooks.webhook_retry)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from campaigns.models import WebhookDelivery
from campaigns.services.webhooks import MAX_ATTEMPTS, webhook_retry
from crm.admin_access import admin_log, admin_require
from crm.errors import KeepersError


def _indented(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Pending (will be tried again)"),
            ("failed", f"Failed (gave up after {MAX_ATTEMPTS} tries)"),
            ("delivered", "Delivered"),
        ]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class AnswerFilter(admin.SimpleListFilter):
    title = "last answer"
    parameter_name = "answer"

    def lookups(self, request, model_admin):
        return [("2xx", "2xx"), ("4xx", "4xx"), ("5xx", "5xx"), ("none", "No answer (network)")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(attempts__gt=0, last_status_code__isnull=True)
        if value in ("2xx", "4xx", "5xx"):
            low = int(value[0]) * 100
            return queryset.filter(last_status_code__gte=low, last_status_code__lt=low + 100)
        return queryset


class RetryForm(forms.Form):
    confirm = forms.BooleanField(
        required=True, label="Send these webhooks again now (each with its Idempotency-Key)"
    )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "url",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = [StatusFilter, AnswerFilter, "created_at"]
    search_fields = ["url", "idempotency_key", "last_error"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    actions = ["retry_now"]
    fields = [
        "url",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "delivered_at",
        "answer",
        "answer_body",
        "payload_pretty",
        "idempotency_key",
        "enrollment_link",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="last answer")
    def answer(self, obj: WebhookDelivery) -> str:
        if not obj.attempts:
            return "Not tried yet."
        code = f"HTTP {obj.last_status_code}" if obj.last_status_code else "No HTTP answer"
        return format_html(
            "{}{}", code, format_html(" — {}", obj.last_error) if obj.last_error else ""
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookDelivery) -> str:
        return format_html('<pre class="kp-json">{}</pre>', _indented(obj.payload))

    @admin.display(description="answer's body")
    def answer_body(self, obj: WebhookDelivery) -> str:
        if not obj.last_response:
            return "—"
        try:
            shown = _indented(json.loads(obj.last_response))
        except ValueError:  # not JSON (or cut at 2,000 characters): as it came
            shown = obj.last_response
        return format_html('<pre class="kp-json">{}</pre>', shown)

    @admin.display(description="enrollment")
    def enrollment_link(self, obj: WebhookDelivery) -> str:
        if obj.enrollment_id is None:
            return "—"
        url = reverse("admin:campaigns_enrollment_change", args=[obj.enrollment_id])
        return format_html('<a href="{}">#{}</a>', url, obj.enrollment_id)

    @admin.action(description="Retry the selected webhooks now", permissions=["change"])
    def retry_now(self, request, queryset):
        admin_require(request, "campaigns.change_webhookdelivery")
        deliveries = list(queryset.order_by("pk"))
        if "apply" in request.POST:
            form = RetryForm(request.POST)
            if form.is_valid():
                retried, refused = 0, []
                for delivery in deliveries:
                    try:
                        webhook_retry(delivery=delivery)
                    except KeepersError as why:
                        refused.append(f"#{delivery.pk}: {why.message}")
                        continue
                    admin_log(request, delivery, "Retry now: a new try was queued.")
                    retried += 1
                if retried:
                    messages.success(request, f"{retried} webhooks queued for a new try.")
                for line in refused:
                    messages.warning(request, line)
                return None
        else:
            form = RetryForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "items": deliveries,
            "title": "Retry webhooks now",
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/campaigns/webhookdelivery/retry.html", context)
