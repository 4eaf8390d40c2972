"""The rules every destination starts with: made when a destination is created (a post_save signal, connected in
deliveries/apps.py) and, by migration 0013, for the destinations that existed before alerts."""

from __future__ import annotations

from typing import Any

# Sent where CDPHUB_ALERT_EMAILS and CDPHUB_ALERT_WEBHOOK_URL point (each rule may name its own).
DEFAULT_CHANNELS = ["email", "webhook"]
DEFAULT_RULES: list[dict[str, Any]] = [
    # 20 outcomes at least: one failure out of one is not an incident.
    {"kind": "success_rate", "threshold": 90.0, "window_minutes": 15, "min_outcomes": 20},
    {"kind": "no_delivery", "window_minutes": 60},
    {"kind": "misconfigured", "window_minutes": 0},
    {"kind": "backlog", "window_minutes": 30},
]


def default_rules(rule_model: Any, destination_id: int) -> list[Any]:
    """The default rules of a destination, unsaved; `rule_model` is AlertRule or a migration's historical one."""
    return [
        rule_model(destination_id=destination_id, channels=list(DEFAULT_CHANNELS), **fields) for fields in DEFAULT_RULES
    ]


def create_default_rules(rule_model: Any, destination_ids: list[int]) -> int:
    """Give each of these destinations the default rules unless it has rules already; returns rules made."""
    have = set(rule_model.objects.filter(destination_id__in=destination_ids).values_list("destination_id", flat=True))
    rules = [rule for d in destination_ids if d not in have for rule in default_rules(rule_model, d)]
    rule_model.objects.bulk_create(rules)
    return len(rules)


def on_destination_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """post_save of integrations.Destination: a new destination is watched from the start (not a fixture load)."""
    if created and not raw:
        from deliveries.models import AlertRule

        create_default_rules(AlertRule, [instance.pk])
