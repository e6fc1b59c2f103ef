"""The staff roles Keepers ships, as auth groups: marketer, analyst, support, admin
(docs/operations.md, "Roles", says what each may do).

Each app grants its own permissions to the roles (`role_grant`, published in
crm/extend.py; campaigns and loyalty call it from their AppConfig.ready), so crm never
names a model of the apps above it. A grant is "app_label.codename", or a pattern with
`*` ("campaigns.view_*": every view permission of the app; "*": every permission).

`roles_sync()` makes each group hold exactly its role's permissions. It is idempotent and
runs after every `migrate` (post_migrate, once the last app's permissions exist — a data
migration could not: permissions are created after the migrations, and one written today
would not know the models of tomorrow), and as `manage.py roles`. A group with a role's
name is the role: changes made to it by hand are put back on the next migrate; a variant
is a group of another name.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import transaction


@dataclass(frozen=True)
class Role:
    name: str
    summary: str


ROLES = {
    role.name: role
    for role in (
        Role("marketer", "campaigns, templates, segments and broadcasts; sends tests, enrolls"),
        Role("analyst", "reads everything, the metrics dashboard and its CSVs; changes nothing"),
        Role("support", "contacts (view, change, export), consent, orders, loyalty adjustments"),
        Role("admin", "every permission"),
    )
}

_GRANTS: dict[str, set[str]] = {name: set() for name in ROLES}


def role_grant(role: str, *perms: str) -> None:
    """Give `role` these permissions ("app_label.codename" or a `*` pattern)."""
    if role not in ROLES:
        raise ValueError(f"No role {role!r}; the roles are {', '.join(ROLES)}.")
    _GRANTS[role].update(perms)


# crm's own part of each role
role_grant("admin", "*")
role_grant("analyst", "crm.view_*")
role_grant(
    "marketer",
    "crm.view_contact",
    "crm.view_tag",
    "crm.view_product",
    "crm.view_metrics",
    "crm.view_segmentmembership",
    "crm.view_segment",
    "crm.add_segment",
    "crm.change_segment",
    "crm.delete_segment",
    "crm.view_topic",
    "crm.add_topic",
    "crm.change_topic",
    "crm.download_addresses",  # segment members for an ad audience, a list for a mailing
)
role_grant(
    "support",
    "crm.view_contact",
    "crm.change_contact",
    "crm.export_contact",
    "crm.download_addresses",
    "crm.view_tag",
    "crm.view_consentrecord",
    "crm.view_order",
    "crm.view_event",
)


def role_permissions(role: str, available: list[Permission]) -> list[Permission]:
    patterns = _GRANTS[role]
    return [
        perm
        for perm in available
        if any(fnmatchcase(f"{perm.content_type.app_label}.{perm.codename}", p) for p in patterns)
    ]


@transaction.atomic
def roles_sync() -> dict[str, int]:
    """Create or update the role groups; returns each role's number of permissions."""
    available = list(Permission.objects.select_related("content_type"))
    counts = {}
    for name in ROLES:
        group, _ = Group.objects.get_or_create(name=name)
        perms = role_permissions(name, available)
        group.permissions.set(perms)
        counts[name] = len(perms)
    return counts


def roles_sync_after_migrate(sender, app_config=None, **kwargs) -> None:
    """post_migrate receiver: once, after the last installed app (its permissions, like
    every earlier app's, exist by then)."""
    if app_config is list(apps.get_app_configs())[-1]:
        roles_sync()
