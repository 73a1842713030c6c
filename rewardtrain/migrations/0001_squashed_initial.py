"""The rewardtrain app's schema as it stood at migration 0004 (the last one before this set), in one
migration. It replaces 0001-0004: a database that applied those goes on from 0002; a new one starts here."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    replaces = [
        ("rewardtrain", "0001_initial"),
        ("rewardtrain", "0002_run_time_limit_trigger_retraining"),
        ("rewardtrain", "0003_scoring"),
        ("rewardtrain", "0004_trainingrun_queued_at_enqueued_at"),
    ]

    initial = True

    dependencies = [
        ('annotate', '0001_squashed_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TrainingRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('policy', models.JSONField(blank=True, default=dict, help_text='Aggregation policy for a new export.')),
                ('base_model', models.CharField(help_text='A Hugging Face id or a local path.', max_length=500)),
                ('hyperparameters', models.JSONField(default=dict)),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10)),
                ('trigger', models.CharField(choices=[('manual', 'Started by hand'), ('schedule', 'Periodic retraining'), ('command', 'Command line')], default='manual', max_length=10)),
                ('time_limit_seconds', models.PositiveIntegerField(default=21600, help_text='Hard limit of one attempt on a worker; the soft limit (a clean failure) comes a minute earlier.')),
                ('step', models.PositiveIntegerField(default=0)),
                ('total_steps', models.PositiveIntegerField(default=0)),
                ('epoch', models.FloatField(default=0.0)),
                ('eta_seconds', models.FloatField(blank=True, null=True)),
                ('metrics', models.JSONField(blank=True, default=list, help_text='History: [{step, loss, accuracy, eval_*}].')),
                ('evaluation', models.JSONField(blank=True, default=dict)),
                ('device', models.CharField(blank=True, max_length=50)),
                ('worker', models.CharField(blank=True, help_text='Hostname of the worker running it.', max_length=200)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('max_attempts', models.PositiveSmallIntegerField(default=3)),
                ('cancel_requested', models.BooleanField(default=False)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('queued_at', models.DateTimeField(blank=True, help_text='When it was last queued again (empty: queued since it was created).', null=True)),
                ('enqueued_at', models.DateTimeField(blank=True, help_text='When its task was last sent to the gpu queue.', null=True)),
                ('error', models.TextField(blank=True)),
                ('traceback', models.TextField(blank=True)),
                ('log', models.TextField(blank=True)),
                ('artifact_path', models.CharField(blank=True, max_length=500)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('export', models.ForeignKey(blank=True, help_text='The dataset it trains on; when empty, the run first makes one with `policy`.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='training_runs', to='annotate.export')),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='training_runs', to='annotate.project')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='RewardModel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.PositiveIntegerField()),
                ('path', models.CharField(max_length=500)),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('is_active', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='reward_models', to='annotate.project')),
                ('run', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='reward_model', to='rewardtrain.trainingrun')),
            ],
            options={
                'ordering': ['project', '-version'],
            },
        ),
        migrations.CreateModel(
            name='RetrainingSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('enabled', models.BooleanField(default=False)),
                ('min_new_judgments', models.PositiveIntegerField(default=500)),
                ('checked_at', models.DateTimeField(blank=True, null=True)),
                ('outcome', models.TextField(blank=True, help_text='Why the last check did or did not start a run.')),
                ('project', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='retraining', to='annotate.project')),
                ('last_started', models.ForeignKey(blank=True, help_text='The last run periodic retraining started.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='rewardtrain.trainingrun')),
            ],
            options={
                'verbose_name_plural': 'retraining settings',
            },
        ),
        migrations.CreateModel(
            name='ResponseScore',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('score', models.FloatField()),
                ('response', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scores', to='annotate.response')),
                ('reward_model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scores', to='rewardtrain.rewardmodel')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('reward_model', 'response'), name='responsescore_one_per_model_and_response')],
            },
        ),
        migrations.CreateModel(
            name='ScoringJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=10)),
                ('scored', models.PositiveIntegerField(default=0)),
                ('total', models.PositiveIntegerField(default=0)),
                ('error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scoring_jobs', to='annotate.project')),
                ('reward_model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scoring_jobs', to='rewardtrain.rewardmodel')),
            ],
            options={
                'ordering': ['-created_at'],
                'constraints': [models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed'])), name='scoringjob_status_valid')],
            },
        ),
        migrations.AddIndex(
            model_name='trainingrun',
            index=models.Index(fields=['status', 'heartbeat_at'], name='trainingrun_status_heartbeat'),
        ),
        migrations.AddConstraint(
            model_name='trainingrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='trainingrun_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='trainingrun',
            constraint=models.CheckConstraint(condition=models.Q(('trigger__in', ['manual', 'schedule', 'command'])), name='trainingrun_trigger_valid'),
        ),
        migrations.AddConstraint(
            model_name='trainingrun',
            constraint=models.CheckConstraint(condition=models.Q(('time_limit_seconds__gte', 120)), name='trainingrun_time_limit_sensible'),
        ),
        migrations.AddConstraint(
            model_name='rewardmodel',
            constraint=models.UniqueConstraint(fields=('project', 'version'), name='rewardmodel_version_unique_in_project'),
        ),
        migrations.AddConstraint(
            model_name='rewardmodel',
            constraint=models.UniqueConstraint(condition=models.Q(('is_active', True)), fields=('project',), name='rewardmodel_one_active_per_project'),
        ),
        migrations.AddConstraint(
            model_name='retrainingsettings',
            constraint=models.CheckConstraint(condition=models.Q(('min_new_judgments__gte', 1)), name='retraining_min_new_judgments_positive'),
        ),
    ]
