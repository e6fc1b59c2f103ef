from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        from crm.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from crm.services.metrics import metrics_cache_connect

        metrics_cache_connect()  # cached metrics are dropped when orders change
