from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.models import Project
from annotate.services.import_rows import FORMATS, ImportOptions
from annotate.services.imports import ImportFailed, items_import
from palate.errors import ApplicationError


class Command(BaseCommand):
    help = "Import prompts, responses and pairs into a project from JSONL, JSON, CSV or Parquet (optionally gzipped)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", help="the file to import")
        parser.add_argument(
            "--format", choices=FORMATS, default="", help="override the format taken from the extension"
        )
        parser.add_argument(
            "--pairing",
            choices=["all", "random"],
            default="all",
            help="pairs per prompt for rows with candidate responses",
        )
        parser.add_argument(
            "--pairs-per-prompt", type=int, default=0, help="with --pairing random: pairs drawn per prompt"
        )
        parser.add_argument(
            "--cross-system-only", action="store_true", help="only pair responses of different systems"
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="seed for random pairing (same seed, same pairs)"
        )
        parser.add_argument(
            "--label-as",
            choices=["gold", "judgment", "none"],
            default="gold",
            help="what a chosen/rejected label becomes",
        )
        parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")

    def handle(self, *args, **options):
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"no project with slug '{options['project']}'") from None
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        import_options = ImportOptions(
            pairing=options["pairing"],
            pairs_per_prompt=options["pairs_per_prompt"],
            cross_system_only=options["cross_system_only"],
            seed=options["seed"],
            label_as=options["label_as"],
            format=options["format"],
        )
        size = os.path.getsize(path)
        bar = tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=path.name,
            disable=options["no_progress"],
            file=self.stderr,
        )

        def progress(rows: int, read: int) -> None:
            bar.set_postfix(rows=f"{rows:,}")
            bar.update(read - bar.n)

        try:
            with path.open("rb") as stream:
                result = items_import(
                    project=project,
                    stream=stream,
                    filename=path.name,
                    options=import_options,
                    progress=progress,
                )
        except ImportFailed as failure:
            bar.close()
            for error in failure.errors:
                self.stderr.write(error)
            raise CommandError(
                failure.message if len(failure.errors) > 1 else f"{failure.message}; nothing was imported"
            ) from None
        except ApplicationError as error:
            bar.close()
            raise CommandError(f"{error.message}: {error.fields}") from None
        bar.close()
        counts = result.as_dict()
        self.stdout.write(", ".join(f"{key.replace('_', ' ')}: {value:,}" for key, value in counts.items()))
