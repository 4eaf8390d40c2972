"""The "Marketer" group: sees everything, uses the Event Tester and Replay, retries deliveries and edits a
destination's mapping and filter, but never sees or changes credentials (no integrations.manage_credentials)."""

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


def ensure_marketer_group(apps: Any = global_apps) -> bool:
    """Create the group with its permissions unless it exists (an existing group, perhaps changed on purpose,
    is left as it is); returns whether it was created. `apps` is a migration's historical registry or the real one."""
    Group = apps.get_model("auth", "Group")
    if Group.objects.filter(name=MARKETER).exists():
        return False
    # Permissions are made after all migrations (post_migrate); the group needs them now, on a fresh database too.
    for app_config in apps.get_app_configs():
        had_models = getattr(app_config, "models_module", None)
        app_config.models_module = had_models or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = had_models
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.create(name=MARKETER)
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return True


def recreate_after_flush(sender: Any, **kwargs: Any) -> None:
    """post_migrate also follows a database flush (tests that use transactions): bring the group back."""
    ensure_marketer_group(kwargs.get("apps") or global_apps)
