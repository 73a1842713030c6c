from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from annotate.services.demo import demo_votes_simulate


class Command(BaseCommand):
    help = (
        "Simulate the demo annotators (careful alice, noisy bob, position-biased carol) voting on a project."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", nargs="?", default="demo", help="the project's slug (default: demo)")
        parser.add_argument("--share", type=float, default=0.75, help="share of the pairs to vote on (0-1)")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug '{options['project']}'")
        if not 0 < options["share"] <= 1:
            raise CommandError("--share must be in (0, 1]")
        written = demo_votes_simulate(project=project, share=options["share"], seed=options["seed"])
        self.stdout.write(f"simulated {written} judgments")
