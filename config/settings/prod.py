"""Production: secrets and hosts come from the environment with no default; the process
refuses to start without SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL."""

import dj_database_url

from .base import *  # noqa: F403
from .env import env_bool, env_int, env_list, env_required, env_str

DEBUG = False
SECRET_KEY = env_required("SECRET_KEY")
env_required("ALLOWED_HOSTS")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
DATABASES = {
    "default": dj_database_url.parse(
        env_required("DATABASE_URL"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
# Rate limits and API throttles must be shared by every process: Redis, not per-process memory.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", "redis://127.0.0.1:6379/1"),
    }
}
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "anymail.backends.amazon_ses.EmailBackend")
# Tracking webhooks are refused until ANYMAIL_WEBHOOK_SECRET is set (never a default here).
ANYMAIL.pop("WEBHOOK_SECRET", None)  # noqa: F405
if env_str("ANYMAIL_WEBHOOK_SECRET", ""):
    ANYMAIL["WEBHOOK_SECRET"] = env_str("ANYMAIL_WEBHOOK_SECRET")  # noqa: F405

# HTTPS everywhere; a proxy in front terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
KEEPERS_CLOCK_FILE = ""  # the real clock, always
