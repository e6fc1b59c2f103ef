"""Staff screens for campaigns: steps with their branches, validated before activation;
a diagram with per-step counts; template preview for a contact and test sends; pause,
resume, publish; enrolling a segment; enrollments with their version and history."""

from __future__ import annotations

import json
import uuid

from csp import constants as csp
from csp.decorators import csp_replace
from django import forms
from django.contrib import admin, messages
from django.core.mail import get_connection
from django.db.models import Count
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template import TemplateSyntaxError, engines
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns import admin_broadcasts  # noqa: F401  (the broadcast admin registers itself)
from campaigns.dashboard import CAMPAIGN_RESULTS
from campaigns.models import (
    SUBJECT_WARNING,
    Campaign,
    CampaignVersion,
    DeliveryEvent,
    EmailTemplate,
    Enrollment,
    Message,
    StepRun,
    Suppression,
)
from campaigns.selectors import campaign_stats, deliverability_by_day, step_stats
from campaigns.services.definitions import campaign_publish, campaign_set_status, campaign_validate
from campaigns.services.delivery import suppression_lift
from campaigns.services.messages import message_build
from campaigns.services.recovery import messages_resend
from campaigns.services.rendering import RenderError, email_render
from campaigns.services.sending import email_build
from campaigns.services.triggers import segment_enroll
from campaigns.steps import REGISTRY, DefinitionError
from crm import clock
from crm.admin_access import admin_log, admin_log_many, admin_permission, admin_require
from crm.admin_confirm import action_confirmed
from crm.admin_dashboard import register_dashboard_panel
from crm.admin_export import CsvExportMixin
from crm.errors import KeepersError
from crm.models import Contact, Segment


class EmailTemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = ["name", "category", "subject", "preheader", "reply_to", "html_body", "text_body"]
        widgets = {
            "html_body": forms.Textarea(attrs={"rows": 16, "cols": 90}),
            "text_body": forms.Textarea(attrs={"rows": 6, "cols": 90}),
        }

    def clean(self):
        data = super().clean()

        for field in ("subject", "preheader", "html_body", "text_body"):
            try:
                engines["django"].from_string(data.get(field) or "")
            except TemplateSyntaxError as error:
                self.add_error(field, f"Template error: {error}")
        return data


class PreviewForm(forms.Form):
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.all(),
        widget=forms.NumberInput,
        help_text="The contact id to render for (see the contact list)",
    )
    send_test_to = forms.EmailField(
        required=False, help_text="Send this rendering to a staff address"
    )


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    form = EmailTemplateForm
    list_display = ["name", "category", "subject", "subject_length", "updated_at"]
    list_filter = ["category"]
    search_fields = ["name", "subject"]

    @admin.display(description="subject length")
    def subject_length(self, obj: EmailTemplate) -> str:
        n = len(obj.subject)
        return format_html("<strong>{} ⚠</strong>", n) if n > SUBJECT_WARNING else str(n)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if len(obj.subject) > SUBJECT_WARNING:
            messages.warning(
                request,
                f"The subject is {len(obj.subject)} characters long; mobile mail "
                f"clients show only the first 25–30.",
            )

    def get_urls(self):
        return [
            path(
                "<int:pk>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="campaigns_emailtemplate_preview",
            ),
            *super().get_urls(),
        ]

    # The preview's iframe (srcdoc, sandboxed: no scripts) inherits this page's policy and
    # shows an email: inline styles and remote images, as mail clients show them.
    @csp_replace(
        {"style-src": [csp.SELF, csp.UNSAFE_INLINE], "img-src": [csp.SELF, "data:", "https:"]}
    )
    @admin_permission("campaigns.view_emailtemplate", "crm.view_contact", "campaigns.send_test")
    def preview_view(self, request: HttpRequest, pk: int):
        template = get_object_or_404(EmailTemplate, pk=pk)
        form = PreviewForm(request.POST or request.GET or None)
        rendered, error = None, ""
        if form.is_bound and form.is_valid():
            contact = form.cleaned_data["contact"]
            try:
                rendered = email_render(template=template, contact=contact)
            except RenderError as failure:
                error = str(failure)
            if rendered and request.method == "POST" and form.cleaned_data["send_test_to"]:
                test = message_build(
                    contact=contact,
                    rendered=rendered,
                    template=template,
                    to_email=form.cleaned_data["send_test_to"],
                    subject_prefix="[TEST] ",
                    idempotency_key=f"test:{uuid.uuid4()}",
                    now=clock.now(),
                    step_id="test",
                )
                get_connection().send_messages([email_build(test)])
                admin_log(
                    request,
                    template,
                    f"Sent a test for contact #{contact.pk} to {form.cleaned_data['send_test_to']}.",
                )
                messages.success(request, f"Test sent to {form.cleaned_data['send_test_to']}.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": template,
            "title": f"Preview: {template}",
            "form": form,
            "rendered": rendered,
            "error": error,
            "long_subject": len(template.subject) > SUBJECT_WARNING,
        }
        return TemplateResponse(request, "admin/campaigns/emailtemplate/preview.html", context)


