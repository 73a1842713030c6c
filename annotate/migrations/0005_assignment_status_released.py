"""Leases ended by a membership change or a deactivation get a status of their own, "released", so that
nothing is judged or skipped from them once the member is back. Leases ended that way before this migration
stay "expired": nothing tells them apart from leases that ran out."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0004_export_job_lifecycle'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='assignment',
            name='assignment_status_valid',
        ),
        migrations.AlterField(
            model_name='assignment',
            name='status',
            field=models.CharField(choices=[('active', 'Active'), ('submitted', 'Submitted'), ('skipped', 'Skipped'), ('expired', 'Expired'), ('released', 'Released')], default='active', max_length=10),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['active', 'submitted', 'skipped', 'expired', 'released'])), name='assignment_status_valid'),
        ),
    ]
