from pathlib import Path

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

WORKSPACE_SQL = Path(__file__).resolve().parent / "sql" / "workspace_v1.sql"


def count_submitted_days(apps, schema_editor):
    """Each annotator's submitted leases per day (the server's), what the membership counters held."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotate_progressday (project_id, annotator_id, day, submitted)
            SELECT project_id, annotator_id, (closed_at AT TIME ZONE %s)::date, count(*)
            FROM annotate_assignment WHERE status = 'submitted' AND closed_at IS NOT NULL
            GROUP BY 1, 2, 3
            """,
            [settings.TIME_ZONE],
        )


class Migration(migrations.Migration):

    dependencies = [
        ("annotate", "0001_squashed_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ProgressDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("submitted", models.PositiveIntegerField()),
                (
                    "annotator",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="annotate.project",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("project", "annotator", "day"), name="progressday_one_per_day")
                ],
            },
        ),
        migrations.RunPython(count_submitted_days, migrations.RunPython.noop),
        migrations.RemoveField(model_name="membership", name="submitted_day"),
        migrations.RemoveField(model_name="membership", name="submitted_on_day"),
        migrations.RemoveField(model_name="membership", name="submitted_total"),
        migrations.RunSQL(
            WORKSPACE_SQL.read_text(),
            reverse_sql=[
                "DROP FUNCTION palate_judgment_submit",
                "DROP FUNCTION palate_judgment_by_key",
                "DROP FUNCTION palate_judgment_problems",
                "DROP FUNCTION palate_pair_next",
                "DROP FUNCTION palate_pair_claim",
                "DROP FUNCTION palate_pair_open_to",
                "DROP FUNCTION palate_progress_recompute",
                "DROP FUNCTION palate_pair_slots_recompute",
                "DROP FUNCTION palate_project_role",
            ],
        ),
    ]