class CampaignForm(forms.ModelForm):
    trigger = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 90}),
        help_text='e.g. {"type": "event", "name": "Checkout Started"}, '
        '{"type": "segment_entered", "segment": 3}, '
        '{"type": "date", "field": "birthday", "offset_days": 0}',
    )
    goals = forms.JSONField(
        required=False,
        initial=list,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 90}),
        help_text='e.g. [{"event": "Order Completed", "match": "cart"}]',
    )
    exits = forms.JSONField(
        required=False,
        initial=list,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 90}),
        help_text='e.g. [{"type": "segment_exited", "segment": 3}, '
        '{"type": "stage_changed", "to": "lapsed"}]',
    )
    steps = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 90}),
        help_text="The steps in order, each with its id, type, config and branches ("
        + ", ".join(f"{k}: {' / '.join(v.branches) or 'none'}" for k, v in REGISTRY.items())
        + "). A branch set to null ends the sequence.",
    )

    class Meta:
        model = Campaign
        fields = [
            "name",
            "description",
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
            "steps",
        ]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        probe = Campaign(
            **{k: data.get(k) for k in ("trigger", "reentry", "reentry_days", "holdout_percent")},
            goals=data.get("goals") or [],
            exits=data.get("exits") or [],
            steps=data.get("steps") or [],
        )
        try:
            campaign_validate(probe)
        except DefinitionError as error:
            field = error.path.split(".")[0].split("[")[0]
            self.add_error(field if field in self.fields else None, error.message)
        return data


