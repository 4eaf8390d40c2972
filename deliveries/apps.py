from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Events and deliveries"

    def ready(self) -> None:
        from deliveries.engine.alerts.defaults import on_destination_saved
        from deliveries.engine.slots import kick_resumed
        from deliveries.pages.roles import recreate_after_flush
        from integrations.models import Destination
        from integrations.signals import destinations_resumed

        post_migrate.connect(recreate_after_flush, sender=self, dispatch_uid="deliveries.marketer_group")
        destinations_resumed.connect(kick_resumed, dispatch_uid="deliveries.kick_resumed")
        post_save.connect(on_destination_saved, sender=Destination, dispatch_uid="deliveries.default_alert_rules")
