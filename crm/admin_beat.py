"""django-celery-beat's periodic task admin under the Content-Security-Policy: its form's
inline script (the crontab's plain-words help) is refused there, so the same behaviour
comes from a static file (crm/static/crm/periodic_task_form.js)."""

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask


class KeepersPeriodicTaskAdmin(PeriodicTaskAdmin):
    change_form_template = "admin/crm/periodictask_form.html"


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, KeepersPeriodicTaskAdmin)