class EnrollSegmentForm(forms.Form):
    segment = forms.ModelChoiceField(queryset=Segment.objects.filter(is_template=False))


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ["name", "status", "trigger_summary", "version", "enrolled", "updated_at"]
    list_filter = ["status"]
    search_fields = ["name", "description"]
    actions = ["publish", "pause", "resume", "archive"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_select_related = ["published_version"]

    class Media:
        js = ["campaigns/steps_editor.js"]

    @admin.display(description="trigger")
    def trigger_summary(self, obj: Campaign) -> str:
        trigger = obj.trigger or {}
        return " ".join(str(v) for v in trigger.values())

    @admin.display(description="version")
    def version(self, obj: Campaign) -> str:
        return f"v{obj.published_version.number}" if obj.published_version else "draft"

    @admin.display(description="enrolments")
    def enrolled(self, obj: Campaign) -> int:
        return obj.enrolled_count

    def get_queryset(self, request):

        return super().get_queryset(request).annotate(enrolled_count=Count("enrollments"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = Campaign.objects.filter(pk=object_id).select_related("published_version").first()
        extra = extra_context or {}
        if campaign is not None:
            extra["diagram"] = diagram(campaign)
            extra["stats"] = campaign_stats(campaign=campaign)
            extra["draft_differs"] = bool(
                campaign.published_version and campaign.published_version.steps != campaign.steps
            )
        return super().change_view(request, object_id, form_url, extra)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.status == Campaign.Status.ACTIVE and "steps" in form.changed_data:
            messages.info(
                request,
                "The draft changed: use “Publish” to make it the new version. "
                "Running enrolments stay on the version they started on.",
            )

    def get_urls(self):
        return [
            path(
                "<int:pk>/enroll-segment/",
                self.admin_site.admin_view(self.enroll_segment_view),
                name="campaigns_campaign_enroll_segment",
            ),
            *super().get_urls(),
        ]

    @admin_permission("campaigns.view_campaign", "campaigns.enroll_segment")
    def enroll_segment_view(self, request: HttpRequest, pk: int):
        """GET: choose a segment, then see how many it would enroll and confirm. POST:
        enroll its current members (the campaign's entry rules decide each one)."""
        campaign = get_object_or_404(Campaign, pk=pk)
        form = EnrollSegmentForm(request.POST if request.method == "POST" else request.GET or None)
        if request.method == "POST" and form.is_valid():
            segment = form.cleaned_data["segment"]
            if campaign.status != Campaign.Status.ACTIVE:
                messages.error(request, "Activate (publish) the campaign first.")
            else:
                new = segment_enroll(
                    campaign=campaign,
                    segment_id=segment.pk,
                    key=f"seg{segment.pk}-{uuid.uuid4().hex[:8]}",
                )
                admin_log(request, campaign, f"Enrolled {len(new)} members of {segment}.")
                messages.success(
                    request, f"{len(new)} contacts enrolled (the entry rules decided the rest)."
                )
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        chosen = form.cleaned_data["segment"] if form.is_bound and form.is_valid() else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": f"Enroll a segment in {campaign}",
            "original": campaign,
            "active": campaign.status == Campaign.Status.ACTIVE,
            "chosen": chosen,
        }
        if chosen is not None:
            members = chosen.memberships.filter(exited_at__isnull=True)
            context["members"] = members.count()
            context["already"] = (
                members.filter(contact__enrollments__campaign=campaign)
                .values("contact_id")
                .distinct()
                .count()
            )
        return TemplateResponse(request, "admin/campaigns/campaign/enroll_segment.html", context)

    @admin.action(description="Publish (validate, new version, activate)", permissions=["change"])
    def publish(self, request, queryset):
        admin_require(request, "campaigns.change_campaign")
        for campaign in queryset:
            try:
                version = campaign_publish(campaign=campaign)
                admin_log(request, campaign, f"Published version {version.number}.")
                messages.success(request, f"{campaign}: version {version.number} is live.")
            except KeepersError as error:
                messages.error(request, f"{campaign}: {error.message}")

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request, queryset):
        admin_require(request, "campaigns.change_campaign")
        for campaign in queryset:
            campaign_set_status(campaign=campaign, status=Campaign.Status.PAUSED)
            admin_log(request, campaign, "Paused.")
        messages.success(request, "Paused: enrolments wait where they are.")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request, queryset):
        self.publish(request, queryset)

    @admin.action(description="Archive…", permissions=["change"])
    def archive(self, request, queryset):
        admin_require(request, "campaigns.change_campaign")
        asking = action_confirmed(
            request,
            queryset,
            model_admin=self,
            title="Archive campaigns?",
            question="Archive",
            button="Yes, archive them",
            affected=queryset.exclude(status=Campaign.Status.ARCHIVED),
            warning="An archived campaign enrols no one and its enrolments stop where they "
            "are; publishing it again starts a new version.",
        )
        if asking is not None:
            return asking
        for campaign in queryset:
            campaign_set_status(campaign=campaign, status=Campaign.Status.ARCHIVED)
            admin_log(request, campaign, "Archived.")


