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
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from campaigns import (  # noqa: F401  (the broadcast, survey and webhook admins register themselves)
    admin_broadcasts,
    admin_surveys,
    admin_webhooks,
)
from campaigns.admin_samples import SampleEventForm
from campaigns.dashboard import CAMPAIGN_RESULTS
from campaigns.models import (
    SUBJECT_WARNING,
    Campaign,
    CampaignVersion,
    DeliveryEvent,
    EmailTemplate,
    EmailTemplateVariant,
    Enrollment,
    Message,
    StepRun,
    Suppression,
    mjml_compiled,
)
from campaigns.selectors import campaign_stats, deliverability_by_day, step_counts
from campaigns.services.definitions import (
    EXIT_KEYS,
    campaign_publish,
    campaign_set_status,
    campaign_validate,
    steps_validate,
)
from campaigns.services.delivery import suppression_create, suppression_lift
from campaigns.services.quality import rendered_warnings, template_languages, template_quality
from campaigns.services.recovery import messages_resend
from campaigns.services.rendering import RenderError, subject_sample
from campaigns.services.templates import (
    VARIANT_FIELDS,
    email_preview,
    email_test_send,
    preview_event,
    template_source_problems,
)
from campaigns.services.triggers import segment_enroll
from campaigns.starters import starter_get, starter_install, starters
from campaigns.steps import REGISTRY, DefinitionError
from campaigns.widgets import EmailBuilderWidget
from crm.admin_access import admin_log, admin_log_many, admin_permission, admin_require
from crm.admin_confirm import action_confirmed
from crm.admin_dashboard import register_dashboard_panel
from crm.admin_export import CsvExportMixin
from crm.admin_segments import rule_builder_text
from crm.errors import KeepersError
from crm.kind_forms import KindWidget
from crm.kinds import kinds_document
from crm.models import Contact, Segment
from crm.services.privacy import address_hash


class EmailTemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = [
            "name",
            "category",
            "topic",
            "language",
            "format",
            "subject",
            "preheader",
            "reply_to",
            "mjml_body",
            "html_body",
            "text_body",
        ]
        labels = {
            "category": _("Kind of email"),
            "topic": _("Topic"),
            "language": _("Language"),
            "format": _("Built with"),
            "mjml_body": _("Blocks"),
            "html_body": _("HTML body"),
            "text_body": _("Text part"),
        }
        help_texts = {
            "category": _(
                "Marketing email respects consent, topics, the frequency cap and quiet "
                "hours. Transactional email (receipts, password resets) goes to everyone "
                "who asked for it, and only for what they did."
            ),
            "topic": _(
                "Marketing email goes only to contacts subscribed to this topic (their "
                "preferences page lists the topics). Empty: everyone subscribed to email."
            ),
        }
        widgets = {
            "mjml_body": EmailBuilderWidget(),
            "html_body": forms.Textarea(attrs={"rows": 16, "cols": 90}),
            "text_body": forms.Textarea(attrs={"rows": 6, "cols": 90}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a block template's HTML is compiled from its blocks; an HTML one has none
        if "html_body" in self.fields:  # not on a read-only view
            self.fields["html_body"].required = False

    def clean(self):
        data = super().clean()
        template_body_check(self, data, data.get("format"))
        return data


def template_body_check(form: forms.BaseForm, data: dict, format: str | None) -> None:
    """The save-time checks of campaigns.services.templates, on the fields they name."""
    for field, problem in template_source_problems(data, format=format or ""):
        if field not in form.errors or problem not in form.errors[field]:
            form.add_error(field, problem)


class EmailTemplateVariantForm(forms.ModelForm):
    class Meta:
        model = EmailTemplateVariant
        fields = list(VARIANT_FIELDS)
        labels = {
            "language": _("Language"),
            "subject_b": _("Second subject (A/B test)"),
            "mjml_body": _("Blocks"),
            "html_body": _("HTML body"),
            "text_body": _("Text part"),
        }
        widgets = {
            "mjml_body": forms.Textarea(attrs={"rows": 10, "cols": 90}),
            "html_body": forms.Textarea(attrs={"rows": 10, "cols": 90}),
            "text_body": forms.Textarea(attrs={"rows": 4, "cols": 90}),
        }

    def clean(self):
        data = super().clean()
        if data.get("DELETE"):
            return data
        template = self.instance.template if self.instance.template_id else None
        parent = getattr(self, "parent_format", None) or (template.format if template else None)
        template_body_check(self, data, parent)
        return data


class EmailTemplateVariantFormSet(forms.BaseInlineFormSet):
    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        # the format being saved with the template, not the one stored before
        form.parent_format = self.data.get("format") if self.is_bound else None
        return form

    def clean(self):
        super().clean()
        own = self.data.get("language") if self.is_bound else self.instance.language
        for form in self.forms:
            data = getattr(form, "cleaned_data", {})
            if data and not data.get("DELETE") and data.get("language") == own:
                form.add_error(
                    "language",
                    _("This is the template's own language: edit the text above instead."),
                )


class EmailTemplateVariantInline(admin.StackedInline):
    model = EmailTemplateVariant
    form = EmailTemplateVariantForm
    formset = EmailTemplateVariantFormSet
    extra = 0
    verbose_name = _("version in another language")
    verbose_name_plural = _("Versions in other languages")


class PreviewForm(SampleEventForm):
    send_test_to = forms.EmailField(
        required=False, help_text="Send this rendering to a staff address"
    )


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    form = EmailTemplateForm
    inlines = [EmailTemplateVariantInline]
    list_display = [
        "name",
        "category",
        "format",
        "languages",
        "subject",
        "subject_length",
        "updated_at",
    ]
    list_filter = ["category", "format", "language"]
    search_fields = ["name", "subject"]

    @admin.display(description=_("languages"))
    def languages(self, obj: EmailTemplate) -> str:
        return ", ".join([obj.language, *filter(None, obj.variant_languages.split(","))])

    @admin.display(description="subject length")
    def subject_length(self, obj: EmailTemplate) -> str:
        n = len(subject_sample(obj))  # as a sample contact reads it: tags rendered
        return format_html("<strong>{} ⚠</strong>", n) if n > SUBJECT_WARNING else str(n)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        n = len(subject_sample(obj))
        if n > SUBJECT_WARNING:
            messages.warning(
                request,
                f"The subject is {n} characters long for a sample contact; mobile mail "
                f"clients show only the first 25–30.",
            )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # the quality checks, on the email each language's contacts get (a sample
        # contact); the subject's length is said above
        template = EmailTemplate.objects.get(pk=form.instance.pk)
        for language in template_languages(template):
            for warning in template_quality(template=template, language=language):
                if warning.code == "subject_long" or warning.level != "warning":
                    continue
                messages.warning(request, f"[{language}] {warning.place}: {warning.message}")

    # The block editor (campaigns.widgets.EmailBuilderWidget: GrapesJS) draws the email
    # in an iframe that inherits this page's policy: the inline styles MJML compiles to,
    # the <style> elements GrapesJS writes, and the email's remote images, as the preview
    # shows them. Scripts stay the site's own and nonce'd (no inline script, no eval).
    @csp_replace(
        {"style-src": [csp.SELF, csp.UNSAFE_INLINE], "img-src": [csp.SELF, "data:", "https:"]}
    )
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<int:pk>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="campaigns_emailtemplate_preview",
            ),
            path(
                "starters/",
                self.admin_site.admin_view(self.starters_view),
                name="campaigns_emailtemplate_starters",
            ),
            path(
                "starters/<slug:key>/<str:language>/",
                self.admin_site.admin_view(self.starter_preview_view),
                name="campaigns_emailtemplate_starter_preview",
            ),
            *super().get_urls(),
        ]

    @admin_permission("campaigns.view_emailtemplate", post=["campaigns.add_emailtemplate"])
    def starters_view(self, request: HttpRequest):
        """The starter library: every playbook's email as blocks, in English and Japanese;
        "Use this starter" makes a new template of it (never overwrites one), to edit."""
        if request.method == "POST":
            try:
                template = starter_install(
                    key=request.POST.get("key", ""), name=request.POST.get("name") or None
                )
            except KeepersError as error:
                messages.error(request, error.message)
            else:
                admin_log(request, template, f"Made from the starter {request.POST['key']!r}.")
                messages.success(
                    request,
                    _("“%(name)s” is yours to edit: it was made from the starter.")
                    % {"name": template.name},
                )
                return redirect("admin:campaigns_emailtemplate_change", template.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Start from a starter"),
            "starters": starters(),
            "can_add": request.user.has_perm("campaigns.add_emailtemplate"),
        }
        return TemplateResponse(request, "admin/campaigns/emailtemplate/starters.html", context)

    @csp_replace(
        {"style-src": [csp.SELF, csp.UNSAFE_INLINE], "img-src": [csp.SELF, "data:", "https:"]}
    )
    @admin_permission("campaigns.view_emailtemplate")
    def starter_preview_view(self, request: HttpRequest, key: str, language: str):
        """A starter as a sample contact would get it (an unsaved template), in a
        sandboxed frame."""
        try:
            starter = starter_get(key)
        except KeepersError as error:
            raise Http404(error.message) from None
        ja = language == "ja"
        template = EmailTemplate(
            name=starter.name,
            category=starter.category,
            format=EmailTemplate.Format.MJML,
            language="ja" if ja else "en",
            subject=starter.subject_ja if ja else starter.subject,
            preheader=starter.preheader_ja if ja else starter.preheader,
            mjml_body=starter.mjml_ja if ja else starter.mjml,
            text_body=starter.text_body_ja if ja else starter.text_body,
        )
        template.html_body = mjml_compiled(template.mjml_body, template.preheader)
        sample = Contact(
            pk=0,
            first_name="Alex" if not ja else "花子",
            last_name="Sample" if not ja else "山田",
            email="alex@example.com",
            locale=template.language,
        )
        rendered, error = None, ""
        try:
            rendered = email_preview(template=template, contact=sample, event=None)
        except RenderError as failure:
            error = str(failure)
        return TemplateResponse(
            request,
            "admin/campaigns/emailtemplate/starter_preview.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{starter.name} ({template.language})",
                "starter": starter,
                "rendered": rendered,
                "error": error,
            },
        )

    # The preview's iframe (srcdoc, sandboxed: no scripts) inherits this page's policy and
    # shows an email: inline styles and remote images, as mail clients show them.
    @csp_replace(
        {"style-src": [csp.SELF, csp.UNSAFE_INLINE], "img-src": [csp.SELF, "data:", "https:"]}
    )
    @admin_permission("campaigns.view_emailtemplate", "crm.view_contact", "campaigns.send_test")
    def preview_view(self, request: HttpRequest, pk: int):
        """Render for a contact after a sample event or typed properties, as a send step
        would (campaigns.services.templates, the API's preview and test send too)."""
        template = get_object_or_404(EmailTemplate, pk=pk)
        form = PreviewForm(request.POST or request.GET or None)
        rendered, error, event, contact = None, "", None, None
        if form.is_bound and form.is_valid():
            contact, to = form.cleaned_data["contact"], form.cleaned_data["send_test_to"]
            try:
                event = preview_event(
                    contact=contact,
                    sample=form.cleaned_data["sample"],
                    name=form.cleaned_data["event_name"],
                    properties=form.cleaned_data["properties"],
                )
                rendered = email_preview(template=template, contact=contact, event=event)
                if request.method == "POST" and to:
                    email_test_send(
                        template=template,
                        contact=contact,
                        to_email=to,
                        sender=f"user:{request.user.pk}",
                        event=event,
                    )
                    admin_log(request, template, f"Sent a test for contact #{contact.pk} to {to}.")
                    messages.success(request, f"Test sent to {to}.")
            except RenderError as failure:
                error = str(failure)
            except KeepersError as failure:  # a bad property, or too many test sends
                messages.error(request, failure.message)
        subject = rendered.subject if rendered else subject_sample(template)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": template,
            "title": f"Preview: {template}",
            "form": form,
            "rendered": rendered,
            "event": event,
            "sample_missing": bool(
                form.is_bound and form.is_valid() and form.cleaned_data["sample"]
            )
            and event is None,
            "error": error,
            "long_subject": len(subject) > SUBJECT_WARNING,
            "subject_length": len(subject),
            "warnings": rendered_warnings(template, contact, rendered) if rendered else [],
        }
        return TemplateResponse(request, "admin/campaigns/emailtemplate/preview.html", context)


