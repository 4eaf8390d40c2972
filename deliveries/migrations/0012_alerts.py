"""Alerts: rules per destination, the alerts they open and their notifications; the default rules for every
destination that exists already, and the Marketer group reads them (deliveries/pages/roles.py)."""

import django.db.models.deletion
import integrations.crypto
from django.db import migrations, models

from deliveries.engine.alerts.defaults import create_default_rules
from deliveries.pages.roles import ALERT_PERMISSIONS, MARKETER, grant, make_permissions


def create_defaults(apps, schema_editor):
    AlertRule = apps.get_model("deliveries", "AlertRule")
    ids = list(apps.get_model("integrations", "Destination").objects.values_list("id", flat=True))
    for start in range(0, len(ids), 500):
        create_default_rules(AlertRule, ids[start : start + 500])


def grant_alert_permissions(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=MARKETER).first()
    if group is None:
        return
    make_permissions(apps)
    grant(apps, group, ALERT_PERMISSIONS)


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0011_hourly_rollups'),
        ('integrations', '0009_functions'),
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.CreateModel(
            name='AlertRule',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('success_rate', 'Success rate below a threshold'), ('no_delivery', 'No delivery while events arrive'), ('misconfigured', 'Destination misconfigured (credentials refused)'), ('backlog', 'Backlog older than a limit')], max_length=20)),
                ('enabled', models.BooleanField(default=True)),
                ('threshold', models.FloatField(blank=True, help_text='Success rate: alert below this percentage (e.g. 90)', null=True)),
                ('window_minutes', models.PositiveIntegerField(default=15, help_text='Success rate: over this many minutes. No delivery: for this many minutes. Backlog: the oldest waiting delivery older than this.')),
                ('min_outcomes', models.PositiveIntegerField(default=20, help_text='Success rate: judge only with at least this many delivered + failed in the window')),
                ('channels', models.JSONField(blank=True, default=list, help_text='Where to send: "email", "webhook"')),
                ('email_recipients', models.TextField(blank=True, help_text='Comma-separated addresses; blank: CDPHUB_ALERT_EMAILS')),
                ('webhook_url', models.URLField(blank=True, help_text='Blank: CDPHUB_ALERT_WEBHOOK_URL', max_length=500)),
                ('webhook_secret', integrations.crypto.EncryptedJSONField(blank=True, default=dict, help_text="This rule's webhook signing secret, stored encrypted (blank: CDPHUB_ALERT_WEBHOOK_SECRET)")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('destination', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alert_rules', to='integrations.destination')),
            ],
            options={
                'ordering': ['destination__name', 'kind', 'id'],
            },
        ),
        migrations.CreateModel(
            name='Alert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('success_rate', 'Success rate below a threshold'), ('no_delivery', 'No delivery while events arrive'), ('misconfigured', 'Destination misconfigured (credentials refused)'), ('backlog', 'Backlog older than a limit')], max_length=20)),
                ('opened_at', models.DateTimeField()),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('measured', models.JSONField(blank=True, default=dict, help_text='What the rule measured when it opened')),
                ('message', models.TextField(help_text='What was wrong, in words')),
                ('resolution', models.TextField(blank=True, help_text='Why it was resolved, in words')),
                ('is_test', models.BooleanField(default=False)),
                ('destination', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='integrations.destination')),
                ('rule', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='deliveries.alertrule')),
            ],
            options={
                'ordering': ['-opened_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='AlertNotification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event', models.CharField(choices=[('opened', 'Opened'), ('resolved', 'Resolved'), ('test', 'Test')], max_length=10)),
                ('channel', models.CharField(choices=[('email', 'Email'), ('webhook', 'Webhook')], max_length=10)),
                ('target', models.TextField(help_text="The recipients, or the webhook's URL")),
                ('status', models.CharField(choices=[('pending', 'to send'), ('sending', 'Sending'), ('sent', 'Sent'), ('failed', 'failed (gave up)')], default='pending', max_length=10)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('next_attempt_at', models.DateTimeField()),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('error', models.TextField(blank=True, help_text='Why the last try failed')),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField()),
                ('alert', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='deliveries.alert')),
            ],
            options={
                'ordering': ['alert', 'created_at', 'id'],
                'indexes': [models.Index(fields=['status', 'next_attempt_at'], name='alert_notification_due')],
            },
        ),
        migrations.AddIndex(
            model_name='alertrule',
            index=models.Index(fields=['enabled', 'destination'], name='alert_rule_enabled'),
        ),
        migrations.AddIndex(
            model_name='alert',
            index=models.Index(fields=['destination', 'resolved_at'], name='alert_destination_open'),
        ),
        migrations.AddIndex(
            model_name='alert',
            index=models.Index(fields=['resolved_at', 'opened_at'], name='alert_open_opened'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.UniqueConstraint(condition=models.Q(('resolved_at__isnull', True)), fields=('rule',), name='alert_one_open_per_rule'),
        ),
        migrations.RunPython(create_defaults, migrations.RunPython.noop),
        migrations.RunPython(grant_alert_permissions, migrations.RunPython.noop),
    ]
