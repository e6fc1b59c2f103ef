"""django-axes' admin for login lockouts, with its "clean up expired attempts" action
working: axes reads the time of the request's login attempt, which only a login request
has, so from the admin it failed with an AttributeError (a 500). The action deletes rows,
so it needs the delete permission."""

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin


class KeepersAccessAttemptAdmin(AccessAttemptAdmin):
    actions = ["cleanup_expired_attempts"]

    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request, queryset):
        request.axes_attempt_time = None  # not a login: the cool-off counts from now
        return super().cleanup_expired_attempts(request, queryset)


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, KeepersAccessAttemptAdmin)
