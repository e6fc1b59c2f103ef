"""The shipped staff roles (crm/services/roles.py, docs/operations.md "Roles"): groups
that migrate creates, with the documented permissions, kept so by `manage.py roles`."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def perms(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {
        f"{app}.{code}"
        for app, code in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_migrate_created_the_four_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "marketer",
        "analyst",
        "support",
        "admin",
    }


def test_the_marketer_runs_campaigns_and_segments_but_not_contacts_or_money():
    marketer = perms("marketer")
    assert {
        "campaigns.change_campaign",
        "campaigns.add_emailtemplate",
        "campaigns.change_broadcast",
        "campaigns.send_test",
        "campaigns.enroll_segment",
        "crm.change_segment",
        "crm.view_metrics",
        "loyalty.view_coupon",  # what the campaigns' grant steps give
        "loyalty.view_ledgerentry",
    } <= marketer
    assert not marketer & {
        "loyalty.change_coupon",
        "loyalty.change_tier",
        "crm.change_contact",
        "crm.export_contact",
        "crm.erase_contact",
        "loyalty.add_ledgerentry",
        "crm.change_order",
        "auth.change_user",
    }


def test_the_analyst_reads_everything_and_changes_nothing():
    analyst = perms("analyst")
    assert "crm.view_metrics" in analyst
    views = set(
        Permission.objects.filter(
            content_type__app_label__in=["crm", "campaigns", "loyalty"],
            codename__startswith="view_",
        ).values_list("codename", flat=True)
    )
    assert {p.split(".")[1] for p in analyst} == views
    assert not any(p.split(".")[1].split("_")[0] in ("add", "change", "delete") for p in analyst)


def test_support_helps_customers():
    assert perms("support") >= {
        "crm.view_contact",
        "crm.change_contact",
        "crm.export_contact",
        "crm.view_consentrecord",
        "crm.view_order",
        "loyalty.add_ledgerentry",
        "loyalty.view_ledgerentry",
    }
    assert "campaigns.change_campaign" not in perms("support")
    assert "crm.erase_contact" not in perms("support")


def test_admin_has_every_permission():
    assert perms("admin") == {
        f"{app}.{code}"
        for app, code in Permission.objects.values_list("content_type__app_label", "codename")
    }


def test_the_command_puts_a_role_back_and_is_idempotent():
    marketer = Group.objects.get(name="marketer")
    marketer.permissions.add(Permission.objects.get(codename="erase_contact"))
    marketer.permissions.remove(Permission.objects.get(codename="send_test"))
    before = perms("analyst")

    call_command("roles", verbosity=0)
    call_command("roles", verbosity=0)

    assert "campaigns.send_test" in perms("marketer")
    assert "crm.erase_contact" not in perms("marketer")
    assert perms("analyst") == before
    assert Group.objects.filter(name="marketer").count() == 1
