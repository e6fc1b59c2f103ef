"""Staff screens for loyalty: the ledger (read-only: it is append-only), manual
adjustments with a required reason, a contact's ledger with its balances and what each
debit took from which grant, the liability report (outstanding points and store credit by
expiry month, with CSV), the referral overview with refusals, tiers with their
distribution, earn and bonus rules, and coupons with batch generation.

Every write goes through a service: adjustments through `grant` / `debit`, coupons through
`coupon_create`. The reads at the top (liability, referral summary, tier distribution) are
set-based aggregates, a constant number of queries whatever the ledger's size."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, F, Prefetch, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from crm import clock
from crm.admin import CONTACT_PAGE_TOOLS
from crm.admin_access import admin_log, admin_log_many, admin_permission, admin_require
from crm.admin_confirm import action_confirmed
from crm.admin_export import CsvExportMixin
from crm.charts import svg_hbars
from crm.csv_response import csv_response
from crm.currencies import minor_digits
from crm.errors import KeepersError
from crm.models import Contact
from loyalty import selectors
from loyalty.models import (
    POINTS,
    Allocation,
    BonusRule,
    Coupon,
    CouponRedemption,
    EarnRule,
    LedgerEntry,
    Referral,
    ReferralCode,
    ReferralRefusal,
    Tier,
    TierChange,
)
from loyalty.services.coupons import coupon_create
from loyalty.services.ledger import (
    EXPIRES_IN_DAYS_MAX,
    grant_window,
    ledger_balances,
    ledger_debit,
    ledger_grant,
)
from loyalty.services.tiers import base_currency, tier_progress

ZERO = Decimal("0")
Type = LedgerEntry.Type
NO_EXPIRY = "no expiry"


# ------------------------------------------------------------------------------------------
# Formatting and charts
# ------------------------------------------------------------------------------------------
def amount_text(value: Decimal | int | None, unit: str) -> str:
    """Points as whole numbers, money with the currency's decimals, thousands grouped."""
    if value is None:
        return "—"
    if unit == POINTS:
        return f"{int(value):,}"
    return f"{Decimal(value):,.{minor_digits(unit)}f}"


def _plain(value: Decimal, unit: str) -> str:
    """For CSV: no grouping, the currency's decimals."""
    if unit == POINTS:
        return str(int(value))
    return f"{value:.{minor_digits(unit)}f}"


def _unit_label(unit: str) -> str:
    return "Points" if unit == POINTS else f"Store credit ({unit})"


def bar_chart(bars: list[tuple[str, Decimal | int]], *, title: str, unit: str) -> SafeString:
    """Horizontal bars (crm.charts) with the amounts written in the unit's format."""
    if not bars or not any(value for _, value in bars):
        return mark_safe("<p>Nothing to show yet.</p>")
    return svg_hbars(bars, title=title, text=lambda value: amount_text(value, unit))


