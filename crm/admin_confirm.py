"""The confirmation page in front of an admin action that moves money or cannot be undone
(refund, revoke, archive, switch off): the first POST from the changelist shows what
would happen to how many rows; the second, with `post=yes` (Django's own convention for
"Delete selected"), runs it. One helper and one template, so every such action asks the
same way and carries the selection (or "select all") through unchanged."""

from __future__ import annotations

from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

# A confirmation lists at most this many of the rows; the count is always the whole.
SHOWN = 20


def action_confirmed(
    request: HttpRequest,
    queryset: QuerySet,
    *,
    model_admin,
    title: str,
    question: str,
    button: str,
    affected: QuerySet | None = None,
    warning: str = "",
) -> TemplateResponse | None:
    """None when the staff member has confirmed (run the action); else the page that asks.
    `affected` is the part of the selection the action changes (the others are left as
    they are and said so)."""
    if request.POST.get("post") == "yes":
        return None
    affected = queryset if affected is None else affected
    count = affected.count()
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
        "question": question,
        "warning": warning,
        "button": button,
        "count": count,
        "ignored": queryset.count() - count,
        "shown": [str(obj) for obj in affected[:SHOWN]],
        "ids": [str(pk) for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)],
        "select_across": request.POST.get("select_across", "0"),
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        # the changelist's filters: the confirmed POST goes back to the same selection
        "query": request.GET.urlencode(),
    }
    return TemplateResponse(request, "admin/keepers/confirm_action.html", context)
