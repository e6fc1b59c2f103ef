"""Development and the demo: embedded defaults, so a new machine needs no server.
SQLite in var/, kombu's filesystem broker, mail written to var/outbox/."""

from .base import *  # noqa: F403
from .base import VAR_DIR
from .env import env_bool

DEBUG = env_bool("DEBUG", True)

for _folder in ("broker/processed", "broker/control", "outbox", "media"):
    (VAR_DIR / _folder).mkdir(parents=True, exist_ok=True)
