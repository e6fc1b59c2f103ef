"""A marketer edits a template's versions in other languages (the inline's add, change and
delete), not only the template: without it the inline showed no "Add another"."""

import pytest
from django.contrib.auth.models import Group

from crm.services.roles import roles_sync

pytestmark = pytest.mark.django_db


def test_the_marketer_role_may_edit_language_versions():
    roles_sync()
    codenames = set(
        Group.objects.get(name="marketer").permissions.values_list("codename", flat=True)
    )
    for action in ("view", "add", "change", "delete"):
        assert f"{action}_emailtemplatevariant" in codenames