class CampaignForm(forms.ModelForm):
    """The campaign's settings. Trigger, goals and exits are forms generated from the
    kinds' descriptions (crm.kind_forms.KindWidget; the JSON behind "advanced"); the
    definition's validation puts each error on the field, and the input, it names."""

    trigger = forms.JSONField(
        label=_("Starts when"),
        widget=KindWidget("trigger"),
        help_text=_("What enrols a contact in the campaign."),
    )
    goals = forms.JSONField(
        label=_("Goals"),
        required=False,
        initial=list,
        widget=KindWidget("goal", key="", many=True, add_label=_("Add a goal")),
        help_text=_(
            "When a contact reaches a goal (for example, they order), they leave the "
            "campaign at once — no reminder after the purchase — and it counts as a "
            "conversion."
        ),
    )
    exits = forms.JSONField(
        label=_("Also leave when"),
        required=False,
        initial=list,
        widget=KindWidget("trigger", many=True, only=EXIT_KEYS, add_label=_("Add an exit")),
        help_text=_(
            "Ends a contact's journey without counting a conversion: they leave a segment, "
            "join one, or their lifecycle stage changes."
        ),
    )
    steps = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 90}),
        help_text="The journey builder above edits this. Advanced: the steps in order, each "
        "with its id, type, config and branches ("
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
            "priority",
            "topic",
            "cap_24h",
            "cap_7d",
            "max_delay_hours",
            "steps",
        ]
        labels = {
            "entry_segment": _("Only for members of"),
            "reentry": _("Can a contact start again?"),
            "reentry_days": _("Days before they can start again"),
            "starts_at": _("Runs from"),
            "ends_at": _("Runs until"),
            "attribution_days": _("Credit the campaign for (days)"),
            "holdout_percent": _("Holdout (%)"),
            "priority": _("Priority"),
            "topic": _("Topic"),
            "cap_24h": _("At most … marketing emails a day"),
            "cap_7d": _("At most … marketing emails a week"),
            "max_delay_hours": _("Give up on held mail after (hours)"),
        }
        help_texts = {
            "entry_segment": _(
                "Contacts outside this segment are not enrolled when the trigger fires. "
                "Empty: everyone."
            ),
            "reentry": _(
                "Once: a contact goes through the campaign one time at most. Once every N "
                "days: again after the days below. Every time: each time the trigger fires."
            ),
            "reentry_days": _(
                "Used with “Once every N days”: how long after they started before the "
                "trigger can enrol them again."
            ),
            "starts_at": _("Empty: as soon as the campaign is published."),
            "ends_at": _("No one new is enrolled after this. Empty: no end."),
            "attribution_days": _(
                "A goal reached within this many days after an email counts as that "
                "campaign's conversion (and its revenue)."
            ),
            "holdout_percent": _(
                "A share of contacts (0 to 50) who enter but get no email, to measure what "
                "the campaign really changes."
            ),
            "priority": _(
                "When a contact's frequency cap has one email left, lifecycle mail goes "
                "before promotional mail."
            ),
            "topic": _(
                "Send this campaign's mail only to contacts subscribed to this topic, "
                "whatever the templates' topics. Empty: each template's own topic."
            ),
            "cap_24h": _(
                "A limit for this campaign's contacts instead of the shop's usual one, "
                "counting all marketing email in the last 24 hours. Empty: the shop's."
            ),
            "cap_7d": _("The same over the last 7 days. Empty: the shop's limit."),
            "max_delay_hours": _(
                "Promotional mail held back by the frequency cap or quiet hours is skipped "
                "when it would be sent later than this."
            ),
        }

    class Media:
        js = ["campaigns/campaign_form.js"]

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
            message = error.message.removeprefix(f"{error.path}: ")
            if field in self.fields and isinstance(self.fields[field].widget, KindWidget):
                self.fields[field].widget.error = (error.path, message)
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
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        (_("When it starts"), {"fields": ["trigger", ("starts_at", "ends_at")]}),
        (
            _("Who enters, and who leaves"),
            {"fields": ["entry_segment", "reentry", "reentry_days", "exits"]},
        ),
        (_("Goals and results"), {"fields": ["goals", "attribution_days", "holdout_percent"]}),
        (
            _("Sending"),
            {"fields": ["priority", "topic", ("cap_24h", "cap_7d"), "max_delay_hours"]},
        ),
        (_("Steps"), {"fields": ["steps"]}),
    ]

    class Media:
        # the segment rule builder first: a "rule" field in the side panel mounts it
        js = ["crm/rule_builder.js", "campaigns/journey_builder.js"]
        css = {"all": ["crm/rule_builder.css", "campaigns/journey_builder.css"]}

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

    def add_view(self, request, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "journey": journey_context(None)}
        return super().add_view(request, form_url, extra)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = Campaign.objects.filter(pk=object_id).select_related("published_version").first()
        extra = extra_context or {}
        if campaign is not None:
            extra["journey"] = journey_context(campaign)
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
                "journey/validate/",
                self.admin_site.admin_view(self.journey_validate_view),
                name="campaigns_campaign_journey_validate",
            ),
            path(
                "<int:pk>/journey/counts/",
                self.admin_site.admin_view(self.journey_counts_view),
                name="campaigns_campaign_journey_counts",
            ),
            path(
                "<int:pk>/enroll-segment/",
                self.admin_site.admin_view(self.enroll_segment_view),
                name="campaigns_campaign_enroll_segment",
            ),
            *super().get_urls(),
        ]

    @admin_permission("campaigns.view_campaign")
    def journey_validate_view(self, request: HttpRequest):
        """The journey builder's check as staff edit: POST {"steps": [...]}, answered with
        the first problem the save would refuse ({"path": "steps[2].config.hours",
        "message"}) or {"ok": true}. It runs campaigns' own validation and writes nothing."""
        if request.method != "POST":
            return JsonResponse({"message": "POST the steps."}, status=405)
        try:
            steps = json.loads(request.body or b"{}").get("steps")
        except (ValueError, AttributeError):
            return JsonResponse({"ok": False, "path": "steps", "message": "Not JSON."})
        try:
            steps_validate(steps)
        except DefinitionError as error:
            message = error.message.removeprefix(f"{error.path}: ")
            return JsonResponse({"ok": False, "path": error.path, "message": message})
        return JsonResponse({"ok": True})

    @admin_permission("campaigns.view_campaign")
    def journey_counts_view(self, request: HttpRequest, pk: int):
        """The per-step counts the builder shows on its nodes, polled while the page is open."""
        campaign = get_object_or_404(Campaign, pk=pk)
        return JsonResponse({"counts": step_counts(campaign=campaign)})

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


