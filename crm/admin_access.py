"""Who may open a custom admin view, declared on the view, checked here and nowhere else.

Django's admin guards the pages it generates (changelist, add, change, delete, history)
with the model's permissions, but a view a ModelAdmin adds in `get_urls` is guarded only
by `admin_site.admin_view`, which asks for `is_staff` and nothing more. Every such view
(and every custom action that writes) says what it needs with `@admin_permission`:

    @admin_permission("campaigns.enroll_segment")
    def enroll_segment_view(self, request, pk): ...

    @admin_permission("crm.view_segment", "crm.view_contact")   # a read
    @admin_permission("crm.view_clvmodelfit", post=["crm.add_clvmodelfit"])

`perms` are needed for any method; `post` adds what a POST needs on top (a POST that
writes needs the model's change permission or a custom one from its Meta.permissions).
Without them the answer is 403. The declared names stay on the view
(`view.admin_permissions`, copied through `admin_view`'s wrapper), so
tests/test_admin_crawl.py checks every custom view declares them and answers as they say.

`admin_log(request, obj, message)` records what a custom view or action changed in the
admin's history (django.contrib.admin.models.LogEntry), one door for all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest


@dataclass(frozen=True)
class AdminPermissions:
    any_method: tuple[str, ...]
    post: tuple[str, ...] = ()

    def needed(self, method: str) -> tuple[str, ...]:
        return self.any_method + (self.post if method == "POST" else ())


def admin_require(request: HttpRequest, *perms: str) -> None:
    """403 unless the user holds every one of `perms` (for actions, which have no URL)."""
    if not request.user.has_perms(perms):
        raise PermissionDenied


def admin_permission(*perms: str, post: Iterable[str] = ()) -> Callable:
    """Declare and enforce the permissions of a custom admin view (a function taking the
    request first, or a ModelAdmin/AdminSite method taking it second)."""
    declared = AdminPermissions(tuple(perms), tuple(post))
    if not declared.any_method and not declared.post:
        raise ValueError("A custom admin view declares at least one permission.")

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(*args, **kwargs):
            request = args[0] if isinstance(args[0], HttpRequest) else args[1]
            admin_require(request, *declared.needed(request.method))
            return view(*args, **kwargs)

        checked.admin_permissions = declared
        return checked

    return decorate


def admin_log(
    request: HttpRequest, obj: models.Model, message: str, *, action_flag: int = CHANGE
) -> LogEntry:
    """One line in the object's admin history: who did what from a custom view or action."""
    return LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[obj],
        action_flag=action_flag,
        change_message=message,
        single_object=True,
    )


def admin_log_many(
    request: HttpRequest,
    objs: Iterable[models.Model],
    message: str,
    *,
    action_flag: int = CHANGE,
) -> None:
    """The same line on each of `objs` (a bulk action), in one INSERT."""
    objs = list(objs)
    if objs:
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=objs, action_flag=action_flag, change_message=message
        )


__all__ = [
    "AdminPermissions",
    "admin_log",
    "admin_log_many",
    "admin_permission",
    "admin_require",
]
