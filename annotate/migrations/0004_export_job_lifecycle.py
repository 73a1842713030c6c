"""Exports become jobs of palate.jobs (issue 18): attempts, heartbeat, worker and the shared status check.
Rows keep their data: an export that was claimed (running or ended) counts one attempt."""

from django.conf import settings
from django.db import migrations, models


def _existing_exports_fill(apps, schema_editor):
    apps.get_model("annotate", "Export").objects.exclude(status="queued").update(attempts=1)


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0003_job_lifecycle'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='export',
            name='export_status_valid',
        ),
        migrations.AddField(
            model_name='export',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='Claims so far (the running one included).'),
        ),
        migrations.AddField(
            model_name='export',
            name='enqueued_at',
            field=models.DateTimeField(blank=True, help_text='When its task was last sent.', null=True),
        ),
        migrations.AddField(
            model_name='export',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='export',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(default=3),
        ),
        migrations.AddField(
            model_name='export',
            name='queued_at',
            field=models.DateTimeField(blank=True, help_text='When it was last queued again (empty: queued since it was created).', null=True),
        ),
        migrations.AddField(
            model_name='export',
            name='worker',
            field=models.CharField(blank=True, help_text='The worker of the latest attempt: node, process id and machine.', max_length=200),
        ),
        migrations.AlterField(
            model_name='export',
            name='progress',
            field=models.FloatField(default=0.0, help_text='0..1, written while it runs.'),
        ),
        migrations.AlterField(
            model_name='export',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10),
        ),
        migrations.AddIndex(
            model_name='export',
            index=models.Index(fields=['status', 'heartbeat_at'], name='export_status_heartbeat'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='export_status_valid'),
        ),
        migrations.RunPython(_existing_exports_fill, migrations.RunPython.noop),
    ]