def diagram(campaign: Campaign) -> list[dict]:
    """The published version's steps in order, with their branches and counts."""
    version = campaign.published_version
    steps = version.steps if version else campaign.steps
    counts = step_stats(campaign=campaign) if version else {}
    rows = []
    for step in steps:
        kind = REGISTRY.get(step.get("type"))
        branches = [(label, t or "end") for label, _, t in (kind.targets(step) if kind else ())]
        summary = json.dumps(step.get("config", {}), ensure_ascii=False)
        rows.append(
            {
                "id": step.get("id"),
                "type": step.get("type"),
                "config": summary[:160],
                "branches": branches,
                "counts": counts.get(step.get("id"), {}),
            }
        )
    return rows


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    readonly_fields = [
        "ran_at",
        "step_id",
        "step_type",
        "visit",
        "decision",
        "next_step",
        "message",
        "error",
    ]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = [
        "contact",
        "campaign",
        "version_number",
        "status",
        "current_step",
        "next_run_at",
        "deferred",
        "holdout",
        "entered_at",
    ]
    list_filter = ["status", "campaign", "holdout"]
    date_hierarchy = "entered_at"
    list_select_related = ["contact", "campaign", "version"]
    search_fields = ["contact__email"]
    raw_id_fields = ["contact", "trigger_event"]
    inlines = [StepRunInline]
    show_full_result_count = False
    readonly_fields = [
        "campaign",
        "version",
        "contact",
        "status",
        "current_step",
        "next_run_at",
        "entered_at",
        "finished_at",
        "holdout",
        "trigger_key",
        "trigger_event",
        "state",
        "exit_reason",
        "waiting_for",
    ]

    @admin.display(description="held by the send policy")
    def deferred(self, obj: Enrollment) -> str:
        held = (obj.state or {}).get("deferred")
        return f"until {held['until'][:16].replace('T', ' ')} UTC: {held['reason']}" if held else ""

    @admin.display(description="version", ordering="version__number")
    def version_number(self, obj: Enrollment) -> str:
        return f"v{obj.version.number}"

    def has_add_permission(self, request):
        return False


