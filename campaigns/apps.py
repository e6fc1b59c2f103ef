from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which are not loaded
        # yet when Django imports this file.
        from campaigns import checks, receivers  # noqa: F401  (system checks; Anymail's tracking signal)
        from campaigns.playbooks import playbooks_demo_install
        from campaigns.privacy import campaigns_erase, campaigns_export, campaigns_identifiers
        from campaigns.selectors import template_options
        from crm.extend import (
            demo_installer_register,
            kind_source_register,
            privacy_register,
            role_grant,
        )

        # the options of the editors' template fields (crm/kinds.py); events, tags and the
        # rest are crm's (crm/kind_sources.py)
        kind_source_register("templates", template_options)
        demo_installer_register(playbooks_demo_install)  # manage.py demo: the playbooks
        # the staff roles (crm.services.roles; docs/operations.md "Roles")
        role_grant("analyst", "campaigns.view_*")
        role_grant(
            "marketer",
            "campaigns.view_*",
            "campaigns.*_emailtemplate",
            "campaigns.*_emailtemplatevariant",  # its versions in other languages
            "campaigns.*_campaign",
            "campaigns.*_broadcast",
            "campaigns.*_survey",
            "campaigns.change_webhookdelivery",  # retry now
            "campaigns.send_test",
            "campaigns.enroll_segment",
        )
        role_grant(  # an address that asked not to be mailed, or may be mailed again
            "support",
            "campaigns.view_suppression",
            "campaigns.add_suppression",
            "campaigns.change_suppression",
        )
        privacy_register(  # a contact's export and erasure: messages, delivery, surveys
            "campaigns",
            exporter=campaigns_export,
            eraser=campaigns_erase,
            identifiers=campaigns_identifiers,
        )
