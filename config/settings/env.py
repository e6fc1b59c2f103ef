"""Small typed readers for settings that come from the environment."""

import ipaddress
import os
import re
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_required(name: str) -> str:
    """A setting that production must be given: no default, a clear refusal without it."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Production settings refuse to start without it; "
            "see docs/operations.md."
        )
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_decimal(name: str, default: str) -> Decimal:
    return Decimal(os.environ.get(name) or default)


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> list[str]:
    """A comma-separated list of IP addresses and CIDR networks (`10.0.0.0/8`, `::1`);
    refuses to start on an entry that is neither, naming it."""
    entries = env_list(name)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {entry!r} is not an IP address or a CIDR network."
            ) from None
    return entries


def env_rate(name: str, default: str) -> str:
    """A rate limit, "N/second", "N/minute", "N/hour", "N/day" or "off" (crm.limits reads
    it); refuses to start on anything else."""
    value = env_str(name, default).strip().lower()
    if not re.fullmatch(r"off|\d+/(second|minute|hour|day)", value):
        raise ImproperlyConfigured(
            f"{name}: {value!r} is not a rate; write N/second, N/minute, N/hour, N/day or off."
        )
    return value
