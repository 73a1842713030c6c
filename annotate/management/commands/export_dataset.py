from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.models import Export, Project
from annotate.services.exports import EXPORT_FORMATS, export_create, export_run
from palate.errors import ApplicationError
from palate.storage import EXPORTS, store_local_path


class Command(BaseCommand):
    help = (
        "Export a project's judgments as a preference dataset in TRL's format (JSONL, gzipped JSONL, Parquet or "
        "a Hugging Face datasets folder), under exports/<id>/ in the exports store (ARTIFACT_ROOT by default)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--policy", default="", help="the policy as a JSON object, e.g. '{\"min_votes\": 3}'"
        )
        source.add_argument("--policy-file", default="", help="a file holding the policy as a JSON object")
        parser.add_argument(
            "--format",
            dest="formats",
            action="append",
            choices=EXPORT_FORMATS,
            help="repeat for several formats (default: jsonl)",
        )
        parser.add_argument(
            "--split", type=float, help="share of prompts in the train split (overrides the policy)"
        )
        parser.add_argument("--seed", type=int, help="seed of the split (overrides the policy)")
        parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug '{options['project']}'")
        policy = self._policy(options)
        for key in ("split", "seed"):
            if options[key] is not None:
                policy[key] = options[key]
        try:
            export = export_create(
                project=project,
                policy=policy,
                formats=options["formats"] or ["jsonl"],
                created_by=None,
                enqueue=False,
            )
        except ApplicationError as error:
            raise CommandError(error.message) from None

        bar = tqdm(
            total=1000,
            desc=f"export v{export.version}",
            unit="‰",
            disable=options["no_progress"],
            file=self.stderr,
        )

        def progress(done: float) -> None:
            bar.update(round(done * 1000) - bar.n)

        export = export_run(export_id=export.pk, progress=progress)
        bar.close()
        if export is None or export.status != Export.Status.SUCCEEDED:
            raise CommandError(export.error if export else "the export was claimed by another process")
        counts = export.counts
        rows = ", ".join(f"{split} {count:,}" for split, count in counts["rows"].items())
        self.stdout.write(
            f"export {export.pk} (v{export.version}): {counts['pairs_exported']:,} pairs exported; rows: {rows}"
        )
        for record in export.files.values():
            local = store_local_path(EXPORTS, record["path"])
            self.stdout.write(
                f"  {local or record['path']}  {record['bytes']:,} bytes  sha256 {record['sha256']}"
            )

    def _policy(self, options) -> dict:
        text = options["policy"]
        if options["policy_file"]:
            path = Path(options["policy_file"])
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            text = path.read_text(encoding="utf-8")
        if not text.strip():
            return {}
        try:
            policy = json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"the policy is not valid JSON: {error}") from None
        if not isinstance(policy, dict):
            raise CommandError("the policy must be a JSON object")
        return policy
