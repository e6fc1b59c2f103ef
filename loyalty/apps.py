from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which are not loaded
        # yet when Django imports this file.
        from django.db.models.signals import post_delete, post_save

        from campaigns.extend import subscribe_hook_register
        from crm.extend import (
            demo_installer_register,
            metrics_source_register,
            privacy_register,
            role_grant,
        )
        from loyalty import receivers, rules, steps, triggers
        from loyalty.demo import loyalty_demo_install
        from loyalty.models import BonusRule
        from loyalty.privacy import loyalty_erase, loyalty_export
        from loyalty.public import referral_from_cookie
        from loyalty.selectors import referrals_made
        from loyalty.services.points import bonus_rules_changed

        rules.register()  # segment conditions and campaign condition kinds
        steps.register()  # the campaign grant step
        triggers.register()  # expiring credit / points, tier changed
        receivers.subscribe()  # orders placed and refunded, events ingested (crm's bus)
        metrics_source_register("referrals", referrals_made)  # the referral rate
        subscribe_hook_register(referral_from_cookie)  # a friend who signs up elsewhere
        demo_installer_register(loyalty_demo_install)  # manage.py demo: the programme
        # a contact's export and erasure: ledger, tier, coupons, referrals (both sides)
        privacy_register("loyalty", exporter=loyalty_export, eraser=loyalty_erase)
        # the staff roles (crm.services.roles): analysts read, support adjusts balances
        role_grant("analyst", "loyalty.view_*")
        # marketers see what their campaigns' grant steps give (coupons, credit), and change
        # no balance
        role_grant("marketer", "loyalty.view_*")
        role_grant("support", "loyalty.view_ledgerentry", "loyalty.add_ledgerentry")
        # the cached bonus rule names (read on the ingestion path) follow admin edits
        post_save.connect(bonus_rules_changed, sender=BonusRule)
        post_delete.connect(bonus_rules_changed, sender=BonusRule)