@admin.register(Message)
class MessageAdmin(CsvExportMixin, admin.ModelAdmin):
    csv_columns = [
        ("id", "pk"),
        ("to_email", "to_email"),
        ("contact_id", "contact_id"),
        ("campaign", "campaign.name"),
        ("broadcast", "broadcast.name"),
        ("step_id", "step_id"),
        ("template", "template.name"),
        ("category", "category"),
        ("topic", "topic"),
        ("subject", "subject"),
        ("status", "status"),
        ("error", "error"),
        ("created_at", "created_at"),
        ("sent_at", "sent_at"),
        ("delivered_at", "delivered_at"),
        ("opened_at", "opened_at"),
        ("clicked_at", "clicked_at"),
    ]
    change_list_template = "admin/campaigns/message/change_list.html"

    def get_urls(self):
        return [
            path(
                "deliverability/",
                self.admin_site.admin_view(self.deliverability_view),
                name="campaigns_message_deliverability",
            ),
            *super().get_urls(),
        ]

    @admin_permission("campaigns.view_message")
    def deliverability_view(self, request: HttpRequest):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Deliverability, last 30 days",
            "rows": deliverability_by_day(days=30),
        }
        return TemplateResponse(request, "admin/campaigns/message/deliverability.html", context)

    list_display = [
        "to_email",
        "subject",
        "campaign",
        "step_id",
        "category",
        "status",
        "sent_at",
        "opened_at",
        "clicked_at",
    ]
    list_filter = ["status", "category", "campaign", "broadcast", "topic"]
    date_hierarchy = "created_at"
    list_select_related = ["campaign"]
    search_fields = ["to_email", "subject", "esp_message_id"]
    raw_id_fields = ["contact", "enrollment", "template"]
    show_full_result_count = False
    exclude = ["html"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Message._meta.fields if f.name != "html"]

    def has_add_permission(self, request):
        return False

    actions = ["resend_unconfirmed"]

    @admin.action(description="Resend the selected unconfirmed messages…", permissions=["change"])
    def resend_unconfirmed(self, request, queryset):
        """A deliberate resend after a crash, behind a confirmation page: an unconfirmed
        message may have reached the customer already, and would then arrive twice."""
        admin_require(request, "campaigns.change_message")
        unconfirmed = queryset.filter(status=Message.Status.UNCONFIRMED)
        if request.POST.get("confirmed") == "yes":
            ids = list(unconfirmed.values_list("pk", flat=True))
            count = messages_resend(ids=ids)
            admin_log_many(request, Message.objects.filter(pk__in=ids), "Queued again (resend).")
            self.message_user(
                request,
                f"{count} unconfirmed message(s) queued again; the others were not unconfirmed.",
                messages.SUCCESS if count else messages.WARNING,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Resend unconfirmed messages?",
            "count": unconfirmed.count(),
            "ignored": queryset.exclude(status=Message.Status.UNCONFIRMED).count(),
            "ids": list(queryset.values_list("pk", flat=True)[:10_000]),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/campaigns/message/resend_unconfirmed.html", context)


@admin.register(CampaignVersion)
class CampaignVersionAdmin(admin.ModelAdmin):
    """Published versions, as they ran: read here, written only by publishing (a version
    is immutable; enrolments point at it)."""

    list_display = ["__str__", "campaign", "number", "published_at", "step_count"]
    list_select_related = ["campaign"]  # __str__ names the campaign: one join, not a query a row
    list_filter = ["campaign__status"]
    search_fields = ["campaign__name"]
    date_hierarchy = "published_at"
    ordering = ["-published_at", "-pk"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="steps")
    def step_count(self, obj: CampaignVersion) -> int:
        return len(obj.steps)


class LiftForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this address may receive mail again (kept with the record)",
    )


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "Suppressed now"), ("no", "Lifted")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Addresses Keepers does not mail. Lifting needs a reason and keeps the record."""

    list_display = ["email", "reason", "source", "created_at", "lifted_at", "lifted_by"]
    list_filter = [ActiveFilter, "reason"]
    search_fields = ["email", "detail", "lift_note"]
    list_select_related = ["lifted_by"]
    readonly_fields = [
        "email",
        "email_hash",
        "reason",
        "source",
        "detail",
        "created_at",
        "lifted_at",
        "lifted_by",
        "lift_note",
    ]
    actions = ["lift"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(
        description="Lift the selected suppressions (a note is required)", permissions=["change"]
    )
    def lift(self, request, queryset):
        admin_require(request, "campaigns.change_suppression")
        if "apply" in request.POST:
            form = LiftForm(request.POST)
            if form.is_valid():
                lifted = 0
                for suppression in queryset.filter(lifted_at__isnull=True):
                    suppression_lift(
                        suppression=suppression, user=request.user, note=form.cleaned_data["note"]
                    )
                    admin_log(request, suppression, f"Lifted: {form.cleaned_data['note']}")
                    lifted += 1
                messages.success(request, f"{lifted} suppressions lifted.")
                return None
        else:
            form = LiftForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "items": queryset,
            "title": "Lift suppressions",
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/campaigns/suppression/lift.html", context)


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(admin.ModelAdmin):
    list_display = [
        "occurred_at",
        "esp_name",
        "event_type",
        "recipient",
        "message",
        "reject_reason",
    ]
    list_filter = ["esp_name", "event_type"]
    search_fields = ["recipient", "esp_message_id", "event_id"]
    list_select_related = ["message"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in DeliveryEvent._meta.fields]

    def has_add_permission(self, request):
        return False


# campaign results on crm's metrics dashboard (/admin/metrics/), after crm's own charts
register_dashboard_panel(CAMPAIGN_RESULTS)
