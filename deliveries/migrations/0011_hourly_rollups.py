"""Hourly delivery rollups beside the minute ones (Event Delivery and the dashboard read them beyond a day), filled
from the minute rollups there are: one INSERT … SELECT grouped by the UTC hour, in the database."""

import django.db.models.deletion
from django.db import migrations, models

# The hour of a stored minute, in UTC: SQLite keeps 'YYYY-MM-DD HH:MM:SS' text (UTC, as Django writes it), and
# Django sets a PostgreSQL connection's time zone to UTC.
HOUR_OF_MINUTE = {"sqlite": "strftime('%Y-%m-%d %H:00:00', minute)", "postgresql": "date_trunc('hour', minute)"}


def hours_from_minutes(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor not in HOUR_OF_MINUTE:
        raise NotImplementedError(f"no hour expression for {connection.vendor}")
    hour = HOUR_OF_MINUTE[connection.vendor]
    columns = "destination_id, hour, status, latency_bucket, count, latency_ms_sum"
    schema_editor.execute(
        f"INSERT INTO deliveries_deliveryhourrollup ({columns}) "
        f"SELECT destination_id, {hour}, status, latency_bucket, SUM(count), SUM(latency_ms_sum) "
        f"FROM deliveries_deliveryrollup GROUP BY destination_id, {hour}, status, latency_bucket",
        params=None,  # no placeholders: strftime's % signs are taken as they are
    )


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0010_marketer_reads_functions'),
        ('integrations', '0009_functions'),
    ]

    operations = [
        migrations.CreateModel(
            name='DeliveryHourRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('hour', models.DateTimeField()),
                ('status', models.CharField(max_length=16)),
                ('latency_bucket', models.SmallIntegerField(default=-1, help_text='Index into LATENCY_BUCKETS; -1 for failures')),
                ('count', models.PositiveIntegerField(default=0)),
                ('latency_ms_sum', models.BigIntegerField(default=0)),
                ('destination', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='hour_rollups', to='integrations.destination')),
            ],
            options={
                'indexes': [models.Index(fields=['destination', 'hour', 'latency_bucket', 'status', 'count', 'latency_ms_sum'], name='delivery_hour_rollup_covering')],
                'constraints': [models.UniqueConstraint(fields=('destination', 'hour', 'status', 'latency_bucket'), name='delivery_hour_rollup_key')],
            },
        ),
        migrations.RunPython(hours_from_minutes, migrations.RunPython.noop),
    ]
