"""The annotate app's schema as it stood at migration 0010 (the last one before this set), in one migration.

It replaces 0001-0010: a database that applied those is left as it is and goes on from 0002; a new one starts
here. Imports draw ids from their tables' sequences, one nextval() per row, so each sequence hands a
connection a thousand ids at a time (ids then have gaps between connections, which nothing relies on).
"""

import annotate.models
import django.core.validators
import django.db.models.deletion
import django.db.models.functions.comparison
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    replaces = [
        ("annotate", "0001_initial"),
        ("annotate", "0002_pair_external_id_index"),
        ("annotate", "0003_workspace_quality_leaderboard"),
        ("annotate", "0004_pair_priority"),
        ("annotate", "0005_export"),
        ("annotate", "0006_project_api_token"),
        ("annotate", "0007_fewer_indexes"),
        ("annotate", "0008_import_sequence_cache"),
        ("annotate", "0009_pair_lookup_by_partial_unique_index"),
        ("annotate", "0010_membership_progress_counters"),
    ]

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Pair',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('external_id', models.CharField(blank=True, max_length=255)),
                ('is_gold', models.BooleanField(default=False)),
                ('gold_choice', models.CharField(blank=True, choices=[('a', 'A is better'), ('b', 'B is better'), ('tie', 'Tie'), ('both_bad', 'Both bad')], max_length=10)),
                ('judgment_count', models.PositiveIntegerField(db_default=0, default=0, help_text="Annotators' judgments.")),
                ('slots_taken', models.PositiveIntegerField(db_default=0, default=0, help_text='Judgments plus unexpired leases.')),
                ('priority', models.FloatField(db_default=0.0, default=0.0, help_text='Set by an uncertainty-seeking assignment strategy: higher is handed out first.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='Assignment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('shown_swapped', models.BooleanField(default=False)),
                ('status', models.CharField(choices=[('active', 'Active'), ('submitted', 'Submitted'), ('skipped', 'Skipped'), ('expired', 'Expired')], default='active', max_length=10)),
                ('skip_reason', models.CharField(blank=True, max_length=500)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('closed_at', models.DateTimeField(blank=True, null=True)),
                ('annotator', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to=settings.AUTH_USER_MODEL)),
                ('pair', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='annotate.pair')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='Judgment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('origin', models.CharField(choices=[('human', 'Annotator'), ('imported', 'Imported label')], default='human', max_length=10)),
                ('choice', models.CharField(choices=[('a', 'A is better'), ('b', 'B is better'), ('tie', 'Tie'), ('both_bad', 'Both bad')], max_length=10)),
                ('strength', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('criteria', models.JSONField(blank=True, default=dict, help_text='Per-criterion choices in A/B terms.')),
                ('rationale', models.TextField(blank=True)),
                ('shown_swapped', models.BooleanField(default=False, help_text='True when response B was shown on the left.')),
                ('duration_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('idempotency_key', models.CharField(blank=True, db_default='', max_length=100)),
                ('revision', models.PositiveIntegerField(db_default=1, default=1, help_text='1 when first submitted; each edit adds one.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('annotator', models.ForeignKey(blank=True, db_index=False, help_text='Empty for a label imported with the data.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='judgments', to=settings.AUTH_USER_MODEL)),
                ('assignment', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='judgment', to='annotate.assignment')),
                ('pair', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='judgments', to='annotate.pair')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='Project',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200)),
                ('slug', models.SlugField(max_length=80, unique=True)),
                ('guidelines', models.TextField(blank=True, help_text='Markdown shown to annotators.')),
                ('criteria', models.JSONField(blank=True, default=list, help_text='Named criteria (e.g. helpfulness); empty means one overall judgment.')),
                ('allowed_choices', models.JSONField(default=annotate.models.default_allowed_choices)),
                ('strength_scale', models.PositiveSmallIntegerField(default=0, help_text='0 turns strength off; N asks for 1..N (slightly / clearly / much better).', validators=[django.core.validators.MaxValueValidator(5)])),
                ('rationale', models.CharField(choices=[('off', 'Off'), ('optional', 'Optional'), ('required', 'Required')], default='optional', max_length=10)),
                ('overlap', models.PositiveSmallIntegerField(default=3, help_text='Judgments wanted per pair.', validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(100)])),
                ('gold_rate', models.FloatField(default=0.0, help_text='Share of assignments that are gold pairs.', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)])),
                ('lease_seconds', models.PositiveIntegerField(default=900, help_text='How long an assignment is held for its annotator.', validators=[django.core.validators.MinValueValidator(30)])),
                ('assignment_order', models.CharField(choices=[('depth_first', 'Depth first: finish pairs before starting new ones'), ('breadth_first', 'Breadth first: spread judgments over all pairs')], default='depth_first', max_length=20)),
                ('assignment_strategy', models.CharField(choices=[('fill', 'Fill pairs in order'), ('uncertain_systems', "Prefer pairs whose systems' ratings are least certain"), ('uncertain_model', 'Prefer pairs where the active reward model is least certain')], default='fill', max_length=20)),
                ('edit_window_seconds', models.PositiveIntegerField(default=600, help_text='How long an annotator may change a judgment after submitting it.')),
                ('both_bad_as_tie', models.BooleanField(default=True, help_text="Leaderboards count 'both bad' as a tie.")),
                ('target_alpha', models.FloatField(default=0.667, help_text="Krippendorff's alpha the data should reach.")),
                ('min_gold_accuracy', models.FloatField(default=0.8, help_text='Annotators below this gold accuracy are flagged.')),
                ('max_position_bias', models.FloatField(default=0.65, help_text='Annotators who choose the left response more often than this are flagged.')),
                ('leaderboard_public_token', models.CharField(blank=True, help_text='When set, /leaderboard/public/<token>/ shows the leaderboard read-only.', max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='pair',
            name='project',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='pairs', to='annotate.project'),
        ),
        migrations.CreateModel(
            name='Membership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('annotator', 'Annotator'), ('lead', 'Lead'), ('engineer', 'Engineer')], max_length=10)),
                ('attributes', models.JSONField(blank=True, default=dict, help_text='Key/value data for per-group analysis, e.g. locale or expertise.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('submitted_total', models.PositiveIntegerField(default=0, editable=False, help_text='Judgments this member submitted in the workspace.')),
                ('submitted_day', models.DateField(blank=True, editable=False, null=True)),
                ('submitted_on_day', models.PositiveIntegerField(default=0, editable=False, help_text='Judgments submitted on submitted_day.')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='annotate.project')),
            ],
            options={
                'ordering': ['project', 'role', 'user__username'],
            },
        ),
        migrations.CreateModel(
            name='ImportJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('filename', models.CharField(max_length=255)),
                ('stored_path', models.CharField(blank=True, help_text='The upload, while the job waits or runs.', max_length=500)),
                ('options', models.JSONField(blank=True, default=dict)),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=10)),
                ('rows_done', models.PositiveBigIntegerField(default=0)),
                ('bytes_total', models.PositiveBigIntegerField(default=0)),
                ('bytes_done', models.PositiveBigIntegerField(default=0)),
                ('counts', models.JSONField(blank=True, default=dict)),
                ('errors', models.JSONField(blank=True, default=list)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='import_jobs', to='annotate.project')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Export',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.PositiveIntegerField(help_text='1, 2, 3… per project.')),
                ('policy', models.JSONField(default=dict, help_text='Aggregation policy, split and columns, with defaults filled in.')),
                ('formats', models.JSONField(default=list, help_text="e.g. ['jsonl', 'parquet', 'hf']")),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=10)),
                ('progress', models.FloatField(default=0.0)),
                ('counts', models.JSONField(blank=True, default=dict)),
                ('files', models.JSONField(blank=True, default=dict, help_text='{name: {path, bytes, rows, sha256}}')),
                ('error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='exports', to='annotate.project')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.AddField(
            model_name='assignment',
            name='project',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='annotate.project'),
        ),
        migrations.CreateModel(
            name='AgreementSnapshot',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('judgment_count', models.PositiveIntegerField()),
                ('last_judgment_at', models.DateTimeField(blank=True, null=True)),
                ('data', models.JSONField(default=dict)),
                ('seconds', models.FloatField(default=0.0, help_text='How long the computation took.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='agreement_snapshots', to='annotate.project')),
            ],
            options={
                'ordering': ['-created_at'],
                'get_latest_by': 'created_at',
            },
        ),
        migrations.CreateModel(
            name='ProjectApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text="What uses it, e.g. 'best-of-n sampler'.", max_length=100)),
                ('prefix', models.CharField(help_text="The secret's first characters, shown in lists.", max_length=12)),
                ('secret_hash', models.CharField(help_text='SHA-256 of the secret, hex.', max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_used_at', models.DateTimeField(blank=True, help_text='Updated at most once a minute, not on every request.', null=True)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to='annotate.project')),
                ('revoked_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='Prompt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('external_id', models.CharField(help_text='The id in the imported file, or a content hash.', max_length=255)),
                ('content', models.TextField(blank=True, help_text='The prompt as text (for conversations, the last user turn).')),
                ('messages', models.JSONField(blank=True, help_text='The conversation as a list of {role, content}, when it is one.', null=True)),
                ('category', models.CharField(blank=True, max_length=100)),
                ('metadata', models.JSONField(blank=True, default=dict)),
                ('fingerprint', models.CharField(help_text="sha1 of the prompt's content, for re-import checks.", max_length=40)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='prompts', to='annotate.project')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.AddField(
            model_name='pair',
            name='prompt',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='pairs', to='annotate.prompt'),
        ),
        migrations.CreateModel(
            name='Response',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('external_id', models.CharField(max_length=255)),
                ('system', models.CharField(blank=True, help_text='The model that produced the response.', max_length=200)),
                ('content', models.TextField()),
                ('metadata', models.JSONField(blank=True, default=dict)),
                ('fingerprint', models.CharField(max_length=40)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('prompt', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='responses', to='annotate.prompt')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.AddField(
            model_name='pair',
            name='response_a',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotate.response'),
        ),
        migrations.AddField(
            model_name='pair',
            name='response_b',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotate.response'),
        ),
        migrations.CreateModel(
            name='JudgmentRevision',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('revision', models.PositiveIntegerField()),
                ('choice', models.CharField(choices=[('a', 'A is better'), ('b', 'B is better'), ('tie', 'Tie'), ('both_bad', 'Both bad')], max_length=10)),
                ('strength', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('criteria', models.JSONField(blank=True, default=dict)),
                ('rationale', models.TextField(blank=True)),
                ('duration_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('recorded_at', models.DateTimeField(help_text='When this version was submitted.')),
                ('replaced_at', models.DateTimeField(auto_now_add=True)),
                ('judgment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='revisions', to='annotate.judgment')),
            ],
            options={
                'ordering': ['judgment', 'revision'],
                'constraints': [models.UniqueConstraint(fields=('judgment', 'revision'), name='judgmentrevision_unique')],
            },
        ),
        migrations.AddIndex(
            model_name='judgment',
            index=models.Index(fields=['annotator', 'created_at'], name='judgment_annotator_time'),
        ),
        migrations.AddConstraint(
            model_name='judgment',
            constraint=models.UniqueConstraint(fields=('pair', 'annotator'), name='judgment_one_per_annotator_and_pair'),
        ),
        migrations.AddConstraint(
            model_name='judgment',
            constraint=models.UniqueConstraint(condition=models.Q(('idempotency_key', ''), _negated=True), fields=('annotator', 'idempotency_key'), name='judgment_idempotency_key_unique'),
        ),
        migrations.AddConstraint(
            model_name='judgment',
            constraint=models.UniqueConstraint(condition=models.Q(('annotator__isnull', True)), fields=('pair',), name='judgment_one_imported_label_per_pair'),
        ),
        migrations.AddConstraint(
            model_name='judgment',
            constraint=models.CheckConstraint(condition=models.Q(('choice__in', ['a', 'b', 'tie', 'both_bad'])), name='judgment_choice_valid'),
        ),
        migrations.AddConstraint(
            model_name='judgment',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('annotator__isnull', False), ('origin', 'human')), models.Q(('annotator__isnull', True), ('origin', 'imported')), _connector='OR'), name='judgment_annotator_iff_human'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('overlap__gte', 1)), name='project_overlap_positive'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('gold_rate__gte', 0), ('gold_rate__lte', 1)), name='project_gold_rate_share'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('strength_scale__lte', 5)), name='project_strength_scale_at_most_5'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('rationale__in', ['off', 'optional', 'required'])), name='project_rationale_valid'),
        ),
        migrations.AddConstraint(
            model_name='membership',
            constraint=models.UniqueConstraint(fields=('user', 'project'), name='membership_one_per_user_and_project'),
        ),
        migrations.AddConstraint(
            model_name='membership',
            constraint=models.CheckConstraint(condition=models.Q(('role__in', ['annotator', 'lead', 'engineer'])), name='membership_role_valid'),
        ),
        migrations.AddConstraint(
            model_name='importjob',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed'])), name='importjob_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.UniqueConstraint(fields=('project', 'version'), name='export_version_unique_in_project'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed'])), name='export_status_valid'),
        ),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(fields=['annotator', 'project', 'status', 'closed_at'], name='assignment_annotator_progress'),
        ),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(fields=['project', 'status', 'expires_at'], name='assignment_project_expiry'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['active', 'submitted', 'skipped', 'expired'])), name='assignment_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'active')), fields=('pair', 'annotator'), name='assignment_one_active_per_pair_and_annotator'),
        ),
        migrations.AddIndex(
            model_name='agreementsnapshot',
            index=models.Index(fields=['project', '-created_at'], name='agreementsnapshot_latest'),
        ),
        migrations.AddConstraint(
            model_name='projectapitoken',
            constraint=models.CheckConstraint(condition=models.Q(('secret_hash__regex', '^[0-9a-f]{64}$')), name='projectapitoken_secret_is_hashed'),
        ),
        migrations.AddConstraint(
            model_name='projectapitoken',
            constraint=models.UniqueConstraint(condition=models.Q(('revoked_at__isnull', True)), fields=('project', 'name'), name='projectapitoken_name_unique_among_unrevoked'),
        ),
        migrations.AddConstraint(
            model_name='prompt',
            constraint=models.UniqueConstraint(fields=('project', 'external_id'), name='prompt_external_id_unique_in_project'),
        ),
        migrations.AddConstraint(
            model_name='response',
            constraint=models.UniqueConstraint(fields=('prompt', 'external_id'), name='response_external_id_unique_in_prompt'),
        ),
        migrations.AddIndex(
            model_name='pair',
            index=models.Index(fields=['project', 'is_gold', '-slots_taken', 'id'], name='pair_open_depth_first'),
        ),
        migrations.AddIndex(
            model_name='pair',
            index=models.Index(fields=['project', 'is_gold', 'slots_taken', 'id'], name='pair_open_breadth_first'),
        ),
        migrations.AddIndex(
            model_name='pair',
            index=models.Index(fields=['project', 'is_gold', '-priority', 'id'], name='pair_open_by_priority'),
        ),
        migrations.AddConstraint(
            model_name='pair',
            constraint=models.CheckConstraint(condition=models.Q(('response_a', models.F('response_b')), _negated=True), name='pair_responses_differ'),
        ),
        migrations.AddConstraint(
            model_name='pair',
            constraint=models.UniqueConstraint(django.db.models.functions.comparison.Least('response_a', 'response_b'), django.db.models.functions.comparison.Greatest('response_a', 'response_b'), name='pair_unique_couple'),
        ),
        migrations.AddConstraint(
            model_name='pair',
            constraint=models.UniqueConstraint(condition=models.Q(('external_id', ''), _negated=True), fields=('project', 'external_id'), name='pair_external_id_unique_in_project'),
        ),
        migrations.AddConstraint(
            model_name='pair',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('gold_choice', ''), ('is_gold', False)), models.Q(('gold_choice__in', ['a', 'b', 'tie', 'both_bad']), ('is_gold', True)), _connector='OR'), name='pair_gold_choice_iff_gold'),
        ),
        migrations.RunSQL(
            [
                "ALTER TABLE annotate_prompt ALTER COLUMN id SET CACHE 1000",
                "ALTER TABLE annotate_response ALTER COLUMN id SET CACHE 1000",
                "ALTER TABLE annotate_pair ALTER COLUMN id SET CACHE 1000",
            ],
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
