"""The hot path's functions, version 2 (annotate/migrations/sql/workspace_v2.sql): a submit adds one to its day's
progress line. Reversing reinstalls version 1."""

from pathlib import Path

from django.db import migrations

WORKSPACE_V1 = Path(__file__).resolve().parent / "sql" / "workspace_v1.sql"
WORKSPACE_V2 = Path(__file__).resolve().parent / "sql" / "workspace_v2.sql"
# Version 1 creates its functions afresh: drop every one of version 2's first.
V2_FUNCTIONS = [
    "palate_judgment_submit",
    "palate_judgment_by_key",
    "palate_judgment_problems",
    "palate_choices_listed",
    "palate_pair_next",
    "palate_pair_claim",
    "palate_pair_open_to",
    "palate_pair_slots_recompute",
    "palate_project_role",
]


class Migration(migrations.Migration):

    dependencies = [
        ("annotate", "0005_assignment_status_released"),
    ]

    operations = [
        migrations.RunSQL(WORKSPACE_V2.read_text(), reverse_sql=[*(f"DROP FUNCTION {name}" for name in V2_FUNCTIONS), WORKSPACE_V1.read_text()]),
    ]
