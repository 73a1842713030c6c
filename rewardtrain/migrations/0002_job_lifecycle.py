"""Training runs and scoring jobs become jobs of palate.jobs (issue 18). Rows keep their data: progress
comes from the steps (runs) or the responses scored (scoring jobs), 1 when it succeeded, and a scoring job
that ran counts one attempt (runs counted theirs already)."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import F, FloatField
from django.db.models.functions import Cast


def _existing_jobs_fill(apps, schema_editor):
    for model, done, total in (("TrainingRun", "step", "total_steps"), ("ScoringJob", "scored", "total")):
        jobs = apps.get_model("rewardtrain", model).objects
        jobs.filter(status="succeeded").update(progress=1.0)
        jobs.exclude(status="succeeded").filter(**{f"{total}__gt": 0}).update(
            progress=Cast(F(done), FloatField()) / F(total)
        )
    apps.get_model("rewardtrain", "ScoringJob").objects.exclude(status="queued").update(attempts=1)


class Migration(migrations.Migration):

    dependencies = [
        ('rewardtrain', '0001_squashed_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='scoringjob',
            name='scoringjob_status_valid',
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='Claims so far (the running one included).'),
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='enqueued_at',
            field=models.DateTimeField(blank=True, help_text='When its task was last sent.', null=True),
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(default=3),
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='progress',
            field=models.FloatField(default=0.0, help_text='0..1, written while it runs.'),
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='queued_at',
            field=models.DateTimeField(blank=True, help_text='When it was last queued again (empty: queued since it was created).', null=True),
        ),
        migrations.AddField(
            model_name='scoringjob',
            name='worker',
            field=models.CharField(blank=True, help_text='The worker of the latest attempt: node, process id and machine.', max_length=200),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='progress',
            field=models.FloatField(default=0.0, help_text='0..1, written while it runs.'),
        ),
        migrations.AlterField(
            model_name='scoringjob',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='Claims so far (the running one included).'),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='enqueued_at',
            field=models.DateTimeField(blank=True, help_text='When its task was last sent.', null=True),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='worker',
            field=models.CharField(blank=True, help_text='The worker of the latest attempt: node, process id and machine.', max_length=200),
        ),
        migrations.AddIndex(
            model_name='scoringjob',
            index=models.Index(fields=['status', 'heartbeat_at'], name='scoringjob_status_heartbeat'),
        ),
        migrations.AddConstraint(
            model_name='scoringjob',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='scoringjob_status_valid'),
        ),
        migrations.RunPython(_existing_jobs_fill, migrations.RunPython.noop),
    ]
