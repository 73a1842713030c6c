"""``manage.py train_reward_model``: a training run in the foreground, through the same services as the API
(the run is recorded, then executed in this process with a progress bar)."""

from __future__ import annotations

import json
import socket

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from annotate.models import Project
from palate.errors import ApplicationError
from palate.storage import ARTIFACTS, store_local_path
from rewardtrain.models import TrainingRun
from rewardtrain.services.run_execution import training_run_execute
from rewardtrain.services.runs import training_run_create


def _value(text: str):
    """A --set value: JSON when it parses (numbers, true/false, null), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class Command(BaseCommand):
    help = (
        "Train a reward model on a project's judgments in the foreground: records a training run (shown on the "
        "training page) and runs it here, with a progress bar. Checkpoints and the model go to runs/<run id>/ in the artifacts store (ARTIFACT_ROOT by default)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--export", type=int, help="id of a succeeded export of the project")
        source.add_argument("--policy", help="an export policy as a JSON object: an export is made first")
        base = parser.add_mutually_exclusive_group(required=True)
        base.add_argument(
            "--base-model", help="the name of an installed base model (TRAINING_BASE_MODELS), never a path"
        )
        base.add_argument(
            "--base-reward-model",
            type=int,
            help="id of a reward model of the project to continue training from",
        )
        parser.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a hyperparameter, e.g. --set learning_rate=1e-5 --set num_epochs=2 (repeat)",
        )
        parser.add_argument(
            "--allow-below-target", action="store_true", help="train even when agreement misses the targets"
        )
        parser.add_argument(
            "--processes",
            type=int,
            help="train data-parallel in N processes started by torchrun, one GPU each (gloo on the CPU); "
            "default TRAINING_PROCESSES",
        )
        parser.add_argument(
            "--search",
            help="a hyperparameter search instead of one training: its settings as a JSON object ('{}' for the "
            "defaults; docs/training.md, Hyperparameter search); its trials train here and on any gpu worker",
        )
        parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")

    def handle(self, *args, **options):
        if options["processes"] is not None and options["processes"] < 1:
            raise CommandError(f"--processes must be at least 1, got {options['processes']}")
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug '{options['project']}'")
        hyperparameters = {}
        for item in options["assignments"]:
            key, equals, text = item.partition("=")
            if not equals or not key.strip():
                raise CommandError(f"--set takes KEY=VALUE, got {item!r}")
            hyperparameters[key.strip()] = _value(text)
        policy = None
        if options["policy"] is not None:
            try:
                policy = json.loads(options["policy"])
            except json.JSONDecodeError as error:
                raise CommandError(f"--policy is not JSON: {error}") from None
        search = None
        if options["search"] is not None:
            try:
                search = json.loads(options["search"])
            except json.JSONDecodeError as error:
                raise CommandError(f"--search is not JSON: {error}") from None
        try:
            run = training_run_create(
                project=project,
                base_model=options["base_model"],
                base_reward_model=options["base_reward_model"],
                hyperparameters=hyperparameters,
                export=options["export"],
                policy=policy,
                allow_below_target=options["allow_below_target"],
                trigger=TrainingRun.Trigger.COMMAND,
                enqueue=False,
                mode=TrainingRun.Mode.SEARCH if search is not None else TrainingRun.Mode.TRAIN,
                search=search,
            )
        except ApplicationError as error:
            details = "".join(
                f"\n  {field}: {' '.join(messages)}" for field, messages in error.fields.items()
            )
            raise CommandError(error.message + (details if len(error.fields) > 1 else "")) from None
        self.stdout.write(f"Training run {run.pk} of {project.slug} on {run.base_description}")

        bar = tqdm(total=0, unit="step", disable=options["no_progress"], dynamic_ncols=True)

        def progress(step: int, total: int, entry: dict) -> None:
            if bar.total != total:
                bar.total = total
            bar.n = step
            shown = {
                key: f"{entry[key]:.3f}" for key in ("loss", "accuracy", "eval_accuracy") if key in entry
            }
            bar.set_postfix(shown, refresh=False)
            bar.refresh()

        worker = f"{socket.gethostname()} (command)"
        try:
            # Crashes re-queue the run while attempts remain; here the next attempt runs in this process.
            while True:
                result = training_run_execute(
                    run_id=run.pk,
                    worker_name=worker,
                    on_progress=progress,
                    enqueue_retry=False,
                    processes=options["processes"],
                )
                if result is None or result.status != TrainingRun.Status.QUEUED:
                    break
                self.stderr.write(f"attempt {result.attempts} crashed; resuming from the latest checkpoint")
        except KeyboardInterrupt:
            TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
                status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
            )
            raise CommandError(f"interrupted: run {run.pk} cancelled") from None
        finally:
            bar.close()
        run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"run {run.pk} {run.status}: {run.error or 'see its log'}")
        accuracy = (run.evaluation or {}).get("accuracy")
        shown = f"; held-out accuracy {accuracy:.3f}" if accuracy is not None else ""
        version = run.reward_model.version
        self.stdout.write(
            self.style.SUCCESS(
                f"Reward model v{version} at {store_local_path(ARTIFACTS, run.artifact_path) or run.artifact_path}{shown}"
            )
        )
