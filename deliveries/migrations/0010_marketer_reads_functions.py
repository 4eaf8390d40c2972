"""The Marketer group reads functions and runs their tests (fetch recorded only): view_function and
view_functionversion, given once to a group made before functions existed (deliveries/pages/roles.py). A group
an administrator deleted is not made again here."""

from django.db import migrations

from deliveries.pages.roles import FUNCTION_PERMISSIONS, MARKETER, grant, make_permissions


def grant_function_permissions(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=MARKETER).first()
    if group is None:
        return
    make_permissions(apps)
    grant(apps, group, FUNCTION_PERMISSIONS)


def revoke_function_permissions(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=MARKETER).first()
    if group is None:
        return
    Permission = apps.get_model("auth", "Permission")
    for app_label, codename in FUNCTION_PERMISSIONS:
        group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0009_attempt_logs_and_filtered"),
        ("integrations", "0009_functions"),
    ]

    operations = [migrations.RunPython(grant_function_permissions, revoke_function_permissions)]
