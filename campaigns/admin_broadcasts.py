"""Admin for broadcasts: composer, audience preview, schedule, live progress and stats.

A draft is edited in the composer; once scheduled it is read-only and moves only through
the buttons on its page (schedule, pause, resume, unschedule, cancel), each a POST that
calls the service in campaigns.services.broadcasts. While it can still change, the progress
panel polls a small JSON view (campaigns/static/campaigns/broadcast_progress.js)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    HttpRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, re_path, reverse
from django.utils.html import format_html

from campaigns.admin_samples import SampleEventForm
from campaigns.models import (
    SUBJECT_WARNING,
    Broadcast,
    BroadcastRecipient,
    EmailTemplate,
    Message,
)
from campaigns.services.broadcasts import (
    broadcast_audience,
    broadcast_date_problem,
    broadcast_move,
    broadcast_preview,
    broadcast_schedule,
    broadcast_starts_at,
    broadcast_stats,
    broadcast_validate,
    template_for_variant,
)
from campaigns.services.rendering import RenderError
from campaigns.services.templates import email_tests_send, preview_event
from crm import clock
from crm.admin_access import admin_log, admin_permission
from crm.errors import KeepersError
from crm.models import Segment

Status = Broadcast.Status
RecipientStatus = BroadcastRecipient.Status

# the statuses in which the numbers can still change: the page polls while in one of them
LIVE = {Status.SCHEDULED, Status.SENDING, Status.PAUSED, Status.UNCONFIRMED}
# POST-only buttons on the change page, by the status that allows them (cancel has its own
# confirmation page); the service re-checks under the row lock
MOVES = {
    "pause": ("Pause", {Status.SCHEDULED, Status.SENDING}),
    "resume": ("Resume", {Status.PAUSED}),
    "unschedule": ("Unschedule (back to draft)", {Status.SCHEDULED}),
}
CANCELLABLE = {Status.SCHEDULED, Status.SENDING, Status.PAUSED}
DONE = {
    "pause": "Paused",
    "resume": "Resumed",
    "unschedule": "Back to draft",
    "cancel": "Cancelled",
}
COMPOSER_FIELDS = [
    "name",
    "template",
    "subject_b",
    "segment",
    "topic",
    "send_date",
    "send_time",
    "timing",
    "repeat",
    "ab_percent",
    "ab_metric",
    "ab_wait_hours",
    "cap_24h",
    "cap_7d",
    "max_delay_hours",
    "attribution_days",
]


# ------------------------------------------------------------------------------------------
# Formatting: one place, so the first render and the polled updates read the same
# ------------------------------------------------------------------------------------------
def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f} %"


def _utc(at: dt.datetime | None) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def _money(revenue: dict[str, str]) -> str:
    parts = []
    for currency, amount in sorted(revenue.items()):
        try:
            parts.append(f"{currency} {Decimal(amount):,.2f}")
        except InvalidOperation:
            parts.append(f"{currency} {amount}")
    return ", ".join(parts) or "—"


def when_text(broadcast: Broadcast) -> str:
    at = f"{broadcast.send_date.isoformat()} {broadcast.send_time:%H:%M}"
    if broadcast.timing == Broadcast.Timing.LOCAL:
        return f"{at}, each contact's local time"
    return f"{at} shop time ({settings.KEEPERS_SHOP_TIME_ZONE})"


def start_text(broadcast: Broadcast) -> str:
    """When sending starts, as staff read it: UTC, and the shop's clock for shop time."""
    if problem := broadcast_date_problem(broadcast):
        return f"never: {problem} Change the date."
    starts = broadcast_starts_at(broadcast)
    if broadcast.timing == Broadcast.Timing.LOCAL:
        return (
            f"{_utc(starts)}, when {broadcast.send_time:%H:%M} first comes anywhere (the "
            f"audience is frozen then); each contact gets it at {broadcast.send_time:%H:%M} "
            f"in their own time zone"
        )
    shop = starts.astimezone(clock.shop_zone())
    return f"{_utc(starts)} ({shop:%Y-%m-%d %H:%M} {settings.KEEPERS_SHOP_TIME_ZONE})"


