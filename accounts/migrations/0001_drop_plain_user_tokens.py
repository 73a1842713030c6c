from django.db import migrations


class Migration(migrations.Migration):
    """DRF's plain-text user tokens (rest_framework.authtoken, no longer installed) give way to hashed,
    expiring tokens (django-rest-knox): their table goes, and their users log in again for a new token."""

    dependencies = [("knox", "0009_extend_authtoken_field")]

    operations = [
        migrations.RunSQL(
            ["DROP TABLE IF EXISTS authtoken_token", "DELETE FROM django_migrations WHERE app = 'authtoken'"],
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
