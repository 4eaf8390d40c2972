"""The "Marketer" group: sees everything, uses the Event Tester and Replay, retries deliveries and edits a
destination's mapping and filter, but never sees or changes credentials (no integrations.manage_credentials)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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


def create_marketer_group(apps, schema_editor):
    # Permissions are made after all migrations (post_migrate); this one needs them now, on a fresh database too.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=MARKETER)
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_marketer_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=MARKETER).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("integrations", "0006_admin_pages"),
        ("deliveries", "0005_admin_pages"),
    ]

    operations = [migrations.RunPython(create_marketer_group, remove_marketer_group)]
