from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Membership, Project
from annotate.services.members import membership_set
from palate.errors import ApplicationError


class Command(BaseCommand):
    help = "Add a user to a project with a role (or change their role and attributes)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Membership.Role.values)
        parser.add_argument(
            "--attribute",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="annotator attribute, e.g. locale=fr-FR",
        )

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug '{options['project']}'") from None
        attributes = {}
        for item in options["attribute"]:
            key, separator, value = item.partition("=")
            if not separator or not key.strip():
                raise CommandError(f"--attribute {item!r}: expected KEY=VALUE")
            attributes[key.strip()] = value.strip()
        # With no --attribute the member's attributes stay: changing a role must not erase them.
        try:
            membership, created = membership_set(
                project=project,
                username=options["username"],
                role=options["role"],
                attributes=attributes or None,
            )
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"{'added' if created else 'updated'} {membership}")
