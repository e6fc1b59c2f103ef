from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which are not loaded
        # yet when Django imports this file.
        from django.db.models.signals import post_migrate

        from crm import checks  # noqa: F401  (deploy checks for secrets)
        from crm.api import schema  # noqa: F401  (registers the OpenAPI extensions)
        from crm.services.metrics import metrics_cache_connect
        from crm.services.roles import roles_sync_after_migrate

        metrics_cache_connect()  # cached metrics are dropped when orders change
        # the staff roles (groups) follow the code's permissions after every migrate
        post_migrate.connect(roles_sync_after_migrate, dispatch_uid="keepers-roles")


class KeepersAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with crm.admin_site.KeepersAdminSite as `admin.site`:
    INSTALLED_APPS names this instead of "django.contrib.admin" (Django's documented way
    to override the default admin site)."""

    # Not a candidate when Django looks for the "crm" app's config: that stays CrmConfig
    # (AdminConfig declares default = True, which this class would otherwise inherit).
    default = False
    default_site = "crm.admin_site.KeepersAdminSite"
