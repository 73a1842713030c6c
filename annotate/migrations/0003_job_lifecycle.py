"""Import jobs become jobs of palate.jobs (issue 18): attempts, heartbeat, worker, progress and an error
summary. Rows keep their data: a job that ran counts one attempt, progress comes from the bytes read (1 when
it succeeded) and a failure's summary is its first error."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import F, FloatField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce


def _existing_jobs_fill(apps, schema_editor):
    ImportJob = apps.get_model("annotate", "ImportJob")
    ImportJob.objects.exclude(status="queued").update(attempts=1)
    ImportJob.objects.filter(status="succeeded").update(progress=1.0)
    ImportJob.objects.exclude(status="succeeded").filter(bytes_total__gt=0).update(
        progress=Cast(F("bytes_done"), FloatField()) / F("bytes_total")
    )
    ImportJob.objects.filter(status="failed").update(error=Coalesce(KeyTextTransform("0", "errors"), models.Value("")))


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0002_workspace_functions_and_progress_days'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='importjob',
            name='importjob_status_valid',
        ),
        migrations.AddField(
            model_name='importjob',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='Claims so far (the running one included).'),
        ),
        migrations.AddField(
            model_name='importjob',
            name='enqueued_at',
            field=models.DateTimeField(blank=True, help_text='When its task was last sent.', null=True),
        ),
        migrations.AddField(
            model_name='importjob',
            name='error',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='importjob',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='importjob',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(default=3),
        ),
        migrations.AddField(
            model_name='importjob',
            name='progress',
            field=models.FloatField(default=0.0, help_text='0..1, written while it runs.'),
        ),
        migrations.AddField(
            model_name='importjob',
            name='queued_at',
            field=models.DateTimeField(blank=True, help_text='When it was last queued again (empty: queued since it was created).', null=True),
        ),
        migrations.AddField(
            model_name='importjob',
            name='worker',
            field=models.CharField(blank=True, help_text='The worker of the latest attempt: node, process id and machine.', max_length=200),
        ),
        migrations.AlterField(
            model_name='importjob',
            name='errors',
            field=models.JSONField(blank=True, default=list, help_text='Every error, with its place in the file.'),
        ),
        migrations.AlterField(
            model_name='importjob',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10),
        ),
        migrations.AddIndex(
            model_name='importjob',
            index=models.Index(fields=['status', 'heartbeat_at'], name='importjob_status_heartbeat'),
        ),
        migrations.AddConstraint(
            model_name='importjob',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='importjob_status_valid'),
        ),
        migrations.RunPython(_existing_jobs_fill, migrations.RunPython.noop),
    ]