# The journey builder's own words (journey_builder.js `say`), translated for the page.
JOURNEY_STRINGS = (
    gettext_noop("+ property"),
    gettext_noop("Add a step"),
    gettext_noop("Add a step at the start"),
    gettext_noop("Add a step on “{branch}” after {step}"),
    gettext_noop("Add the first step"),
    gettext_noop("Advanced: the steps as JSON"),
    gettext_noop("Advanced: the rule as JSON"),
    gettext_noop("Cancel"),
    gettext_noop(
        "Counts on each node: treatment / held out (all versions; version {version} is live)."
    ),
    gettext_noop("Delete step"),
    gettext_noop("Delete the step “{step}”? Arrows into it go on to where it went."),
    gettext_noop("Done"),
    gettext_noop("Enter to edit, Delete to remove."),
    gettext_noop("Exit: {what}"),
    gettext_noop("Journey"),
    gettext_noop("Name"),
    gettext_noop("No description for the step type “{type}”: edit it in the JSON below."),
    gettext_noop("No goals or exits: enrolments run to the end."),
    gettext_noop("Not published yet: counts appear once it runs."),
    gettext_noop("Not valid JSON"),
    gettext_noop("Other"),
    gettext_noop("Other…"),
    gettext_noop("Remove"),
    gettext_noop("Shown on the node (id {id})."),
    gettext_noop(
        "Start with a step: a wait, an email, a condition… The trigger enrols contacts; each step then runs in turn along the arrows."
    ),
    gettext_noop("Step settings"),
    gettext_noop("The steps JSON is not valid; fix it in the advanced view to use the builder."),
    gettext_noop("Trigger"),
    gettext_noop("add: a, b"),
    gettext_noop("another name"),
    gettext_noop("end"),
    gettext_noop("end of the journey"),
    gettext_noop("property"),
    gettext_noop("value"),
    gettext_noop("{figure}: {treatment} treatment, {holdout} held out"),
    gettext_noop("Goal: {event} (same {match}) → exits, converted"),
    gettext_noop("Goal: {event} → exits, converted"),
    gettext_noop("waiting"),
    gettext_noop("passed"),
    gettext_noop("sent"),
    gettext_noop("opened"),
    gettext_noop("clicked"),
    gettext_noop("converted"),
    # a segment rule in words on a node (journey_builder.js ruleText)
    gettext_noop("all of {n} conditions: {list}"),
    gettext_noop("any of {n} conditions: {list}"),
    gettext_noop("not: {rule}"),
)


