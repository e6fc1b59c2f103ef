"""The Celery app. Periodic tasks are declared in settings (CELERY_BEAT_SCHEDULE) and
installed into django-celery-beat's database scheduler when beat starts."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("keepers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The app shared tasks use in every thread (Celery's "current app" is per thread; without
# a default, another thread, or a client app made elsewhere, would get an unconfigured one).
app.set_default()
