from __future__ import annotations

from django.core.management.base import BaseCommand

from annotate.models import Judgment
from annotate.services.demo import DEMO_PASSWORD, DEMO_USERS, demo_seed, demo_votes_simulate


class Command(BaseCommand):
    help = "Create the demo project and its users (idempotent); simulate votes when it has none yet."

    def add_arguments(self, parser):
        parser.add_argument("--no-votes", action="store_true", help="do not simulate annotators' votes")

    def handle(self, *args, **options):
        project, result = demo_seed()
        if result is not None:
            self.stdout.write(
                f"demo project '{project.slug}': {result.prompts_created} prompts, {result.pairs_created} pairs"
            )
        if not options["no_votes"] and not Judgment.objects.filter(pair__project=project).exists():
            written = demo_votes_simulate(project=project)
            self.stdout.write(
                f"simulated {written} judgments from alice (careful), bob (noisy) and carol (position-biased)"
            )
        self.stdout.write(
            f"demo logins (password '{DEMO_PASSWORD}'): "
            + ", ".join(f"{user.username} ({user.role})" for user in DEMO_USERS)
        )
