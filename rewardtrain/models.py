"""Training runs and the reward models they produce.

Hyperparameters live on the run (validated JSON), so every run is reproducible; the environment carries only
infrastructure (database, broker, artifact root, device). Nothing here imports torch.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from palate.jobs.models import Job

DEFAULT_TIME_LIMIT_SECONDS = 6 * 3600


class TrainingRun(Job):
    """A training run: a job (``palate.jobs``) that may be cancelled; its attempts resume from checkpoints."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by hand"
        SCHEDULE = "schedule", "Periodic retraining"
        COMMAND = "command", "Command line"

    class Mode(models.TextChoices):
        TRAIN = "train", "Train once"
        SEARCH = "search", "Hyperparameter search"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="training_runs")
    export = models.ForeignKey(
        "annotate.Export", null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs",
        help_text="The dataset it trains on; when empty, the run first makes one with `policy`.",
    )  # fmt: skip
    policy = models.JSONField(default=dict, blank=True, help_text="Aggregation policy for a new export.")
    base_model = models.CharField(
        max_length=500, blank=True,
        help_text="The name of an installed base model (TRAINING_BASE_MODELS); empty when the run continues "
        "from `base_reward_model`.",
    )  # fmt: skip
    base_reward_model = models.ForeignKey(
        "RewardModel", null=True, blank=True, on_delete=models.RESTRICT, related_name="continued_by",
        help_text="A reward model of the same project the run continues training from.",
    )  # fmt: skip
    hyperparameters = models.JSONField(default=dict)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.TRAIN)
    search = models.JSONField(
        default=dict, blank=True,
        help_text="Search mode: the trials, time budget and space (rewardtrain.training.search.SearchConfig).",
    )  # fmt: skip
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    time_limit_seconds = models.PositiveIntegerField(
        default=DEFAULT_TIME_LIMIT_SECONDS,
        help_text="Hard limit of one attempt on a worker; the soft limit (a clean failure) comes a minute earlier.",
    )
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(
        default=list, blank=True, help_text="History: [{step, loss, accuracy, eval_*}]."
    )
    evaluation = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=50, blank=True)
    cancel_requested = models.BooleanField(default=False)
    traceback = models.TextField(blank=True)
    log = models.TextField(blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(Job.Meta):
        ordering = ["-created_at"]
        constraints = [
            *Job.Meta.constraints,
            models.CheckConstraint(
                condition=Q(trigger__in=["manual", "schedule", "command"]), name="trainingrun_trigger_valid"
            ),
            models.CheckConstraint(
                condition=Q(time_limit_seconds__gte=120), name="trainingrun_time_limit_sensible"
            ),
            models.CheckConstraint(condition=Q(mode__in=["train", "search"]), name="trainingrun_mode_valid"),
            models.CheckConstraint(
                condition=(Q(base_model="") & Q(base_reward_model__isnull=False))
                | (~Q(base_model="") & Q(base_reward_model__isnull=True)),
                name="trainingrun_one_base",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} · {self.project} · {self.status}"

    @property
    def base_description(self) -> str:
        """What the run starts from, for people: the base model's name, or the reward model it continues."""
        if self.base_reward_model_id is not None:
            return f"reward model v{self.base_reward_model.version}"
        return self.base_model


class SearchTrial(Job):
    """One trial of a search run: the run's hyperparameters with ``params`` in place of the searched ones,
    trained and evaluated on the validation pairs. A job of ``palate.jobs`` (a gpu task any worker may take;
    the search run's own worker takes queued ones too). ``pruned_at_step``: Optuna's median pruner stopped
    it there; ``value``: the validation metric the search ranks by (its last evaluation's when pruned)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="trials")
    number = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    value = models.FloatField(null=True, blank=True)
    intermediate = models.JSONField(
        default=list, blank=True, help_text="Validation figures by step: [{step, accuracy, loss}]."
    )
    pruned_at_step = models.PositiveIntegerField(null=True, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    result = models.JSONField(
        default=dict, blank=True, help_text="The trainer's result: evaluation, data, timing, model directory."
    )
    cancel_requested = models.BooleanField(default=False)
    log = models.TextField(blank=True)

    class Meta(Job.Meta):
        ordering = ["run", "number"]
        constraints = [
            *Job.Meta.constraints,
            models.UniqueConstraint(fields=["run", "number"], name="searchtrial_number_unique_in_run"),
        ]

    def __str__(self) -> str:
        return f"trial {self.number} of run {self.run_id} · {self.status}"

    @property
    def outcome(self) -> str:
        """For people: pruned, or the job's status."""
        return "pruned" if self.pruned_at_step is not None else self.status


class RewardModel(models.Model):
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="reward_model")
    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="reward_models")
    version = models.PositiveIntegerField()
    path = models.CharField(max_length=500, help_text="Its folder in the artifacts store.")
    content_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of its files' names and sha256s: workers cache a fetched copy under it.",
    )
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "version"], name="rewardmodel_version_unique_in_project"
            ),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="rewardmodel_one_active_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} reward model v{self.version}"


class RetrainingSettings(models.Model):
    """Periodic retraining of one project (beat): when enabled, a new run starts once ``min_new_judgments``
    human judgments arrived since the project's last run and its agreement meets the quality targets. The
    last check's outcome is kept so the lead can see why it did or did not train."""

    project = models.OneToOneField("annotate.Project", on_delete=models.CASCADE, related_name="retraining")
    enabled = models.BooleanField(default=False)
    min_new_judgments = models.PositiveIntegerField(default=500)
    checked_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="Why the last check did or did not start a run.")
    last_started = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The last run periodic retraining started.",
    )  # fmt: skip

    class Meta:
        verbose_name_plural = "retraining settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(min_new_judgments__gte=1), name="retraining_min_new_judgments_positive"
            )
        ]

    def __str__(self) -> str:
        return f"retraining of {self.project} ({'on' if self.enabled else 'off'})"


class ScoringJob(Job):
    """Batch scoring: every response of a project scored by one reward model (a gpu Celery job)."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="scoring_jobs")
    reward_model = models.ForeignKey(RewardModel, on_delete=models.CASCADE, related_name="scoring_jobs")
    scored = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(Job.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"scoring job {self.pk} · {self.reward_model} · {self.status}"


class ResponseScore(models.Model):
    """One response's raw reward under one model version (normalise with the model's reward mean/std); an
    ensemble's is its members' mean, with their spread as ``uncertainty``."""

    response = models.ForeignKey("annotate.Response", on_delete=models.CASCADE, related_name="scores")
    reward_model = models.ForeignKey(RewardModel, on_delete=models.CASCADE, related_name="scores")
    score = models.FloatField()
    uncertainty = models.FloatField(
        null=True, blank=True, help_text="An ensemble's members' standard deviation; null for a single model."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reward_model", "response"], name="responsescore_one_per_model_and_response"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.response_id} · v{self.reward_model_id} · {self.score:.3f}"
