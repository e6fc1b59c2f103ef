from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty"

    def ready(self) -> None:
        from crm import bus
        from loyalty import rules, steps, triggers

        rules.register()  # segment conditions and campaign condition kinds
        steps.register()  # the campaign grant step
        triggers.register()  # expiring credit / points, tier changed
        bus.subscribe(bus.OrderPlaced, _order_placed)
        bus.subscribe(bus.OrderRefunded, _order_refunded)


def _order_placed(message) -> None:
    from loyalty.tasks import order_placed_task

    order_placed_task.delay(message.order_id)


def _order_refunded(message) -> None:
    from loyalty.tasks import order_refunded_task

    order_refunded_task.delay(message.refund_id)
