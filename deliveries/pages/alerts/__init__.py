"""Alerts in the admin: the rules (rules.py) and the alerts they opened, with their notifications (history.py)."""

from deliveries.pages.alerts.history import AlertAdmin
from deliveries.pages.alerts.rules import AlertRuleAdmin

__all__ = ["AlertAdmin", "AlertRuleAdmin"]
