"""Tests. PostgreSQL when DATABASE_URL is set (CI always sets it), otherwise SQLite, on
which the tests marked `postgres` skip. Mail goes to Anymail's test backend."""

from .base import *  # noqa: F403
from .base import VAR_DIR

SECRET_KEY = "test-secret-key-not-for-production"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
# django-axes' backend (base.py) needs the request: the test client's login() has none and
# is refused, so tests sign in with force_login() or POST the admin's login form.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
VAR_DIR.mkdir(parents=True, exist_ok=True)
