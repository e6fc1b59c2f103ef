"""Deploy checks for secrets (`manage.py check --deploy`, run before every release): a
production that accepts unauthenticated ESP webhooks or signs with a value published in
this repository is refused, not warned about."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


def _webhook_secrets() -> list[str]:
    # Anymail takes one "user:password" or a list of them (while rotating)
    value = settings.ANYMAIL.get("WEBHOOK_SECRET") or []
    return [value] if isinstance(value, str) else list(value)


# Each secret by the environment variable that sets it, and how to read its value.
_SECRETS = {
    "SECRET_KEY": lambda: [settings.SECRET_KEY],
    "ANYMAIL_WEBHOOK_SECRET": _webhook_secrets,
    "KEEPERS_WEBHOOK_SECRET": lambda: [settings.KEEPERS_WEBHOOK_SECRET],
}


@checks.register(checks.Tags.security, deploy=True)
def webhook_secret_set(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Without it Anymail only warns, then lets anyone post a complaint or a bounce."""

    if _webhook_secrets():
        return []
    return [
        checks.Error(
            "ANYMAIL_WEBHOOK_SECRET is not set: the ESP tracking webhooks would accept "
            "forged, unauthenticated events (a complaint withdraws consent and suppresses "
            "the address).",
            hint="Set ANYMAIL_WEBHOOK_SECRET to user:password (random) and put the same "
            "credentials in each ESP's webhook URL; see docs/operations.md.",
            id="crm.E001",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def secrets_not_public(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The development and test values of secrets are in this repository: anyone can sign
    with them."""

    errors = []
    for name, read in _SECRETS.items():
        public = set(settings.KEEPERS_PUBLIC_SECRETS.get(name, ()))
        if public & {value for value in read() if value}:
            errors.append(
                checks.Error(
                    f"{name} has its public default value (it is in Keepers' source code).",
                    hint=f"Set {name} to your own long random value; see docs/operations.md.",
                    id="crm.E002",
                )
            )
    return errors