def progress_display(broadcast: Broadcast, stats: dict) -> dict:
    """The panel's numbers as text, keyed like the page's data-kp attributes; the bar's
    share is of the recipients whose message was created, skipped or cancelled."""
    progress, sent = stats["progress"], stats["messages"]
    recipients = sum(progress[s] for s in RecipientStatus.values)
    handled = recipients - progress["remaining"]
    percent = handled * 100 // recipients if recipients else 0
    text = {
        "status": broadcast.get_status_display(),
        "audience": _n(recipients),
        "progress": f"{sent['sent']:,} / {recipients:,} sent",
        "percent": f"{percent} %",
        "remaining": _n(progress["remaining"]),
        "skipped": _n(progress["skipped"]),
        "cancelled": _n(progress["cancelled"]),
        "failed": _n(sent["failed"]),
        "unconfirmed": _n(sent["unconfirmed"]),
        "bounced": _n(sent["bounced"]),
        "complained": _n(sent["complained"]),
        "orders": _n(stats["conversions"]["orders"]),
        "buyers": _n(stats["conversions"]["contacts"]),
        "revenue": _money(stats["conversions"]["revenue"]),
    }
    for key in ("sent", "delivered", "opened", "clicked", "unsubscribed"):
        text[key] = _n(sent[key])
        if key != "sent":
            text[f"{key}_rate"] = _pct(sent[f"{key}_rate"])
    for variant, row in stats["variants"].items():
        for key in ("sent", "opened", "clicked"):
            text[f"{variant}_{key}"] = _n(row[key])
        for key in ("opened", "clicked"):
            text[f"{variant}_{key}_rate"] = _pct(row[f"{key}_rate"])
    if broadcast.ab_percent:
        text["winner"] = ab_text(broadcast)
    return {"text": text, "percent": percent, "recipients": recipients}


def ab_text(broadcast: Broadcast) -> str:
    metric = broadcast.get_ab_metric_display().lower()
    if broadcast.ab_winner:
        return (
            f"Subject {broadcast.ab_winner.upper()} won on {metric} "
            f"({_utc(broadcast.ab_decided_at)}); the rest get it."
        )
    if broadcast.frozen_at:
        decides = broadcast.frozen_at + dt.timedelta(hours=broadcast.ab_wait_hours)
        return f"The winner is picked on {metric} at {_utc(decides)}."
    return f"The winner is picked on {metric} {broadcast.ab_wait_hours} h after sending starts."


def empty_text(broadcast: Broadcast) -> str:
    if broadcast.status == Status.CANCELLED:
        return "Cancelled before it started: nobody got it."
    if broadcast.status in (Status.SENT, Status.SENDING, Status.UNCONFIRMED):
        return "The audience was empty when sending started."
    if broadcast.status == Status.PAUSED:
        return f"Paused before it started. Resumed, it starts at {start_text(broadcast)}."
    if broadcast.frozen_at:
        return (
            f"Nothing sent yet: the audience was frozen at {_utc(broadcast.frozen_at)}; "
            f"sending starts at {start_text(broadcast)}."
        )
    # start_text says it for a local-time broadcast (frozen when the first zone starts)
    then = "" if broadcast.timing == Broadcast.Timing.LOCAL else "; the audience is frozen then"
    return f"Nothing sent yet: sending starts at {start_text(broadcast)}{then}."


