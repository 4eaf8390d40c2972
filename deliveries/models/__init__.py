"""deliveries' models, one module per idea; imported here so that `from deliveries.models import X` works."""

from deliveries.models.alerts import Alert, AlertNotification, AlertRule
from deliveries.models.engine import Circuit, RateBucket, Slot, WorkerHeartbeat
from deliveries.models.events import Attempt, Delivery, Event
from deliveries.models.replays import Replay
from deliveries.models.retention import RetentionPolicy
from deliveries.models.rollups import DeliveryHourRollup, DeliveryRollup, RollupCursor, SchemaRollup

__all__ = [
    "Alert",
    "AlertNotification",
    "AlertRule",
    "Attempt",
    "Circuit",
    "Delivery",
    "DeliveryHourRollup",
    "DeliveryRollup",
    "Event",
    "RateBucket",
    "Replay",
    "RetentionPolicy",
    "RollupCursor",
    "SchemaRollup",
    "Slot",
    "WorkerHeartbeat",
]
