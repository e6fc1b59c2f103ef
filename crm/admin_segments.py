"""Staff screens for segments: a guided rule builder over the raw JSON, a live count and
sample before saving, the member list with entry dates, size over time, copying the
ready-made segments, and static lists filled by action or CSV."""

from __future__ import annotations

import csv
import io
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from crm.admin_access import admin_log, admin_permission, admin_require
from crm.admin_export import CsvExportMixin
from crm.charts import svg_sparkline
from crm.errors import KeepersError
from crm.kinds import kinds_document
from crm.models import Contact, Segment, SegmentMembership, SegmentSnapshot
from crm.services.segments import (
    segment_count,
    segment_members_add,
    segment_save,
    segment_validate,
)
from crm.tasks import segment_refresh_task

# The rule builder's own words (crm/static/crm/rule_builder.js reads them with the
# conditions' descriptions, so it has no text of its own to translate).
RULE_BUILDER_TEXT = {
    "builder": _("Rule builder"),
    "match": _("Match"),
    "all": _("all of these"),
    "any": _("any of these"),
    "not": _("not this"),
    "condition": _("Condition"),
    "add_condition": _("+ Condition"),
    "add_group": _("+ Group"),
    "remove_condition": _("Remove condition"),
    "remove_group": _("Remove group"),
    "property": _("Property"),
    "property_value": _("Value"),
    "add_property": _("+ Property"),
    "remove_property": _("Remove property"),
    "add_text": _("Add"),
    "remove_text": _("Remove"),
    "text_placeholder": _("type, then Enter"),
    "no_options": _("None yet."),
    "unknown_kind": _("This condition is not installed; edit it as JSON below."),
    "json_only": _("The builder cannot show this condition as written; edit it as JSON below."),
    "bad_json": _("Not valid JSON."),
    "advanced": _("Advanced: the rule as JSON"),
    "invalid_json": _(
        "The JSON under “Advanced” is not valid; fix it or clear it to use the builder."
    ),
    "static": _("A static segment has no rules: add its members by hand or from a CSV."),
    "counting": _("Counting…"),
    "match_now": _("contacts match now. Sample:"),
}


def rule_builder_text() -> dict:
    """The rule builder's words in the active language (the "text" of its document): for
    another page that mounts it (window.KeepersRuleBuilder.mount, the journey builder)."""
    return {key: str(text) for key, text in RULE_BUILDER_TEXT.items()}


def rule_builder_document() -> dict:
    """What the rule builder embeds: every segment condition's description with the current
    options of their sources (crm.kinds), and its own words, in the active language."""
    document = kinds_document(registries=["segment_condition"])
    document["text"] = rule_builder_text()
    return document


