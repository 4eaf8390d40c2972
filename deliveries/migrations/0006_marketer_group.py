"""The "Marketer" group (see deliveries/pages/roles.py for what it may do)."""

from django.db import migrations

from deliveries.pages.roles import MARKETER, ensure_marketer_group


def create_marketer_group(apps, schema_editor):
    ensure_marketer_group(apps)


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
