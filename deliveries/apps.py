from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Events and deliveries"

    def ready(self) -> None:
        from deliveries.roles import recreate_after_flush

        post_migrate.connect(recreate_after_flush, sender=self, dispatch_uid="deliveries.marketer_group")