# ------------------------------------------------------------------------------------------
# Reports (the reads are in loyalty.selectors; here, their tables and charts)
# ------------------------------------------------------------------------------------------
def liability_report(*, now: dt.datetime) -> dict:
    """What is still owed: the remaining value of grants that have not expired (pending
    ones, redeemable only later, included), per unit and expiry month in shop time.
    Points are also valued in each currency that has an earn rule (× credit_per_point):
    the same points at each currency's rate, alternatives rather than amounts to add up.
    Two queries: one aggregate over the open grants, one for the earn rules."""
    by_month, summary = selectors.open_grants_by_expiry_month(now=now)
    rates = selectors.points_rates()
    currencies = sorted(unit for unit in summary if unit != POINTS)
    months = sorted(m for m in by_month if m is not None) + ([None] if None in by_month else [])

    # Columns: (header, CSV header, unit of the values)
    columns = [("Points", "points", POINTS)]
    columns += [(f"Points value ({cur})", f"points_value_{cur}", cur) for cur, _ in rates]
    columns += [(f"Store credit ({cur})", f"store_credit_{cur}", cur) for cur in currencies]
    units = [unit for _, _, unit in columns]

    def values_for(amounts: dict[str, Decimal]) -> list[Decimal]:
        points = amounts.get(POINTS, ZERO)
        return [
            points,
            *(points * rate for _, rate in rates),
            *(amounts.get(cur, ZERO) for cur in currencies),
        ]

    def cells(values: list[Decimal]) -> list[str]:
        return [amount_text(v, unit) for v, unit in zip(values, units, strict=True)]

    rows = []
    for month in months:
        values = values_for(by_month[month])
        label = month.strftime("%Y-%m") if month else NO_EXPIRY
        rows.append({"label": label, "values": values, "cells": cells(values)})
    totals = values_for({unit: s["outstanding"] for unit, s in summary.items()})

    charts = []
    for unit in [POINTS, *currencies]:
        if unit not in summary:
            continue
        index = (
            units.index(unit)
            if unit == POINTS
            else len(units) - len(currencies) + currencies.index(unit)
        )
        title = f"{_unit_label(unit)} outstanding by expiry month"
        bars = [(row["label"], row["values"][index]) for row in rows]
        charts.append({"title": title, "svg": bar_chart(bars, title=title, unit=unit)})
    return {
        "as_of": now,
        "time_zone": settings.KEEPERS_SHOP_TIME_ZONE,
        "headers": [header for header, _, _ in columns],
        "csv_headers": ["expiry_month", *(name for _, name, _ in columns)],
        "units": units,
        "rows": rows,
        "totals": totals,
        "total_cells": cells(totals),
        "charts": charts,
        "rates": rates,
        "summary": [
            {
                "unit": unit,
                "label": _unit_label(unit),
                "outstanding": amount_text(s["outstanding"], unit),
                "pending": amount_text(s["pending"], unit) if s["pending"] else "",
                "grants": s["grants"],
                "values": [
                    f"{amount_text(s['outstanding'] * rate, cur)} {cur}" for cur, rate in rates
                ]
                if unit == POINTS
                else [],
            }
            for unit, s in sorted(summary.items(), key=lambda kv: (kv[0] != POINTS, kv[0]))
        ],
    }


# ------------------------------------------------------------------------------------------
# Ledger
# ------------------------------------------------------------------------------------------
class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [
            ("expired", "Expired"),
            ("soon", "Unspent, expiring within 30 days"),
            ("never", "Grants with no expiry"),
        ]

    def queryset(self, request, queryset):
        now = clock.now()
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "soon":
            return queryset.expiring(now, dt.timedelta(days=30))
        if self.value() == "never":
            return queryset.filter(amount__gt=0, expires_at__isnull=True)
        return queryset


class AllocationInline(admin.TabularInline):
    """On a debit's page: which grants it took from."""

    model = Allocation
    fk_name = "debit"
    fields = ["grant", "amount"]
    readonly_fields = ["grant", "amount"]
    extra = 0
    can_delete = False
    verbose_name = "taken from grant"
    verbose_name_plural = "taken from grants"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("grant")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AdjustmentForm(forms.Form):
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.all(),
        widget=AutocompleteSelect(LedgerEntry._meta.get_field("contact"), admin.site),
        help_text="Search by email or name",
    )
    unit = forms.CharField(
        max_length=6,
        initial=POINTS,
        widget=forms.TextInput(attrs={"list": "kp-units", "size": 8}),
        help_text='"points", or the currency code of store credit (EUR, USD…)',
    )
    direction = forms.ChoiceField(
        choices=[("add", "Add"), ("remove", "Remove")], widget=forms.RadioSelect, initial="add"
    )
    amount = forms.DecimalField(
        max_digits=16, decimal_places=4, help_text="Points are whole numbers"
    )
    # The grant's window, with the ledger's and the API's names and rules (grant_window).
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=f"Optional, for an addition only ({settings.TIME_ZONE}); "
        "or give a number of days below",
    )
    expires_in_days = forms.IntegerField(
        required=False,
        label="Expires in (days)",
        min_value=1,
        max_value=EXPIRES_IN_DAYS_MAX,
        help_text="Optional: the value expires this many days from now (instead of a date)",
    )
    redeemable_from = forms.DateTimeField(
        required=False,
        label="Redeemable from",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional: the customer can spend it only from this moment (shop cash); "
        "the window closes at the expiry",
    )
    reason = forms.CharField(
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept on the entry with your name; the customer may see it",
    )
    # Drawn when the form is shown: a form sent twice records one adjustment.
    key = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def clean_unit(self) -> str:
        unit = self.cleaned_data["unit"].strip()
        return POINTS if unit.lower() == POINTS else unit.upper()

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason

    def clean(self):
        data = super().clean()
        window = ("expires_at", "expires_in_days", "redeemable_from")
        if data.get("direction") == "remove":
            for name in window:
                if data.get(name):
                    self.add_error(name, "Only value that is added has an expiry or a window.")
            return data
        try:
            data["expires_at"], data["redeemable_from"] = grant_window(
                expires_at=data.get("expires_at"),
                expires_in_days=data.get("expires_in_days"),
                redeemable_from=data.get("redeemable_from"),
                now=clock.now(),
            )
        except KeepersError as error:
            self.add_error(error.field if error.field in window else None, error.message)
        return data


