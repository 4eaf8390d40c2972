from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Events and deliveries"

    def ready(self) -> None:
        from deliveries.engine.slots import kick_resumed
        from deliveries.pages.roles import recreate_after_flush
        from integrations.signals import destinations_resumed

        post_migrate.connect(recreate_after_flush, sender=self, dispatch_uid="deliveries.marketer_group")
        destinations_resumed.connect(kick_resumed, dispatch_uid="deliveries.kick_resumed")
