from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty"

    def ready(self) -> None:
        from campaigns.extend import subscribe_hook_register
        from crm import bus
        from crm.services.demo import demo_installer_register
        from crm.services.metrics import metrics_source_register
        from loyalty import rules, steps, triggers
        from loyalty.demo import loyalty_demo_install
        from loyalty.public import referral_from_cookie
        from loyalty.selectors import referrals_made

        rules.register()  # segment conditions and campaign condition kinds
        steps.register()  # the campaign grant step
        triggers.register()  # expiring credit / points, tier changed
        metrics_source_register("referrals", referrals_made)  # the referral rate
        subscribe_hook_register(referral_from_cookie)  # a friend who signs up elsewhere
        demo_installer_register(loyalty_demo_install)  # manage.py demo: the programme
        bus.subscribe(bus.OrderPlaced, _order_placed)
        bus.subscribe(bus.OrderRefunded, _order_refunded)
        bus.subscribe(bus.EventIngested, _event_ingested)
        from django.db.models.signals import post_delete, post_save

        from loyalty.models import BonusRule
        from loyalty.services.points import bonus_rules_changed

        post_save.connect(bonus_rules_changed, sender=BonusRule)
        post_delete.connect(bonus_rules_changed, sender=BonusRule)


def _order_placed(message) -> None:
    from loyalty.tasks import order_placed_task

    order_placed_task.delay(message.order_id)


def _order_refunded(message) -> None:
    from loyalty.tasks import order_refunded_task

    order_refunded_task.delay(message.refund_id)


def _event_ingested(message) -> None:
    from loyalty.services.points import bonus_event_names
    from loyalty.tasks import event_bonus_task

    if message.contact_id is not None and message.name in bonus_event_names():
        event_bonus_task.delay(message.event_id, message.contact_id, message.name)
