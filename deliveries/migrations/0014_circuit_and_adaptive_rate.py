"""Adaptive rate limits (the rate a destination runs at now, why and since when, on its RateBucket) and the
circuit breaker (Circuit: failures in a row and since when, open since, why, the next probe)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0013_retention'),
        ('integrations', '0010_rate_mode'),
    ]

    operations = [
        migrations.AddField(
            model_name='ratebucket',
            name='cut_at',
            field=models.DateTimeField(blank=True, help_text='The last cut: no second one right after it', null=True),
        ),
        migrations.AddField(
            model_name='ratebucket',
            name='rate',
            field=models.FloatField(blank=True, help_text='Requests per second now; blank: the full limit', null=True),
        ),
        migrations.AddField(
            model_name='ratebucket',
            name='rate_changed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='ratebucket',
            name='rate_reason',
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name='ratebucket',
            name='slowed_at',
            field=models.DateTimeField(blank=True, help_text="The vendor's last 429, 5xx or timeout", null=True),
        ),
        migrations.CreateModel(
            name='Circuit',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('failures', models.PositiveIntegerField(default=0, help_text='Retryable failures in a row, across workers')),
                ('failing_since', models.DateTimeField(blank=True, help_text='The first failure of that run', null=True)),
                ('opened_at', models.DateTimeField(blank=True, help_text='Open since; blank: closed', null=True)),
                ('reason', models.TextField(blank=True, help_text='Why it opened, or how it was closed')),
                ('changed_at', models.DateTimeField(blank=True, null=True)),
                ('next_probe_at', models.DateTimeField(blank=True, null=True)),
                ('probe_interval', models.FloatField(default=0, help_text='Seconds between probes now (doubles up to a cap)')),
                ('openings', models.JSONField(blank=True, default=list)),
                ('destination', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='circuit', to='integrations.destination')),
            ],
            options={
                'indexes': [models.Index(fields=['opened_at', 'next_probe_at'], name='circuit_probe_due')],
            },
        ),
    ]
