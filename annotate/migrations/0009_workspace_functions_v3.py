"""The hot path's functions, version 3 (annotate/sql/workspace_v3.sql): a claim reads the pairs of its window
one by one at their row addresses. Reversing reinstalls version 2, which drops every function it makes
first."""

from pathlib import Path

from django.db import migrations

WORKSPACE_V2 = Path(__file__).resolve().parent / "sql" / "workspace_v2.sql"
WORKSPACE_V3 = Path(__file__).resolve().parent.parent / "sql" / "workspace_v3.sql"


class Migration(migrations.Migration):

    dependencies = [
        ("annotate", "0008_content_search"),
    ]

    operations = [
        migrations.RunSQL(
            WORKSPACE_V3.read_text(),
            reverse_sql=["DROP FUNCTION palate_pair_claim_first", WORKSPACE_V2.read_text()],
        ),
    ]