def journey_context(campaign: Campaign | None) -> dict:
    """What the journey builder embeds (json_script): the step kinds, condition kinds and
    segment conditions as the server describes them (crm.kinds), their sources' options, the counts per step and
    the URLs it calls. The builder draws the draft in the steps field."""
    version = campaign.published_version if campaign else None
    # the segment conditions too: a condition "matches a rule" is edited with the rule
    # builder (crm/static/crm/rule_builder.js), which reads them and its own words
    kinds = kinds_document(registries=["step", "condition", "segment_condition"])
    kinds["text"] = rule_builder_text()
    return {
        "kinds": kinds,
        "data": {
            "validate_url": reverse("admin:campaigns_campaign_journey_validate"),
            "counts_url": reverse("admin:campaigns_campaign_journey_counts", args=[campaign.pk])
            if campaign
            else "",
            "counts": step_counts(campaign=campaign) if campaign else {},
            "version": version.number if version else None,
            "strings": {text: gettext(text) for text in JOURNEY_STRINGS},
        },
    }


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


class SuppressionAddForm(forms.ModelForm):
    detail = forms.CharField(
        label="Why",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Kept with the record (who asked, the ticket, what happened)",
    )

    class Meta:
        model = Suppression
        fields = ["email", "reason", "detail"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["reason"].initial = Suppression.Reason.MANUAL

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        active = Suppression.objects.filter(
            email_hash=address_hash(email), lifted_at__isnull=True
        ).first()
        if active is not None:
            raise forms.ValidationError(
                f"This address is already suppressed ({active.get_reason_display()}, "
                f"{active.created_at:%Y-%m-%d})."
            )
        return email


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

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:  # the add page: an address, a reason and why
            kwargs["form"] = SuppressionAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["email", "reason", "detail"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # through the service, which lower-cases the address, stores its hash and lets the
        # one-active-row constraint decide (a concurrent suppression wins, and is shown)
        suppression, created = suppression_create(
            email=obj.email,
            reason=obj.reason,
            source=f"staff: {request.user.get_username()}",
            detail=obj.detail,
        )
        obj.__dict__.update(
            {f.attname: getattr(suppression, f.attname) for f in Suppression._meta.concrete_fields}
        )
        obj._state.adding = False
        if not created:
            messages.warning(
                request,
                f"{suppression.email} was already suppressed ({suppression.get_reason_display()}).",
            )

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