# ------------------------------------------------------------------------------------------
# Forms
# ------------------------------------------------------------------------------------------
class BroadcastForm(forms.ModelForm):
    class Meta:
        model = Broadcast
        fields = COMPOSER_FIELDS
        widgets = {"subject_b": forms.TextInput(attrs={"size": 60})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "segment" in self.fields:
            self.fields["segment"].queryset = Segment.objects.filter(is_template=False)

    def clean(self):
        data = super().clean()
        if self.instance.pk:
            # the admin runs the whole change view in one transaction: holding the row lock
            # from here to the save means a schedule in another tab cannot slip in between
            status = (
                Broadcast.objects.select_for_update()
                .filter(pk=self.instance.pk)
                .values_list("status", flat=True)
                .first()
            )
            if status != Status.DRAFT:
                raise ValidationError(
                    "This broadcast is no longer a draft (it was scheduled meanwhile): "
                    "unschedule it to change it."
                )
        if self.errors or not data.get("template"):
            return data
        probe = Broadcast(
            template=data["template"],
            segment=data.get("segment"),
            topic=data.get("topic"),
            subject_b=data.get("subject_b") or "",
            ab_percent=data.get("ab_percent") or 0,
            send_date=data.get("send_date"),
        )
        try:
            broadcast_validate(probe)
        except KeepersError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
        return data


class TestSendForm(SampleEventForm):
    """The template preview's contact and sample event (SampleEventForm), and where to."""

    send_to = forms.EmailField(help_text="A staff address: the test goes here, not to the contact")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields[
            "contact"
        ].help_text = "The contact id to render for (the audience preview lists some)"


# ------------------------------------------------------------------------------------------
# Broadcasts
# ------------------------------------------------------------------------------------------
@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    form = BroadcastForm
    list_display = ["name", "status", "when", "audience", "progress"]
    list_filter = ["status", "timing", "repeat"]
    search_fields = ["name"]
    date_hierarchy = "send_date"
    change_form_template = "admin/campaigns/broadcast/change_form.html"
    readonly_fields = [
        "status",
        "audience_size",
        "scheduled_by",
        "frozen_at",
        "finished_at",
        "cancelled_at",
        "series",
        "recipients_link",
    ]
    composer_fieldsets = [
        ("Message", {"fields": ["name", "template", "subject_b"]}),
        (
            "Audience",
            {
                "fields": ["segment", "topic"],
                "description": "One of the two: a segment's members or a topic's subscribers.",
            },
        ),
        ("Schedule", {"fields": [("send_date", "send_time"), "timing", "repeat"]}),
        (
            "A/B test",
            {
                "fields": ["ab_percent", "ab_metric", "ab_wait_hours"],
                "description": "Leave the sample at 0 for no test. With a sample, half of it "
                "gets the template's subject (A), half subject B; after the wait the better "
                "one goes to the rest.",
            },
        ),
        ("Send policy", {"fields": [("cap_24h", "cap_7d"), "max_delay_hours", "attribution_days"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is None or obj.status == Status.DRAFT:
            return self.composer_fieldsets
        state = (
            "Sending",
            {
                "fields": [
                    ("status", "scheduled_by"),
                    ("audience_size", "frozen_at"),
                    ("finished_at", "cancelled_at"),
                    "series",
                    "recipients_link",
                ]
            },
        )
        return [*self.composer_fieldsets, state]

    def get_changeform_initial_data(self, request):
        today = clock.now().astimezone(clock.shop_zone()).date()
        return {
            "send_date": today + dt.timedelta(days=1),
            "send_time": dt.time(9),
            **super().get_changeform_initial_data(request),
        }

    def get_queryset(self, request):
        sent = (
            Message.objects.filter(broadcast=OuterRef("pk"), status=Message.Status.SENT)
            .order_by()
            .values("broadcast")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(sent_count=Coalesce(Subquery(sent, output_field=IntegerField()), 0))
        )

    # -- permissions: the composer is a draft's; a scheduled broadcast changes by its buttons
    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status != Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status != Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def may_operate(self, request: HttpRequest) -> bool:
        """Scheduling and the moves need the model's change permission (what the views
        below declare; this decides which buttons the page shows)."""
        return super().has_change_permission(request)

    # -- the list
    @admin.display(description="when", ordering="send_date")
    def when(self, obj: Broadcast) -> str:
        return when_text(obj)

    @admin.display(description="audience", ordering="audience_size")
    def audience(self, obj: Broadcast) -> str:
        return _n(obj.audience_size)

    @admin.display(description="progress")
    def progress(self, obj: Broadcast) -> str:
        if obj.audience_size is None:
            return "—"
        return f"{obj.sent_count:,} / {obj.audience_size:,} sent"

    @admin.display(description="recipients")
    def recipients_link(self, obj: Broadcast) -> str:
        if not obj.pk:
            return "—"
        return format_html('<a href="{}">Recipients, one row each</a>', recipients_url(obj))

    # -- the composer
    def save_model(self, request, obj, form, change):
        if change:
            # only what the composer edits: status and the sending fields belong to services
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            super().save_model(request, obj, form, change)
        for label, subject in (
            ("The template's subject", obj.template.subject),
            ("Subject B", obj.subject_b),
        ):
            if len(subject) > SUBJECT_WARNING:
                messages.warning(
                    request,
                    f"{label} is {len(subject)} characters long; mobile mail clients show only "
                    f"the first 25–30.",
                )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self.panels(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def panels(self, request: HttpRequest, broadcast: Broadcast) -> dict:
        may = self.may_operate(request)
        context = {
            "when": when_text(broadcast),
            "start": start_text(broadcast),
            "recipients_url": recipients_url(broadcast),
            "may_operate": may,
            "moves": [
                {"action": action, "label": label}
                for action, (label, allowed) in MOVES.items()
                if may and broadcast.status in allowed
            ],
            "can_schedule": may and broadcast.status == Status.DRAFT,
            "can_cancel": may and broadcast.status in CANCELLABLE,
            "poll": broadcast.status in LIVE,
        }
        if broadcast.frozen_at is None and broadcast.status != Status.CANCELLED:
            context["preview"] = preview_context(broadcast)
        if broadcast.status != Status.DRAFT:
            stats = broadcast_stats(broadcast)
            context.update(
                stats=stats,
                display=progress_display(broadcast, stats),
                empty=empty_text(broadcast),
            )
        return context

    # -- the other screens
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/schedule/",
                view(self.schedule_view),
                name="campaigns_broadcast_schedule",
            ),
            path(
                "<int:pk>/test-send/",
                view(self.test_send_view),
                name="campaigns_broadcast_test_send",
            ),
            path(
                "<int:pk>/progress.json",
                view(self.progress_view),
                name="campaigns_broadcast_progress",
            ),
            re_path(
                r"^(?P<pk>[0-9]+)/(?P<action>pause|resume|unschedule|cancel)/$",
                view(self.move_view),
                name="campaigns_broadcast_move",
            ),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, broadcast: Broadcast, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": broadcast,
            "title": title,
            "change_url": change_url(broadcast),
        }

    def _operated(self, request: HttpRequest, pk: int) -> Broadcast:
        return get_object_or_404(Broadcast.objects.select_related("template"), pk=pk)

    @admin_permission("campaigns.view_broadcast", "campaigns.change_broadcast")
    def schedule_view(self, request: HttpRequest, pk: int):
        """GET: what staff are about to confirm (the count, a sample, when it starts).
        POST: schedule it."""
        broadcast = self._operated(request, pk)
        if request.method == "POST":
            try:
                broadcast = broadcast_schedule(broadcast=broadcast, user=request.user)
            except KeepersError as error:
                messages.error(request, error.message)
            else:
                admin_log(request, broadcast, "Scheduled.")
                messages.success(request, f"Scheduled: sending starts at {start_text(broadcast)}.")
            return HttpResponseRedirect(change_url(broadcast))
        if broadcast.status != Status.DRAFT:
            messages.error(
                request,
                f"Only a draft can be scheduled; this broadcast is "
                f"{broadcast.get_status_display().lower()}.",
            )
            return HttpResponseRedirect(change_url(broadcast))
        try:
            broadcast_validate(broadcast)
            problem = ""
        except KeepersError as error:
            problem = error.message
        in_the_past = not problem and broadcast_starts_at(broadcast) < clock.now()
        subjects = [("A" if broadcast.ab_percent else "", broadcast.template.subject)]
        if broadcast.ab_percent:
            subjects.append(("B", broadcast.subject_b))
        context = {
            **self._context(request, broadcast, f"Schedule {broadcast}?"),
            "preview": preview_context(broadcast),
            "start": start_text(broadcast),
            "when": when_text(broadcast),
            "in_the_past": in_the_past,
            "problem": problem,
            "subjects": [
                {"label": label, "text": text, "long": len(text) > SUBJECT_WARNING}
                for label, text in subjects
            ],
            "ab": ab_text(broadcast) if broadcast.ab_percent else "",
        }
        return TemplateResponse(request, "admin/campaigns/broadcast/confirm_schedule.html", context)

    @admin_permission("campaigns.view_broadcast", "campaigns.change_broadcast")
    def move_view(self, request: HttpRequest, pk: int, action: str):
        """Pause, resume, unschedule, cancel: POST only. A GET of cancel is its
        confirmation page; a GET of the others changes nothing."""
        broadcast = self._operated(request, pk)
        if request.method != "POST":
            if action != "cancel":
                return HttpResponseNotAllowed(["POST"])
            context = {
                **self._context(request, broadcast, f"Cancel {broadcast}?"),
                "stats": broadcast_stats(broadcast) if broadcast.frozen_at else None,
                "cancellable": broadcast.status in CANCELLABLE,
            }
            return TemplateResponse(
                request, "admin/campaigns/broadcast/confirm_cancel.html", context
            )
        try:
            broadcast = broadcast_move(broadcast=broadcast, action=action)
        except KeepersError as error:
            messages.error(request, error.message)
        else:
            admin_log(request, broadcast, f"{DONE[action]}.")
            messages.success(
                request,
                f"{DONE[action]}: the broadcast is {broadcast.get_status_display().lower()}.",
            )
        return HttpResponseRedirect(change_url(broadcast))

    @admin_permission("campaigns.view_broadcast", "crm.view_contact", "campaigns.send_test")
    def test_send_view(self, request: HttpRequest, pk: int):
        """Render for one contact and send it, marked [TEST], to a staff address; an A/B
        broadcast sends both subjects. Nothing is recorded against the broadcast."""
        broadcast = self._operated(request, pk)
        first = broadcast_audience(broadcast).order_by("pk").values_list("pk", flat=True).first()
        form = TestSendForm(
            request.POST or None, initial={"contact": first, "send_to": request.user.email}
        )
        error = ""
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            contact, to = data["contact"], data["send_to"]
            try:
                event = preview_event(
                    contact=contact,
                    sample=data["sample"],
                    name=data["event_name"],
                    properties=data["properties"],
                )
                tests = email_tests_send(
                    variants=test_variants(broadcast),
                    contact=contact,
                    to_email=to,
                    sender=f"user:{request.user.pk}",
                    event=event,
                    extra={"broadcast": broadcast},
                )
            except RenderError as failure:
                error = str(failure)
            except KeepersError as failure:  # a bad property, or too many test sends
                messages.error(request, failure.message)
            else:
                admin_log(request, broadcast, f"Sent a test for contact #{contact.pk} to {to}.")
                after = (
                    f" after the event “{event.name}”"
                    if event
                    else " (this contact has no such event: rendered without one)"
                    if data["sample"]
                    else ""
                )
                messages.success(
                    request,
                    f"Test sent to {to}{after}: "
                    + "; ".join(f"“{m.subject}”" for m in tests)
                    + ".",
                )
                return HttpResponseRedirect(change_url(broadcast))
        context = {
            **self._context(request, broadcast, f"Send a test of {broadcast}"),
            "form": form,
            "error": error,
        }
        return TemplateResponse(request, "admin/campaigns/broadcast/test_send.html", context)

    @admin_permission("campaigns.view_broadcast")
    def progress_view(self, request: HttpRequest, pk: int):
        broadcast = get_object_or_404(Broadcast, pk=pk)
        stats = broadcast_stats(broadcast)
        return JsonResponse(
            {
                "status": broadcast.status,
                **stats,
                "display": progress_display(broadcast, stats),
                "empty": empty_text(broadcast),
            },
            encoder=DjangoJSONEncoder,
        )


def change_url(broadcast: Broadcast) -> str:
    return reverse("admin:campaigns_broadcast_change", args=[broadcast.pk])


def recipients_url(broadcast: Broadcast) -> str:
    return (
        reverse("admin:campaigns_broadcastrecipient_changelist")
        + f"?broadcast__id__exact={broadcast.pk}"
    )


def preview_context(broadcast: Broadcast) -> dict:
    preview = broadcast_preview(broadcast)
    for contact in preview["sample"]:
        contact["url"] = reverse("admin:crm_contact_change", args=[contact["id"]])
    return {
        "count": preview["count"],
        "count_text": _n(preview["count"]),
        "sample": preview["sample"],
        "waves": [{"at": _utc(w["at"]), "contacts": _n(w["contacts"])} for w in preview["waves"]],
        "starts_at": _utc(preview["starts_at"]),
    }


def test_variants(broadcast: Broadcast) -> list[tuple[str, EmailTemplate, str]]:
    """What a test of the broadcast renders, as its sends do: its template, or with an A/B
    subject test one per side, labelled for the test's subject line."""
    if broadcast.ab_percent and broadcast.subject_b:
        return [
            (label, template_for_variant(broadcast, variant), variant)
            for label, variant in (("A: ", "a"), ("B: ", "b"))
        ]
    return [("", template_for_variant(broadcast, ""), "")]


# ------------------------------------------------------------------------------------------
# Recipients
# ------------------------------------------------------------------------------------------
class VariantFilter(admin.SimpleListFilter):
    """Fixed choices: the default filter would read every recipient row for its values."""

    title = "A/B variant"
    parameter_name = "variant"

    def lookups(self, request, model_admin):
        return [("a", "A"), ("b", "B"), ("none", "Not in the test")]

    def queryset(self, request, queryset):
        if self.value() in ("a", "b"):
            return queryset.filter(variant=self.value())
        if self.value() == "none":
            return queryset.filter(variant="")
        return queryset


@admin.register(BroadcastRecipient)
class BroadcastRecipientAdmin(admin.ModelAdmin):
    """One row per frozen recipient: what happened to them and why. Read-only: recipients
    change only through the broadcast's services."""

    list_display = [
        "contact",
        "broadcast",
        "status",
        "variant",
        "send_at",
        "reason",
        "message_link",
    ]
    list_filter = ["status", VariantFilter, "broadcast"]
    search_fields = ["contact__email", "reason"]
    list_select_related = ["contact", "broadcast", "message"]
    show_full_result_count = False

    def get_queryset(self, request):
        # the message's bodies are the bulk of its row and the list shows only its status
        return super().get_queryset(request).defer("message__html", "message__text")

    @admin.display(description="message")
    def message_link(self, obj: BroadcastRecipient) -> str:
        if obj.message_id is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:campaigns_message_change", args=[obj.message_id]),
            obj.message.get_status_display(),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
