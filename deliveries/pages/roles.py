"""The "Marketer" group: sees everything, uses the Event Tester and Replay, retries deliveries and edits a
destination's mapping and filter, but never sees or changes credentials (no integrations.manage_credentials).
It reads functions and runs their tests with fetch recorded, but never changes one: a function's code runs with
the secrets of the destinations and sources using it."""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

MARKETER = "Marketer"
PERMISSIONS = [
    ("integrations", "view_source"),
    ("integrations", "view_destination"),
    ("integrations", "change_destination"),  # the admin lets a marketer change only mapping and filter
    ("deliveries", "view_event"),
    ("deliveries", "view_delivery"),
    ("deliveries", "change_delivery"),  # Retry now / "Retry these"
    ("deliveries", "view_attempt"),
    ("deliveries", "use_event_tester"),
    ("deliveries", "view_replay"),
    ("deliveries", "add_replay"),
]
# Given by migration 0010 to a Marketer group made before functions existed (their models are not in the
# registry migration 0006 makes the group with).
FUNCTION_PERMISSIONS = [
    ("integrations", "view_function"),
    ("integrations", "view_functionversion"),
]
# Given by migration 0013 likewise: the alert rules and the alerts they opened, read only.
ALERT_PERMISSIONS = [
    ("deliveries", "view_alertrule"),
    ("deliveries", "view_alert"),
    ("deliveries", "view_alertnotification"),
]


def ensure_marketer_group(apps: Any = global_apps) -> bool:
    """Create the group with its permissions unless it exists (an existing group, perhaps changed on purpose,
    is left as it is); returns whether it was created. `apps` is a migration's historical registry or the real one."""
    Group = apps.get_model("auth", "Group")
    if Group.objects.filter(name=MARKETER).exists():
        return False
    make_permissions(apps)
    group = Group.objects.create(name=MARKETER)
    try:
        apps.get_model("integrations", "Function")
        functions = FUNCTION_PERMISSIONS
    except LookupError:
        functions = []  # migration 0006's registry: 0010 gives them
    try:
        apps.get_model("deliveries", "AlertRule")
        alerts = ALERT_PERMISSIONS
    except LookupError:
        alerts = []  # 0013 gives them
    grant(apps, group, PERMISSIONS + functions + alerts)
    return True


def make_permissions(apps: Any) -> None:
    """Permissions are made after all migrations (post_migrate); the group needs them now, on a fresh database too."""
    for app_config in apps.get_app_configs():
        had_models = getattr(app_config, "models_module", None)
        app_config.models_module = had_models or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = had_models


def grant(apps: Any, group: Any, permissions: list[tuple[str, str]]) -> None:
    Permission = apps.get_model("auth", "Permission")
    for app_label, codename in permissions:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def recreate_after_flush(sender: Any, **kwargs: Any) -> None:
    """post_migrate also follows a database flush (tests that use transactions): bring the group back."""
    ensure_marketer_group(kwargs.get("apps") or global_apps)
