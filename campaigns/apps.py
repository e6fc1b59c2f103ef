from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which are not loaded
        # yet when Django imports this file.
        from campaigns import checks, receivers  # noqa: F401  (system checks; Anymail's tracking signal)
        from campaigns.playbooks import playbooks_demo_install
        from crm.extend import demo_installer_register

        demo_installer_register(playbooks_demo_install)  # manage.py demo: the playbooks
