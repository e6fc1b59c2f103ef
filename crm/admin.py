"""Staff screens for the CRM. Lists are built on selectors (no N+1); every write goes
through a service."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from crm import (
    admin_axes,  # noqa: F401  (axes' lockout records, its clean-up action working)
    admin_beat,  # noqa: F401  (beat's periodic task form, CSP-clean)
    selectors,
)
from crm.admin_access import admin_log, admin_permission, admin_require
from crm.admin_confirm import action_confirmed
from crm.admin_export import CsvExportMixin
from crm.admin_segments import add_to_static_segment
from crm.csv_response import csv_response
from crm.errors import KeepersError
from crm.models import (
    MEDDIC_CRITERIA,
    ApiKey,
    ClvModelFit,
    ConsentRecord,
    Contact,
    ContactClv,
    Event,
    ImportJob,
    LeadScorecard,
    LeadScoreChange,
    MarketingSpend,
    MeddicStatus,
    Order,
    OrderLine,
    Product,
    Refund,
    StageChange,
    Tag,
    Topic,
)
from crm.services.api_keys import api_key_create, api_key_revoke
from crm.services.contacts import contact_create, contact_update, email_normalize
from crm.services.meddic import EDITABLE, scorecard_confirmed, scorecard_update
from crm.services.metrics import metrics_cache_invalidate
from crm.services.orders import order_refund
from crm.services.privacy import contact_erase, contact_export_json
from crm.services.recommendations import recommendations_for
from crm.services.spend import spend_import_csv
from crm.tasks import clv_fit_task, import_job_run_task


# --- Contacts ---------------------------------------------------------------------------
class ConsentFilter(admin.SimpleListFilter):
    title = "email consent"
    parameter_name = "consent"

    def lookups(self, request, model_admin):
        return [("granted", "Granted"), ("withdrawn", "Withdrawn"), ("none", "Never asked")]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(email_consent__isnull=True)
        if self.value() in ("granted", "withdrawn"):
            return queryset.filter(email_consent=self.value())
        return queryset


class LeadScoreFilter(admin.SimpleListFilter):
    title = "lead score (MEDDIC)"
    parameter_name = "lead_score"
    RANGES = {"high": (67, 100), "medium": (34, 66), "low": (0, 33)}

    def lookups(self, request, model_admin):
        return [
            ("high", "High (67–100)"),
            ("medium", "Medium (34–66)"),
            ("low", "Low (0–33)"),
            ("none", "Not scored"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(scorecard__isnull=True)
        if self.value() in self.RANGES:
            lo, hi = self.RANGES[self.value()]
            return queryset.filter(scorecard__score__gte=lo, scorecard__score__lte=hi)
        return queryset


class ContactAdminForm(forms.ModelForm):
    class Meta:
        model = Contact
        fields = [
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
        ]

    def clean_email(self):
        email = self.cleaned_data.get("email")
        if not email:
            return None
        try:
            email = email_normalize(email)
        except KeepersError as error:
            raise forms.ValidationError(error.message) from None
        clash = Contact.objects.filter(email=email).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("Another contact already has this email.")
        return email

    def clean_external_id(self):
        return self.cleaned_data.get("external_id") or None

    def clean(self):
        data = super().clean()
        if not data.get("email") and not data.get("external_id"):
            raise forms.ValidationError("A contact needs an email or an external id.")
        return data


class ScorecardForm(forms.ModelForm):
    """Each criterion as confirmed / partly / unknown (radio buttons) with a note; the score
    and the number confirmed are derived (crm.services.meddic)."""

    class Meta:
        model = LeadScorecard
        fields = sorted(EDITABLE)
        widgets = {f"{name}_status": forms.RadioSelect for name, _label in MEDDIC_CRITERIA} | {
            f"{name}_note": forms.Textarea(attrs={"rows": 2}) for name, _label in MEDDIC_CRITERIA
        }

    STATUSES = [
        (MeddicStatus.CONFIRMED, "Confirmed"),
        (MeddicStatus.PARTIAL, "Partly"),
        (MeddicStatus.UNKNOWN, "Unknown"),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, _label in MEDDIC_CRITERIA:
            self.fields[f"{name}_status"].choices = self.STATUSES


class ScorecardInline(admin.StackedInline):
    model = LeadScorecard
    form = ScorecardForm
    can_delete = False
    extra = 1  # a contact without a scorecard shows an empty one to fill in
    max_num = 1
    readonly_fields = ["score", "confirmed"]
    verbose_name = "MEDDIC lead qualification"
    verbose_name_plural = "MEDDIC lead qualification"
    fieldsets = [(None, {"fields": [("score", "confirmed")]})] + [
        (label, {"fields": [(f"{name}_status", f"{name}_note")]}) for name, label in MEDDIC_CRITERIA
    ]

    @admin.display(description="confirmed")
    def confirmed(self, card: LeadScorecard) -> str:
        return f"{scorecard_confirmed(card)} of {len(MEDDIC_CRITERIA)}" if card.pk else "—"


# Buttons other apps put on a contact's page (crm does not know them): callables
# (request, contact) -> [(label, url)], appended when their admin module loads.
CONTACT_PAGE_TOOLS: list[Callable[[HttpRequest, Contact], list[tuple[str, str]]]] = []


@admin.register(Contact)
class ContactAdmin(CsvExportMixin, admin.ModelAdmin):
    form = ContactAdminForm
    csv_columns = [
        ("id", "pk"),
        ("external_id", "external_id"),
        ("email", "email"),
        ("first_name", "first_name"),
        ("last_name", "last_name"),
        ("phone", "phone"),
        ("stage", "stage"),
        ("email_consent", "email_consent"),
        ("tags", lambda contact: "; ".join(tag.name for tag in contact.tags.all())),
        ("locale", "locale"),
        ("timezone", "timezone"),
        ("birthday", "birthday"),
        ("source", "source"),
        ("channel", "channel"),
        ("created_at", "created_at"),
    ]
    list_display = [
        "email_or_id",
        "full_name",
        "stage",
        "consent_badge",
        "tag_list",
        "channel",
        "created_at",
    ]
    list_filter = ["stage", ConsentFilter, "tags", "source", "channel", LeadScoreFilter]
    search_fields = ["email", "first_name", "last_name", "external_id"]
    readonly_fields = [
        "stage",
        "stage_changed_at",
        "created_at",
        "updated_at",
        "predicted_value",
        "recommended_products",
    ]
    filter_horizontal = ["tags"]
    inlines = [ScorecardInline]
    actions = [add_to_static_segment]
    list_per_page = 50
    show_full_result_count = False
    change_form_template = "admin/crm/contact/change_form.html"
    change_list_template = "admin/crm/contact/change_list.html"
    fieldsets = [
        (None, {"fields": ["email", "external_id", ("first_name", "last_name"), "phone"]}),
        ("Where and when", {"fields": [("locale", "timezone"), "birthday"]}),
        ("Acquisition", {"fields": [("source", "channel")]}),
        ("Lifecycle", {"fields": [("stage", "stage_changed_at"), ("created_at", "updated_at")]}),
        ("Tags and attributes", {"fields": ["tags", "attributes"]}),
        ("Predicted value", {"fields": ["predicted_value"]}),
        ("Recommended products", {"fields": ["recommended_products"]}),
    ]

    def get_queryset(self, request):
        # ordered as the changelist orders it, so the autocomplete (which pages this
        # queryset as it is) pages in a stable order
        return selectors.contact_list().order_by("-pk")

    @admin.display(description="contact", ordering="email")
    def email_or_id(self, obj: Contact) -> str:
        return obj.email or f"#{obj.external_id}"

    @admin.display(description="name")
    def full_name(self, obj: Contact) -> str:
        return obj.full_name

    @admin.display(description="consent", ordering="email_consent")
    def consent_badge(self, obj: Contact) -> str:
        return {"granted": "✔ granted", "withdrawn": "✖ withdrawn"}.get(
            obj.email_consent or "", "—"
        )

    @admin.display(description="tags")
    def tag_list(self, obj: Contact) -> str:
        return ", ".join(tag.name for tag in obj.tags.all())

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # a new contact has nothing to go on
            derived = {"recommended_products", "predicted_value"}
            fieldsets = [fs for fs in fieldsets if not derived & set(fs[1]["fields"])]
        return fieldsets

    @admin.display(description="from the latest CLV fit")
    def predicted_value(self, obj: Contact) -> str:
        """The contact's ContactClv row: what GET /api/v1/contacts/{id}/clv/ returns."""
        row = ContactClv.objects.select_related("fit").filter(contact=obj).first()
        if row is None:
            return format_html(
                "No prediction: not a customer in the base currency as of the latest fit, or "
                'no fit has succeeded yet (<a href="{}">CLV fits</a>).',
                reverse("admin:crm_clvmodelfit_changelist"),
            )
        fit = row.fit
        return format_html(
            "<table><tbody>"
            "<tr><th>Probability alive</th><td>{}%</td></tr>"
            "<tr><th>Expected purchases</th><td>{} in 30 days · {} in 90 · {} in 365</td></tr>"
            "<tr><th>Expected spend per purchase</th><td>{} {}</td></tr>"
            "<tr><th>Predicted CLV</th><td>{} {} over {} months ({}% a month discount)</td></tr>"
            "<tr><th>Historic CLV</th><td>{} {} (net revenue to {})</td></tr>"
            "<tr><th>Repeat purchases</th><td>{} (first to last {} weeks, customer for {} weeks)"
            "</td></tr>"
            '</tbody></table><p class="help">Fit of {} as of {}: <a href="{}">the model</a>.</p>',
            f"{row.probability_alive * 100:.1f}",
            f"{row.purchases_30d:.2f}",
            f"{row.purchases_90d:.2f}",
            f"{row.purchases_365d:.2f}",
            f"{row.expected_spend:.2f}",
            fit.currency,
            f"{row.predicted_clv:.2f}",
            fit.currency,
            fit.horizon_months,
            f"{fit.monthly_discount * 100:g}",
            f"{row.historic_clv:.2f}",
            fit.currency,
            fit.as_of,
            int(row.x),
            f"{row.t_x:.1f}",
            f"{row.T:.1f}",
            f"{localtime(fit.fitted_at):%Y-%m-%d %H:%M}",
            fit.as_of,
            reverse("admin:crm_clvmodelfit_change", args=[fit.pk]),
        )

    @admin.display(description="in an email sent now")
    def recommended_products(self, obj: Contact) -> str:
        """What `{% recommendations 8 as products %}` gives this contact in an email sent
        now with no trigger event (so no cart)."""
        products = recommendations_for(obj, limit=8)
        if not products:
            return "Nothing to recommend: no sales in the bestseller window yet."
        return format_html(
            "<table><thead><tr><th>Product</th><th>Category</th><th>Stock</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (p.name or p.product_id, p.category or "—", "in stock" if p.in_stock else "out")
                    for p in products
                ),
            ),
        )

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name != "tags"}
        if change:
            contact_update(contact=obj, **fields)
        else:
            fields = {name: form.cleaned_data[name] for name in form.fields if name != "tags"}
            created = contact_create(source=fields.pop("source") or "admin", **fields)
            obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db

    def save_formset(self, request, form, formset, change):
        if formset.model is not LeadScorecard:
            return super().save_formset(request, form, formset, change)
        for inline_form in formset.forms:
            changed = {
                k: inline_form.cleaned_data[k] for k in inline_form.changed_data if k in EDITABLE
            }
            if changed:
                scorecard_update(
                    contact=form.instance, changes=changed, changed_by=request.user, via="admin"
                )
        # The admin's change message reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        return None

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        contact = Contact.objects.filter(pk=object_id).first()
        if contact is not None:
            extra_context["contact_tools"] = [
                *_privacy_tools(request, contact),
                *(tool for tools in CONTACT_PAGE_TOOLS for tool in tools(request, contact)),
            ]
            extra_context["timeline"] = selectors.contact_timeline(contact=contact, limit=200)
            extra_context["segments"] = list(
                contact.memberships.filter(exited_at__isnull=True)
                .select_related("segment")
                .order_by("segment__name")
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "import/", self.admin_site.admin_view(self.import_view), name="crm_contact_import"
            ),
            path(
                "<int:pk>/export/",
                self.admin_site.admin_view(self.export_view),
                name="crm_contact_export",
            ),
            path(
                "<int:pk>/erase/",
                self.admin_site.admin_view(self.erase_view),
                name="crm_contact_erase",
            ),
            *super().get_urls(),
        ]

    @admin_permission("crm.add_contact")
    def import_view(self, request: HttpRequest):
        return import_upload_view(self, request, ImportJob.Kind.CONTACTS)

    # Deleting a contact is erasing it: orders, consent and the ledger must outlive the
    # person (anonymised), so Django's delete (which would cascade or hit PROTECT) is
    # replaced by the erase page, for those with the erase permission.
    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("crm.erase_contact")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_segment_members_permission(self, request) -> bool:
        """Adding contacts to a static segment (the action) changes the segment."""
        return request.user.has_perm("crm.change_segment")

    def delete_view(self, request, object_id, extra_context=None):
        if not self.has_delete_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:crm_contact_erase", args=[object_id]))

    @admin_permission("crm.view_contact", "crm.export_contact")
    def export_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The contact's data as one JSON document (what GET /api/v1/contacts/{id}/export/
        returns)."""
        contact = get_object_or_404(Contact, pk=pk)
        response = HttpResponse(
            contact_export_json(contact=contact), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
        response["Cache-Control"] = "no-store"
        admin_log(request, contact, "Exported the contact's data.")
        return response

    @admin_permission("crm.view_contact", "crm.erase_contact")
    def erase_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """A confirmation page; POST erases (crm.services.privacy.contact_erase)."""
        contact = get_object_or_404(Contact, pk=pk)
        if request.method == "POST":
            if request.POST.get("confirm") != "erase":
                messages.error(request, "Type “erase” to confirm.")
            else:
                contact = contact_erase(contact=contact, by=f"staff {request.user.get_username()}")
                admin_log(request, contact, "Erased the contact's data.")
                messages.success(request, f"Contact #{contact.pk} was erased.")
                return HttpResponseRedirect(reverse("admin:crm_contact_change", args=[pk]))
        return TemplateResponse(
            request,
            "admin/crm/contact/erase.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "contact": contact,
                "title": f"Erase {contact}",
                "counts": {
                    "orders": contact.orders.count(),
                    "events": contact.events.count(),
                    "consent records": contact.consents.count(),
                },
            },
        )


def _privacy_tools(request: HttpRequest, contact: Contact) -> list[tuple[str, str]]:
    tools = []
    if request.user.has_perm("crm.export_contact"):
        tools.append(("Export data", reverse("admin:crm_contact_export", args=[contact.pk])))
    if request.user.has_perm("crm.erase_contact") and contact.erased_at is None:
        tools.append(("Erase", reverse("admin:crm_contact_erase", args=[contact.pk])))
    return tools


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row, UTF-8")


def import_upload_view(model_admin: admin.ModelAdmin, request: HttpRequest, kind: str):
    """Upload a CSV: it becomes an ImportJob run by a worker; staff watch its progress.
    The calling view declares the permission (add on the imported model)."""
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            job = ImportJob.objects.create(
                kind=kind, file=form.cleaned_data["file"], created_by=request.user
            )
            transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
            admin_log(request, job, f"Uploaded {job.file.name} to import {kind}.")
        messages.info(request, "The file was received; the import runs in the background.")
        return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[job.pk]))
    columns = {
        ImportJob.Kind.CONTACTS: "email, external_id, first_name, last_name, phone, locale, "
        "timezone, birthday, tags, source, channel, consent — any other column becomes an attribute",
        ImportJob.Kind.PRODUCTS: "product_id, name, url, image_url, price, currency, category, "
        "in_stock, replenishable",
    }[kind]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "form": form,
        "title": f"Import {kind} from CSV",
        "columns": columns,
    }
    return TemplateResponse(request, "admin/crm/import_upload.html", context)


# --- Import jobs -------------------------------------------------------------------------
@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "progress",
        "created_count",
        "updated_count",
        "error_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["created_by"]
    change_form_template = "admin/crm/importjob/change_form.html"
    readonly_fields = [
        "kind",
        "file",
        "status",
        "progress",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "error_count",
        "message",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    exclude = ["errors"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj: ImportJob) -> str:
        return format_html(
            '<progress max="100" value="{}" aria-label="import progress"></progress> {}% '
            "({} of {} rows)",
            obj.percent,
            obj.percent,
            obj.processed_rows,
            obj.total_rows,
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/errors.csv",
                self.admin_site.admin_view(self.errors_csv),
                name="crm_importjob_errors",
            ),
            *super().get_urls(),
        ]

    @admin_permission("crm.view_importjob")
    def errors_csv(self, request, pk: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=pk)
        return csv_response(
            filename=f"import-{pk}-errors.csv",
            header=["line", "field", "message"],
            rows=(
                [error.get("row"), error.get("field") or "", error.get("message")]
                for error in job.errors
            ),
        )


# --- Events, orders, products ----------------------------------------------------------
@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["name", "contact", "occurred_at", "source", "message_id"]
    list_select_related = ["contact"]
    search_fields = ["name", "message_id", "contact__email", "anonymous_id"]
    list_filter = ["source", ("contact", admin.EmptyFieldListFilter)]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["contact"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Event._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = ["product_ref", "name", "category", "quantity", "unit_price"]
    exclude = ["product"]

    def has_add_permission(self, request, obj=None):
        return False


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    readonly_fields = ["external_id", "amount", "reason", "refunded_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(CsvExportMixin, admin.ModelAdmin):
    csv_columns = [
        ("order_id", "external_id"),
        ("contact_email", "contact.email"),
        ("contact_external_id", "contact.external_id"),
        ("total", "total"),
        ("currency", "currency"),
        ("refunded_total", "refunded_total"),
        ("status", "status"),
        ("source", "source"),
        ("ordered_at", "ordered_at"),
    ]
    list_display = [
        "external_id",
        "contact",
        "total",
        "currency",
        "refunded_total",
        "status",
        "ordered_at",
    ]
    list_select_related = ["contact"]
    list_filter = ["status", "currency", "source"]
    date_hierarchy = "ordered_at"
    search_fields = ["external_id", "contact__email", "contact__external_id"]
    raw_id_fields = ["contact"]
    inlines = [OrderLineInline, RefundInline]
    actions = ["refund_in_full"]
    show_full_result_count = False
    readonly_fields = [
        "external_id",
        "contact",
        "total",
        "currency",
        "refunded_total",
        "status",
        "ordered_at",
        "source",
        "attributes",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a refund is recorded, never a deletion

    @admin.action(
        description="Refund the remaining amount of the selected orders…", permissions=["change"]
    )
    def refund_in_full(self, request, queryset):
        admin_require(request, "crm.change_order")
        refundable = queryset.exclude(status="refunded")
        asking = action_confirmed(
            request,
            queryset,
            model_admin=self,
            title="Refund in full?",
            question="Refund the remaining amount of",
            button="Yes, refund them",
            affected=refundable,
            warning="Refunds are recorded, never undone: points earned on these orders are "
            "clawed back and referral rewards they qualified for are cancelled.",
        )
        if asking is not None:
            return asking
        done = 0
        for external_id in refundable.values_list("external_id", flat=True):
            try:
                refund, _ = order_refund(
                    order_external_id=external_id, reason=f"refunded by {request.user}"
                )
                admin_log(request, refund.order, f"Refunded the remaining {refund.amount}.")
                done += 1
            except KeepersError as error:
                messages.error(request, f"{external_id}: {error.message}")
        messages.success(request, f"{done} orders refunded.")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = [
        "product_id",
        "name",
        "category",
        "price",
        "currency",
        "in_stock",
        "replenishable",
        "updated_at",
    ]
    list_filter = ["in_stock", "replenishable", "category"]
    search_fields = ["product_id", "name", "category"]
    change_list_template = "admin/crm/product/change_list.html"

    def get_urls(self):
        return [
            path(
                "import/", self.admin_site.admin_view(self.import_view), name="crm_product_import"
            ),
            *super().get_urls(),
        ]

    @admin_permission("crm.add_product")
    def import_view(self, request: HttpRequest):
        return import_upload_view(self, request, ImportJob.Kind.PRODUCTS)


@admin.register(StageChange)
class StageChangeAdmin(admin.ModelAdmin):
    list_display = ["contact", "from_stage", "to_stage", "at", "reason"]
    list_filter = ["to_stage", "from_stage", "reason"]
    list_select_related = ["contact"]
    search_fields = ["contact__email"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    """The consent log is append-only: it can be read and searched, never edited."""

    list_display = [
        "contact",
        "channel",
        "topic",
        "status",
        "source",
        "wording_version",
        "recorded_at",
    ]
    list_filter = ["status", "channel", "topic", "source"]
    list_select_related = ["contact"]
    search_fields = ["contact__email"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    """Subscription topics: what the preference centre lists (in `order`, in the
    contact's language) and what a template or broadcast is about."""

    list_display = ["name", "name_ja", "slug", "default_opt_in", "is_active", "order"]
    list_display_links = ["name"]
    list_editable = ["order"]
    list_filter = ["is_active", "default_opt_in"]
    search_fields = ["name", "name_ja", "slug", "description", "description_ja"]
    ordering = ["order", "name"]
    fieldsets = [
        (None, {"fields": ["slug", "is_active", "default_opt_in", "order"]}),
        ("English", {"fields": ["name", "description"]}),
        (
            "Japanese",
            {
                "fields": ["name_ja", "description_ja"],
                "description": "Shown to contacts whose locale is Japanese; left blank, "
                "they see the English.",
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        # consent records name the topic by its slug: a new slug would orphan them
        return ["slug"] if obj is not None else []


class LeadScoreChangeInline(admin.TabularInline):
    model = LeadScoreChange
    extra = 0
    can_delete = False
    readonly_fields = ["field", "old_value", "new_value", "changed_by", "changed_via", "changed_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LeadScorecard)
class LeadScorecardAdmin(admin.ModelAdmin):
    """Scorecards are edited on the contact's page; here they are listed and audited."""

    list_display = ["contact", "score", "confirmed", "updated_at"]
    list_select_related = ["contact"]
    search_fields = ["contact__email"]
    ordering = ["-score"]
    inlines = [LeadScoreChangeInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in LeadScorecard._meta.fields]

    @admin.display(description="confirmed (of 6)")
    def confirmed(self, card: LeadScorecard) -> int:
        return scorecard_confirmed(card)

    def has_add_permission(self, request):
        return False


# --- API keys ----------------------------------------------------------------------------
@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scope", "created_at", "last_used_at", "status"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]
    fields = ["name", "scope"]

    def get_readonly_fields(self, request, obj=None):
        return (
            ["name", "scope", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
            if obj
            else []
        )

    def get_fields(self, request, obj=None):
        return self.get_readonly_fields(request, obj) if obj else ["name", "scope"]

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        return "revoked" if obj.revoked_at else "active"

    def save_model(self, request, obj, form, change):
        if change:
            return
        key, raw = api_key_create(name=obj.name, scope=obj.scope, created_by=request.user)
        obj.pk, obj._state.adding = key.pk, False
        messages.warning(
            request,
            format_html("Copy this key now; it is not shown again: <code>{}</code>", raw),
        )

    @admin.action(description="Revoke the selected keys…", permissions=["change"])
    def revoke(self, request, queryset):
        admin_require(request, "crm.change_apikey")
        live = queryset.filter(revoked_at__isnull=True)
        asking = action_confirmed(
            request,
            queryset,
            model_admin=self,
            title="Revoke API keys?",
            question="Revoke",
            button="Yes, revoke them",
            affected=live,
            warning="Every integration using these keys stops at once; a revoked key "
            "cannot be restored (create a new one).",
        )
        if asking is not None:
            return asking
        for key in live:
            api_key_revoke(key=key)
            admin_log(request, key, "Revoked.")
        messages.success(request, "Keys revoked.")


class SpendImportForm(forms.Form):
    file = forms.FileField(help_text="UTF-8 CSV, header channel,month,amount,currency[,note]")


@admin.register(MarketingSpend)
class MarketingSpendAdmin(admin.ModelAdmin):
    """Spend per channel and month, for CAC; entered here, by CSV or by API."""

    list_display = ("month", "channel", "amount", "currency", "note")
    list_filter = ("channel", "currency")
    search_fields = ("channel", "note")
    date_hierarchy = "month"
    ordering = ("-month", "channel")

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="crm_marketingspend_import",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)

        transaction.on_commit(metrics_cache_invalidate)

    @admin_permission("crm.add_marketingspend")
    def import_view(self, request: HttpRequest):
        form = SpendImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                text = form.cleaned_data["file"].read().decode("utf-8-sig")
            except UnicodeDecodeError:
                form.add_error("file", "The file is not UTF-8 text.")
            else:
                stored, errors = spend_import_csv(text)
                if not errors:
                    messages.success(request, f"{stored} spend entries stored.")
                    return HttpResponseRedirect(reverse("admin:crm_marketingspend_changelist"))
                messages.warning(request, f"{stored} entries stored; {len(errors)} rows refused.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import marketing spend",
            "form": form,
            "errors": errors,
        }
        return TemplateResponse(request, "admin/crm/marketingspend/import.html", context)


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


@admin.register(ClvModelFit)
class ClvModelFitAdmin(admin.ModelAdmin):
    """Predicted-CLV fits (crm.services.clv_fits): nightly and on demand, read-only here,
    with a button that queues a fit now. A failed fit says why; the predictions stay those
    of the latest successful one."""

    list_display = (
        "as_of",
        "fitted_at",
        "status",
        "customers",
        "purchase_model",
        "spend_model",
        "seconds",
    )
    list_filter = ("status",)
    date_hierarchy = "fitted_at"
    change_list_template = "admin/crm/clvmodelfit/change_list.html"
    fieldsets = [
        (None, {"fields": [("as_of", "fitted_at"), "status", "error", "customers", "seconds"]}),
        (
            "BG/NBD: repeat purchases and dropout (time in weeks)",
            {"fields": [("r", "alpha"), ("a", "b"), "dropout", "bgnbd_log_likelihood"]},
        ),
        (
            "Gamma-Gamma: spend per purchase",
            {"fields": [("p", "q", "gamma"), "nu", "gg_customers", "gg_log_likelihood"]},
        ),
        ("Predicted CLV", {"fields": [("horizon_months", "monthly_discount"), "currency"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ClvModelFit._meta.fields] + ["seconds"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting the current fit would delete every prediction with it

    @admin.display(description="BG/NBD")
    def purchase_model(self, obj: ClvModelFit) -> str:
        if obj.r is None:
            return "—"
        if obj.dropout is not None:
            shape = f"one dropout probability {obj.dropout:.3g}"
        else:
            shape = f"a {_g(obj.a)}, b {_g(obj.b)}"
        return f"r {_g(obj.r)}, α {_g(obj.alpha)}, {shape}; LL {obj.bgnbd_log_likelihood:,.1f}"

    @admin.display(description="Gamma-Gamma")
    def spend_model(self, obj: ClvModelFit) -> str:
        if obj.p is None:
            return "—"
        if obj.nu is not None:
            shape = f"one spend rate ν {_g(obj.nu)} (mean {obj.p / obj.nu:.2f})"
        else:
            shape = f"q {_g(obj.q)}, γ {_g(obj.gamma)}"
        return f"p {_g(obj.p)}, {shape} on {obj.gg_customers:,}"

    @admin.display(description="duration (s)", ordering="duration_ms")
    def seconds(self, obj: ClvModelFit) -> str:
        return f"{obj.duration_ms / 1000:.1f}"

    def get_urls(self):
        return [
            path(
                "fit-now/",
                self.admin_site.admin_view(self.fit_now_view),
                name="crm_clvmodelfit_fit_now",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_fit": request.user.has_perm("crm.add_clvmodelfit"),
        }
        return super().changelist_view(request, extra_context)

    @admin_permission("crm.add_clvmodelfit")
    def fit_now_view(self, request: HttpRequest):
        """POST: queue the nightly fit task now (its result appears in the list)."""
        if request.method != "POST":
            return HttpResponse(status=405)
        clv_fit_task.delay()
        messages.success(
            request,
            "A fit on the orders up to today is queued: it appears here when done "
            "(seconds for a small shop, about a minute for millions of orders).",
        )
        return HttpResponseRedirect(reverse("admin:crm_clvmodelfit_changelist"))
