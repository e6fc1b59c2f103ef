"""The starter library in the admin: listed with previews in both languages, and "Use
this starter" makes a new block template with its Japanese version (never overwriting)."""

import pytest
from django.contrib.auth.models import Permission

from campaigns.models import EmailTemplate
from campaigns.starters import starters

pytestmark = pytest.mark.django_db

URL = "/admin/campaigns/emailtemplate/starters/"


def test_the_library_lists_every_starter_and_previews_each_in_both_languages(staff_client):
    page = staff_client.get(URL).content.decode()
    for starter in starters():
        assert starter.name in page
    assert (
        "Start from a starter"
        in staff_client.get("/admin/campaigns/emailtemplate/").content.decode()
    )

    first = starters()[0]
    for language in ("en", "ja"):
        response = staff_client.get(f"{URL}{first.key}/{language}/")
        assert response.status_code == 200
        assert "srcdoc=" in response.content.decode()
        assert "{{" not in response.context["rendered"].html
    assert staff_client.get(f"{URL}no-such-starter/en/").status_code == 404


def test_use_this_starter_makes_a_new_template_to_edit(staff_client):
    key = starters()[0].key
    response = staff_client.post(URL, {"key": key, "name": ""})
    template = EmailTemplate.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/campaigns/emailtemplate/{template.pk}/change/"
    assert template.format == "mjml" and template.variant_languages == "ja"

    again = staff_client.post(URL, {"key": key, "name": ""})
    assert again.status_code == 302 and EmailTemplate.objects.count() == 2  # "… 2"

    taken = staff_client.post(URL, {"key": key, "name": template.name}, follow=True)
    assert "exists already" in taken.content.decode() and EmailTemplate.objects.count() == 2


def test_staff_who_may_only_look_cannot_make_one(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_emailtemplate"))
    client.force_login(user)
    page = client.get(URL)
    assert page.status_code == 200 and "Use this starter" not in page.content.decode()
    assert client.post(URL, {"key": starters()[0].key}).status_code == 403
    assert not EmailTemplate.objects.exists()
