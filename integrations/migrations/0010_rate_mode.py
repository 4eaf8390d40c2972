"""A destination's rate mode: adaptive (the default: start at the limit, slow down on 429, 5xx and timeouts) or
fixed."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('integrations', '0009_functions'),
    ]

    operations = [
        migrations.AddField(
            model_name='destination',
            name='rate_mode',
            field=models.CharField(choices=[('adaptive', 'adaptive: start at the limit, slow down when the vendor struggles'), ('fixed', 'fixed: always the limit')], default='adaptive', help_text="Adaptive halves the rate on 429, 5xx and timeouts and creeps back up to the limit once the vendor is quiet; fixed always sends at the limit (a vendor's Retry-After is honoured either way).", max_length=10),
        ),
        migrations.AlterField(
            model_name='destination',
            name='rate_limit',
            field=models.PositiveIntegerField(blank=True, help_text="Most requests per rate period: the fixed limit, or the adaptive ceiling (blank: the vendor's default)", null=True),
        ),
    ]