class SegmentForm(forms.ModelForm):
    rules = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80}),
        help_text=_("Built with the rule builder above, or written by hand as JSON."),
    )

    class Meta:
        model = Segment
        fields = ["name", "description", "kind", "rules", "is_active", "is_template"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if data.get("kind") == Segment.Kind.DYNAMIC and not data.get("rules"):
            self.add_error(
                "rules",
                _(
                    "Add at least one condition: a dynamic segment's members are the "
                    "contacts its rules match (or make it a static segment)."
                ),
            )
            return data
        try:
            segment_validate(
                rules=data.get("rules") or {}, kind=data.get("kind"), segment_id=self.instance.pk
            )
        except KeepersError as error:
            self.add_error("rules", error.message)
        return data


def size_chart(segment: Segment, days: int = 90) -> str:
    """Server-rendered SVG of the segment's size per day (crm.charts), with the last ten
    days' numbers."""
    points = list(SegmentSnapshot.objects.filter(segment=segment).order_by("-day")[:days])[::-1]
    if len(points) < 2:
        return "<p>The chart appears after the segment has been refreshed on two days.</p>"
    chart = svg_sparkline(
        [p.size for p in points],
        label=f"Segment size over the last {len(points)} days",
        first=str(points[0].day),
        last=str(points[-1].day),
    )
    rows = "".join(f"<tr><td>{p.day}</td><td>{p.size}</td></tr>" for p in points[-10:])
    return (
        f"{chart}<details><summary>Numbers</summary><table><tr><th>Day</th><th>Size</th></tr>{rows}"
        "</table></details>"
    )


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = [
        "name",
        "kind",
        "member_count",
        "is_active",
        "is_template",
        "refreshed_at",
        "members_link",
    ]
    list_filter = ["kind", "is_active", "is_template"]
    search_fields = ["name", "description"]
    readonly_fields = [
        "member_count",
        "refreshed_at",
        "depends_on",
        "time_based",
        "version",
        "size_over_time",
        "members_link",
    ]
    actions = ["refresh_now", "copy_templates"]
    change_form_template = "admin/crm/segment/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", ("is_active", "is_template")]}),
        ("Rules", {"fields": ["rules"]}),
        (
            "Members",
            {
                "fields": [
                    ("member_count", "refreshed_at"),
                    "members_link",
                    "size_over_time",
                    ("depends_on", "time_based", "version"),
                ]
            },
        ),
    ]

    class Media:
        js = ["crm/rule_builder.js"]
        css = {"all": ["crm/rule_builder.css"]}

    @admin.display(description="members")
    def members_link(self, obj: Segment) -> str:
        if not obj.pk:
            return "—"
        url = (
            reverse("admin:crm_segmentmembership_changelist")
            + f"?segment__id__exact={obj.pk}&current=yes"
        )
        return format_html('<a href="{}">{} members, with entry dates</a>', url, obj.member_count)

    @admin.display(description="size over time")
    def size_over_time(self, obj: Segment) -> str:
        return mark_safe(size_chart(obj)) if obj.pk else "—"

    def render_change_form(self, request, context, *args, **kwargs):
        context["rule_builder"] = rule_builder_document()
        return super().render_change_form(request, context, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        data = {k: form.cleaned_data[k] for k in SegmentForm.Meta.fields}
        saved = segment_save(segment=obj if change else None, **data)
        obj.pk, obj._state.adding = saved.pk, False

    def get_urls(self):
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="crm_segment_preview",
            ),
            path(
                "<int:pk>/import-members/",
                self.admin_site.admin_view(self.import_members_view),
                name="crm_segment_import_members",
            ),
            *super().get_urls(),
        ]

    @admin_permission("crm.view_segment", "crm.view_contact")
    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """Live count and sample for the rules being edited (POST, CSRF-protected)."""
        if request.method != "POST":
            return JsonResponse({"message": "POST the rules."}, status=405)
        try:
            rules = json.loads(request.POST.get("rules") or "{}")
            count, sample = segment_count(rules=rules)
        except json.JSONDecodeError as error:
            return JsonResponse(
                {"message": f"The rules are not valid JSON: {error.msg}."}, status=400
            )
        except KeepersError as error:
            return JsonResponse({"message": error.message, "path": error.field}, status=400)
        return JsonResponse(
            {
                "count": count,
                "sample": [
                    {
                        "label": c.email or c.external_id,
                        "stage": c.get_stage_display(),
                        "url": reverse("admin:crm_contact_change", args=[c.pk]),
                    }
                    for c in sample
                ],
            }
        )

    @admin_permission("crm.change_segment")
    def import_members_view(self, request: HttpRequest, pk: int):
        """Add contacts to a static segment from a CSV with an email or external_id column."""
        segment = get_object_or_404(Segment, pk=pk)
        form = MembersCsvForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                text = form.cleaned_data["file"].read().decode("utf-8-sig")
            except UnicodeDecodeError:
                messages.error(request, "The file is not UTF-8 text: nothing was added.")
                return HttpResponseRedirect(request.path)
            reader = csv.DictReader(io.StringIO(text))
            emails, external_ids = set(), set()
            for row in reader:
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                if row.get("email"):
                    emails.add(row["email"].lower())
                elif row.get("external_id"):
                    external_ids.add(row["external_id"])
            ids = list(Contact.objects.filter(email__in=emails).values_list("pk", flat=True))
            ids += list(
                Contact.objects.filter(external_id__in=external_ids).values_list("pk", flat=True)
            )
            try:
                added = segment_members_add(segment=segment, contact_ids=ids)
            except KeepersError as error:
                messages.error(request, error.message)
            else:
                unknown = len(emails) + len(external_ids) - len(set(ids))
                admin_log(request, segment, f"Added {added} members from a CSV.")
                messages.success(
                    request, f"{added} contacts added; {unknown} rows matched no contact."
                )
            return HttpResponseRedirect(reverse("admin:crm_segment_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": f"Add members to {segment} from CSV",
            "columns": "email or external_id (one contact per row)",
        }
        return TemplateResponse(request, "admin/crm/import_upload.html", context)

    @admin.action(description="Refresh the selected segments now", permissions=["change"])
    def refresh_now(self, request, queryset):
        admin_require(request, "crm.change_segment")
        ids = list(queryset.filter(kind=Segment.Kind.DYNAMIC).values_list("pk", flat=True))
        transaction.on_commit(lambda: [segment_refresh_task.delay(pk) for pk in ids])
        messages.success(request, f"{len(ids)} segments are being refreshed.")

    @admin.action(
        description="Copy the selected ready-made segments into active segments",
        permissions=["add"],
    )
    def copy_templates(self, request, queryset):
        admin_require(request, "crm.add_segment")
        for template in queryset:
            name = template.name.removesuffix(" (template)")
            if Segment.objects.filter(name__iexact=name).exists():
                name = f"{name} (copy)"
            try:
                copy = segment_save(
                    name=name,
                    kind=template.kind,
                    rules=template.rules,
                    description=template.description,
                )
            except KeepersError as error:
                messages.error(request, f"{template}: {error.message}")
            else:
                admin_log(request, copy, f"Copied from {template}.", action_flag=ADDITION)
        messages.success(request, "Copied; the new segments are being filled.")


class MembersCsvForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row: email or external_id")


class CurrentFilter(admin.SimpleListFilter):
    title = "membership"
    parameter_name = "current"

    def lookups(self, request, model_admin):
        return [("yes", "Current members"), ("no", "Past members")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(exited_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(exited_at__isnull=False)
        return queryset


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(CsvExportMixin, admin.ModelAdmin):
    csv_columns = [
        ("segment", "segment.name"),
        ("contact_id", "contact_id"),
        ("email", "contact.email"),
        ("external_id", "contact.external_id"),
        ("entered_at", "entered_at"),
        ("exited_at", "exited_at"),
    ]
    list_display = ["contact", "segment", "entered_at", "exited_at"]
    list_filter = [CurrentFilter, "segment"]
    list_select_related = ["contact", "segment"]
    search_fields = ["contact__email", "contact__external_id"]
    show_full_result_count = False
    ordering = ["-entered_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AddToSegmentForm(forms.Form):
    segment = forms.ModelChoiceField(queryset=Segment.objects.filter(kind=Segment.Kind.STATIC))


@admin.action(
    description="Add the selected contacts to a static segment", permissions=["segment_members"]
)
def add_to_static_segment(modeladmin, request, queryset):
    admin_require(request, "crm.change_segment")
    if "apply" in request.POST:
        form = AddToSegmentForm(request.POST)
        if form.is_valid():
            added = segment_members_add(
                segment=form.cleaned_data["segment"],
                contact_ids=queryset.values_list("pk", flat=True),
            )
            admin_log(request, form.cleaned_data["segment"], f"Added {added} selected contacts.")
            messages.success(request, f"{added} contacts added to {form.cleaned_data['segment']}.")
            return None
    else:
        form = AddToSegmentForm()
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "form": form,
        "contacts": queryset[:20],
        "count": queryset.count(),
        "title": "Add contacts to a static segment",
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
    }
    return TemplateResponse(request, "admin/crm/segment/add_contacts.html", context)
