from __future__ import annotations

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a user (or set the password of an existing one) with the password read from a file."
    # call_command(..., stdin=...) passes the stream to read "-" from; a terminal run reads sys.stdin.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--password-file", required=True, help="a file whose first line is the password ('-' for stdin)"
        )
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--admin", action="store_true", help="make the user a site admin (sees every project)"
        )
        parser.add_argument(
            "--can-create-projects", action="store_true", help="allow the user to create projects"
        )

    def handle(self, *args, **options):
        source = options["password_file"]
        try:
            text = (
                (options.get("stdin") or sys.stdin).read()
                if source == "-"
                else Path(source).read_text(encoding="utf-8")
            )
        except OSError as error:
            raise CommandError(f"{source}: cannot read the password file ({error.strerror})") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise CommandError(f"{source}: the password file is empty")
        User = get_user_model()
        user = User.objects.filter(username=options["username"]).first() or User(username=options["username"])
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise CommandError(f"{source}: " + " ".join(error.messages)) from None
        created = user.pk is None
        user.email = options["email"] or user.email
        if options["admin"]:
            user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        if options["can_create_projects"]:
            from django.contrib.auth.models import Permission

            user.user_permissions.add(
                Permission.objects.get(codename="add_project", content_type__app_label="annotate")
            )
        self.stdout.write(f"{'created' if created else 'updated'} user {user.username}")
