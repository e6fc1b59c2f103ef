"""Staff login is locked after repeated failures (django-axes, config/settings/base.py):
the right password no longer opens the admin from that address until the cool-off passes
or an operator resets it."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def _login(client, password: str, ip: str = "203.0.113.7"):
    return client.post(LOGIN, {"username": "boss", "password": password}, REMOTE_ADDR=ip)


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", "boss@example.com", "right-pw")


def test_thirty_wrong_passwords_lock_the_right_one_out(client, boss, settings):
    for _ in range(30):
        assert _login(client, "wrong").status_code in (200, 429)

    answer = _login(client, "right-pw")

    assert answer.status_code == 429
    page = answer.content.decode()
    assert "Too many failed logins" in page
    assert "axes_reset_username" in page
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still the login page


def test_the_lock_starts_at_the_limit_and_a_success_before_it_resets(client, boss, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "wrong").status_code == 200
    assert _login(client, "right-pw").status_code == 302  # logged in: the count resets
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "wrong").status_code == 200
    assert _login(client, "wrong").status_code == 429  # the limit-th failure locks


def test_the_lock_is_per_username_and_address_and_an_operator_can_lift_it(client, boss, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "wrong")
    assert _login(client, "right-pw").status_code == 429
    assert _login(client, "right-pw", ip="198.51.100.9").status_code == 302  # another address
    client.logout()

    call_command("axes_reset_username", "boss", verbosity=0)

    assert _login(client, "right-pw").status_code == 302