# A KeepersError names the service's field; these are the form's names for them.
_FIELDS = {"currency": "unit", "unit": "unit", "amount": "amount", "reason": "reason"}


def _error_to_form(form: forms.Form, error: KeepersError, fields: dict[str, str]) -> None:
    name = fields.get(error.field or "", error.field)
    form.add_error(name if name in form.fields else None, error.message)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(CsvExportMixin, admin.ModelAdmin):
    """The ledger is append-only: read and searched here, written only by services (a
    staff adjustment is a new entry, through the adjustment page)."""

    csv_columns = [
        ("id", "pk"),
        ("created_at", "created_at"),
        ("contact_id", "contact_id"),
        ("email", "contact.email"),
        ("unit", "unit"),
        ("type", "type"),
        ("amount", "amount"),
        ("remaining", "remaining"),
        ("shortfall", "shortfall"),
        ("redeemable_from", "redeemable_from"),
        ("expires_at", "expires_at"),
        ("reason", "reason"),
        ("source_type", "source_type"),
        ("source_id", "source_id"),
        ("order_id", "order.external_id"),
        ("staff_user", "staff_user.username"),
    ]

    list_display = [
        "created_at",
        "contact_link",
        "unit",
        "type",
        "amount_display",
        "remaining_display",
        "expires_at",
        "reason",
        "staff_user",
    ]
    list_filter = ["unit", "type", "source_type", ExpiryFilter]
    list_select_related = ["contact", "staff_user"]
    search_fields = ["contact__email", "reason"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-pk"]
    show_full_result_count = False
    list_per_page = 100
    inlines = [AllocationInline]
    change_list_template = "admin/loyalty/ledgerentry/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in LedgerEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="contact", ordering="contact__email")
    def contact_link(self, obj: LedgerEntry) -> str:
        url = reverse("admin:loyalty_ledgerentry_contact", args=[obj.contact_id])
        return format_html('<a href="{}">{}</a>', url, obj.contact)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: LedgerEntry) -> str:
        text = amount_text(obj.amount, obj.unit)
        if obj.shortfall:
            return f"{text} (short {amount_text(obj.shortfall, obj.unit)})"
        return text

    @admin.display(description="remaining", ordering="remaining")
    def remaining_display(self, obj: LedgerEntry) -> str:
        return amount_text(obj.remaining, obj.unit) if obj.amount > 0 else "—"

    def changelist_view(self, request, extra_context=None):
        contact_id = request.GET.get("contact__id__exact", "")
        extra_context = {
            **(extra_context or {}),
            "can_adjust": self._can_adjust(request),
            "filtered_contact_id": int(contact_id) if contact_id.isdigit() else None,
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("adjust/", view(self.adjust_view), name="loyalty_ledgerentry_adjust"),
            path(
                "<int:contact_id>/ledger/",
                view(self.contact_ledger_view),
                name="loyalty_ledgerentry_contact",
            ),
            path("liability/", view(self.liability_view), name="loyalty_ledgerentry_liability"),
            path(
                "liability.csv",
                view(self.liability_csv),
                name="loyalty_ledgerentry_liability_csv",
            ),
            *super().get_urls(),
        ]

    # --- manual adjustment ------------------------------------------------------------
    def _can_adjust(self, request: HttpRequest) -> bool:
        # The admin's add form is closed (append-only); "add ledger entry" is the
        # permission to adjust.
        return request.user.has_perm("loyalty.add_ledgerentry")

    @admin_permission("loyalty.view_ledgerentry", "loyalty.add_ledgerentry")
    def adjust_view(self, request: HttpRequest):
        """Add or remove points or store credit, with a reason, recorded with the staff
        user. The key is drawn when the form is shown, so sending it twice is one entry."""
        contact_id = request.GET.get("contact", "")
        form = AdjustmentForm(
            request.POST or None,
            initial={
                "contact": contact_id if contact_id.isdigit() else None,
                "key": uuid.uuid4(),
            },
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            contact, unit = data["contact"], data["unit"]
            common = {
                "contact": contact,
                "unit": unit,
                "amount": data["amount"],
                "reason": data["reason"],
                "key": f"staff:{data['key'] or uuid.uuid4()}",
                "type": Type.ADJUST,
                "source_type": "staff",
                "source_id": str(request.user.pk),
                "staff_user": request.user,
            }
            try:
                if data["direction"] == "add":
                    entry, created = ledger_grant(
                        **common,
                        expires_at=data["expires_at"],
                        redeemable_from=data["redeemable_from"],
                    )
                else:
                    entry, created = ledger_debit(**common)
            except KeepersError as error:
                _error_to_form(form, error, _FIELDS)
            else:
                if created:
                    admin_log(
                        request, entry, f"Manual adjustment: {data['reason']}", action_flag=ADDITION
                    )
                self._adjusted_message(request, entry, created)
                return HttpResponseRedirect(
                    reverse("admin:loyalty_ledgerentry_contact", args=[contact.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Manual adjustment",
            "form": form,
            "media": self.media + form.media,
            "unit_suggestions": self._unit_suggestions(),
        }
        return TemplateResponse(request, "admin/loyalty/ledgerentry/adjust.html", context)

    def _unit_suggestions(self) -> list[str]:
        currencies = set(EarnRule.objects.values_list("currency", flat=True))
        currencies.add(base_currency())
        return [POINTS, *sorted(currencies)]

    def _adjusted_message(self, request: HttpRequest, entry: LedgerEntry, created: bool) -> None:
        if not created:
            messages.info(request, "This adjustment was already recorded; nothing more moved.")
            return
        balance = ledger_balances(entry.contact).get(entry.unit)
        available = balance.available if balance else ZERO
        verb = "Added" if entry.amount > 0 else "Removed"
        preposition = "to" if entry.amount > 0 else "from"
        unit_text = "points" if entry.unit == POINTS else f"store credit ({entry.unit})"
        messages.success(
            request,
            f"{verb} {amount_text(abs(entry.amount), entry.unit)} {unit_text} {preposition} "
            f"{entry.contact}. Available now: {amount_text(available, entry.unit)}.",
        )

    # --- one contact's ledger ---------------------------------------------------------
    @admin_permission("loyalty.view_ledgerentry")
    def contact_ledger_view(self, request: HttpRequest, contact_id: int):
        """Balances per unit (available, pending, expiring by date), tier and progress,
        then every entry with the grants a debit took from and the debits that used a
        grant. A constant number of queries per page."""
        contact = get_object_or_404(Contact, pk=contact_id)
        now = clock.now()
        units = sorted(
            ledger_balances(contact, now=now).values(), key=lambda b: (b.unit != POINTS, b.unit)
        )
        entries = (
            LedgerEntry.objects.filter(contact=contact)
            .select_related("staff_user", "order")
            .prefetch_related(
                Prefetch("allocations", Allocation.objects.select_related("grant").order_by("pk")),
                Prefetch("consumed_by", Allocation.objects.select_related("debit").order_by("pk")),
            )
            .order_by("-created_at", "-pk")
        )
        page = Paginator(entries, 100).get_page(request.GET.get("page"))
        for entry in page.object_list:
            entry.amount_text = amount_text(entry.amount, entry.unit)
            entry.remaining_text = (
                amount_text(entry.remaining, entry.unit) if entry.amount > 0 else ""
            )
            # Past its expiry, not yet written off by the expiry task: spendable no more.
            entry.lapsed = bool(
                entry.remaining > 0 and entry.expires_at and entry.expires_at <= now
            )
            entry.shortfall_text = (
                amount_text(entry.shortfall, entry.unit) if entry.shortfall else ""
            )
            entry.took = [
                {"amount": amount_text(a.amount, entry.unit), "entry": a.grant}
                for a in entry.allocations.all()
            ]
            entry.used_by = [
                {"amount": amount_text(a.amount, entry.unit), "entry": a.debit}
                for a in entry.consumed_by.all()
            ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Loyalty ledger of {contact}",
            "contact": contact,
            "balances": [
                {
                    "unit": b.unit,
                    "label": _unit_label(b.unit),
                    "available": amount_text(b.available, b.unit),
                    "pending": amount_text(b.pending, b.unit) if b.pending else "",
                    "expiring": [
                        {"at": e["expires_at"], "amount": amount_text(e["amount"], b.unit)}
                        for e in b.expiring
                    ],
                }
                for b in units
            ],
            "progress": tier_progress(contact, now),
            "page": page,
            "can_adjust": self._can_adjust(request),
            "changelist_url": reverse("admin:loyalty_ledgerentry_changelist")
            + f"?contact__id__exact={contact.pk}",
        }
        return TemplateResponse(request, "admin/loyalty/ledgerentry/contact_ledger.html", context)

    # --- liability report -------------------------------------------------------------
    @admin_permission("loyalty.view_ledgerentry")
    def liability_view(self, request: HttpRequest):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Liability report",
            "report": liability_report(now=clock.now()),
        }
        return TemplateResponse(request, "admin/loyalty/ledgerentry/liability.html", context)

    @admin_permission("loyalty.view_ledgerentry")
    def liability_csv(self, request: HttpRequest) -> HttpResponse:
        now = clock.now()
        report = liability_report(now=now)
        units = report["units"]
        rows = [
            [row["label"], *(_plain(v, u) for v, u in zip(row["values"], units, strict=True))]
            for row in report["rows"]
        ]
        rows.append(
            ["total", *(_plain(v, u) for v, u in zip(report["totals"], units, strict=True))]
        )
        return csv_response(
            filename=f"loyalty-liability-{now:%Y-%m-%d}.csv",
            header=report["csv_headers"],
            rows=rows,
            content_type="text/csv",  # without a charset, as tests/loyalty pins
        )


def loyalty_contact_tools(request: HttpRequest, contact: Contact) -> list[tuple[str, str]]:
    """Buttons on crm's contact page: the contact's loyalty ledger, and a manual
    adjustment for staff who may make one."""
    tools = []
    if request.user.has_perm("loyalty.view_ledgerentry"):
        url = reverse("admin:loyalty_ledgerentry_contact", args=[contact.pk])
        tools.append(("Loyalty ledger", url))
    if request.user.has_perm("loyalty.add_ledgerentry"):
        url = reverse("admin:loyalty_ledgerentry_adjust")
        tools.append(("Adjust points / credit", f"{url}?contact={contact.pk}"))
    return tools


CONTACT_PAGE_TOOLS.append(loyalty_contact_tools)


# ------------------------------------------------------------------------------------------
# Referrals
# ------------------------------------------------------------------------------------------
class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by services: listed and searched, never edited here."""

    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "referrer",
        "friend",
        "status",
        "channel",
        "order",
        "reward_at",
        "rewarded_at",
        "reason",
    ]
    list_filter = ["status", "channel"]
    list_select_related = ["referrer", "friend", "order"]
    search_fields = ["referrer__email", "friend__email", "code__code"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-pk"]
    change_list_template = "admin/loyalty/referral/change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "summary": selectors.referral_summary(now=clock.now()),
        }
        return super().changelist_view(request, extra_context)


@admin.register(ReferralRefusal)
class ReferralRefusalAdmin(ReadOnlyAdmin):
    list_display = ["at", "reason", "code_owner", "email", "code"]
    list_select_related = ["code__contact"]
    search_fields = ["reason", "email", "code__code", "code__contact__email"]
    date_hierarchy = "at"
    ordering = ["-at", "-pk"]

    @admin.display(description="code owner", ordering="code__contact__email")
    def code_owner(self, obj: ReferralRefusal) -> str:
        return str(obj.code.contact)


@admin.register(ReferralCode)
class ReferralCodeAdmin(ReadOnlyAdmin):
    list_display = ["code", "contact", "created_at"]
    list_select_related = ["contact"]
    search_fields = ["code", "contact__email"]


# ------------------------------------------------------------------------------------------
# Tiers and rules
# ------------------------------------------------------------------------------------------
@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["name", "rank", "basis", "threshold", "multiplier", "members"]
    fields = ["name", "rank", "basis", "threshold", "multiplier"]
    ordering = ["rank"]
    change_list_template = "admin/loyalty/tier/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(members_count=Count("contacttier"))

    @admin.display(description="contacts", ordering="members_count")
    def members(self, obj: Tier) -> int:
        return obj.members_count

    def changelist_view(self, request, extra_context=None):
        bars = selectors.tier_distribution()
        extra_context = {
            **(extra_context or {}),
            "distribution": bars,
            "distribution_chart": bar_chart(bars, title="Contacts per tier", unit=POINTS),
        }
        return super().changelist_view(request, extra_context)


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "contact", "from_tier", "to_tier", "reason"]
    list_filter = ["to_tier", "from_tier"]
    list_select_related = ["contact", "from_tier", "to_tier"]
    search_fields = ["contact__email", "reason"]
    date_hierarchy = "at"
    ordering = ["-at", "-pk"]


@admin.register(EarnRule)
class EarnRuleAdmin(admin.ModelAdmin):
    list_display = ["currency", "points_per_unit", "rounding", "expiry_months", "credit_per_point"]


@admin.register(BonusRule)
class BonusRuleAdmin(admin.ModelAdmin):
    list_display = ["kind", "event", "points", "active"]
    list_filter = ["kind", "active"]


# ------------------------------------------------------------------------------------------
# Coupons
# ------------------------------------------------------------------------------------------
class CouponStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("usable", "Usable now"),
            ("used_up", "Used up"),
            ("expired", "Expired"),
        ]

    def queryset(self, request, queryset):
        now = clock.now()
        if self.value() == "usable":
            return queryset.filter(active=True, uses__lt=F("max_uses")).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now),
                Q(starts_at__isnull=True) | Q(starts_at__lte=now),
            )
        if self.value() == "used_up":
            return queryset.filter(uses__gte=F("max_uses"))
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


class GenerateCouponsForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=500, initial=10, help_text="1 to 500")
    prefix = forms.CharField(
        max_length=20, required=False, help_text="Optional, letters and digits: SPRING-7HQK-9X2M"
    )
    kind = forms.ChoiceField(choices=Coupon.Kind.choices)
    value = forms.DecimalField(
        max_digits=14,
        decimal_places=4,
        required=False,
        initial=0,
        help_text="Percent (1–100) or amount off; 0 for free shipping",
    )
    currency = forms.CharField(
        max_length=3, required=False, help_text="For a fixed amount or a minimum order"
    )
    min_order = forms.DecimalField(max_digits=14, decimal_places=4, required=False, initial=0)
    max_uses = forms.IntegerField(min_value=1, initial=1, help_text="1 for single use")
    max_uses_per_contact = forms.IntegerField(min_value=1, required=False)
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.all(),
        required=False,
        widget=AutocompleteSelect(Coupon._meta.get_field("contact"), admin.site),
        help_text="Bind every code to this contact only (optional)",
    )
    starts_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    release_on_refund = forms.BooleanField(
        required=False, initial=True, help_text="A refund gives a single-use coupon back"
    )

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].strip().upper()


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    """Coupons are made by `coupon_create` (the generation page, campaigns, the API);
    here staff can only switch one off."""

    list_display = [
        "code",
        "kind",
        "value",
        "currency",
        "contact",
        "usage",
        "expires_at",
        "active",
    ]
    list_filter = ["kind", "active", CouponStateFilter, "source_type"]
    list_select_related = ["contact"]
    search_fields = ["code", "source_id", "contact__email"]
    ordering = ["-created_at", "-pk"]
    show_full_result_count = False
    actions = ["switch_off", "download_csv"]
    change_list_template = "admin/loyalty/coupon/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Coupon._meta.fields if f.name != "active"]

    def has_add_permission(self, request):
        return False  # the generation page makes them, through coupon_create

    def has_delete_permission(self, request, obj=None):
        return False  # a code may already be in a customer's inbox: switch it off

    @admin.display(description="uses / max")
    def usage(self, obj: Coupon) -> str:
        return f"{obj.uses} / {obj.max_uses}"

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_generate": request.user.has_perm("loyalty.add_coupon"),
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description="Switch off the selected coupons…", permissions=["change"])
    def switch_off(self, request, queryset):
        admin_require(request, "loyalty.change_coupon")
        asking = action_confirmed(
            request,
            queryset,
            model_admin=self,
            title="Switch off coupons?",
            question="Switch off",
            button="Yes, switch them off",
            affected=queryset.filter(active=True),
            warning="Customers holding these codes can no longer use them.",
        )
        if asking is not None:
            return asking
        coupons = list(queryset.filter(active=True))
        done = queryset.filter(active=True).update(active=False)
        admin_log_many(request, coupons, "Switched off.")
        messages.success(request, f"{done} coupons switched off.")

    @admin.action(description="Download the selected codes as CSV")
    def download_csv(self, request, queryset):
        return csv_response(
            filename="coupons.csv",
            header=["code", "kind", "value", "currency", "max_uses", "expires_at"],
            rows=(
                [
                    coupon.code,
                    coupon.kind,
                    f"{coupon.value.normalize():f}",  # 10, not 1E+1
                    coupon.currency,
                    coupon.max_uses,
                    coupon.expires_at.isoformat() if coupon.expires_at else "",
                ]
                for coupon in queryset.order_by("pk").iterator()
            ),
        )

    def get_urls(self):
        return [
            path(
                "generate/",
                self.admin_site.admin_view(self.generate_view),
                name="loyalty_coupon_generate",
            ),
            *super().get_urls(),
        ]

    @admin_permission("loyalty.view_coupon", "loyalty.add_coupon")
    def generate_view(self, request: HttpRequest):
        """N new codes with the same settings, all or none (one transaction)."""
        form = GenerateCouponsForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = dict(form.cleaned_data)
            count = data.pop("count")
            batch = uuid.uuid4().hex[:12]
            try:
                with transaction.atomic():
                    made = [
                        coupon_create(**data, source_type="admin", source_id=f"batch-{batch}")
                        for _ in range(count)
                    ]
                    admin_log_many(
                        request, made, f"Generated in batch {batch}.", action_flag=ADDITION
                    )
            except KeepersError as error:
                _error_to_form(form, error, {})
            else:
                messages.success(
                    request,
                    f"{count} coupons generated (batch {batch}): select them to download "
                    "the codes as CSV.",
                )
                return HttpResponseRedirect(
                    reverse("admin:loyalty_coupon_changelist") + f"?q=batch-{batch}"
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Generate coupons",
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/loyalty/coupon/generate.html", context)


@admin.register(CouponRedemption)
class CouponRedemptionAdmin(ReadOnlyAdmin):
    list_display = [
        "redeemed_at",
        "coupon",
        "contact",
        "order_ref",
        "discount",
        "currency",
        "released_at",
    ]
    list_filter = [("released_at", admin.EmptyFieldListFilter)]
    list_select_related = ["coupon", "contact"]
    search_fields = ["coupon__code", "order_ref", "contact__email"]
    date_hierarchy = "redeemed_at"
    ordering = ["-redeemed_at", "-pk"]
